"""The Keras, Estimator and gradient-boosted-trees trainers on the bundled data, side by side.

    python benchmarks/trainers.py [--workdir DIR] [--config configs/taxi.yaml] [--set KEY=VALUE ...]

``--trainers keras,gbt,keras,gbt`` alternates them, for ratios measured in one invocation on
a shared machine. Each run gets a fresh pipeline root, metadata store and serving dir under
``--workdir`` (default: a new temporary directory), and runs the whole pipeline with the
default config
(``configs/taxi.yaml``: data/taxi/data.csv, 2000 train steps) in its own process, one after
the other. Printed per trainer: the held-out AUC (the Evaluator's, on the eval split), the
Trainer component's seconds and the whole run's wall time. ``--set`` overrides go to both.
The runs pass ``--allow-anomalies`` so that a data anomaly does not stop a timing run (the
bundled data has none against the curated schema).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINERS = ('keras', 'estimator', 'gbt')


def run(trainer: str, workdir: str, config: str, overrides, index: int = 0):
    root = os.path.join(workdir, f'{index}-{trainer}')  # a fresh root for each run
    summary_path = os.path.join(root, 'summary.json')
    cmd = [sys.executable, os.path.join(REPO, 'pipeline_runner.py'), '--config', config,
           '--trainer', trainer, '--pipeline-root', os.path.join(root, 'pipeline'),
           '--metadata', os.path.join(root, 'metadata.sqlite'),
           '--serving-dir', os.path.join(root, 'serving'), '--summary-json', summary_path,
           '--allow-anomalies']
    cmd += [a for o in overrides for a in ('--set', o)]
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - start
    if not os.path.exists(summary_path):
        sys.exit(f'{trainer}: the run wrote no summary (exit {proc.returncode}):\n{proc.stderr[-3000:]}')
    with open(summary_path, encoding='utf-8') as f:
        summary = json.load(f)
    seconds = {c['id']: c.get('seconds') for c in summary['components']}
    metrics = (summary.get('evaluation') or {}).get('metrics', {})
    return {'trainer': summary['trainer'], 'status': summary['status'],
            'auc': metrics.get('auc'), 'examples': metrics.get('example_count'),
            'trainer_seconds': seconds.get('Trainer'), 'wall_seconds': round(wall, 1),
            'blessed': summary.get('blessed'), 'error': summary.get('error')}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--workdir', help='where the fresh roots go (default: a temp dir)')
    p.add_argument('--config', default=os.path.join(REPO, 'configs', 'taxi.yaml'))
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    p.add_argument('--trainers', default=','.join(TRAINERS), help='subset, in order')
    args = p.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix='trainers-bench-')
    results = []
    for i, trainer in enumerate(args.trainers.split(',')):
        print(f'running the pipeline with the {trainer} trainer ...', flush=True)
        results.append(run(trainer, workdir, args.config, args.set, i))
    print(f'\n{"trainer":<10} {"held-out AUC":>12} {"eval rows":>9} {"Trainer s":>9} '
          f'{"run wall s":>10}  status')
    for r in results:
        auc = 'n/a' if r['auc'] is None else f'{r["auc"]:.4f}'
        rows = 'n/a' if r['examples'] is None else f'{r["examples"]:.0f}'
        print(f'{r["trainer"]:<10} {auc:>12} {rows:>9} {r["trainer_seconds"] or 0:>9.1f} '
              f'{r["wall_seconds"]:>10.1f}  {r["status"]}{" " + r["error"] if r["error"] else ""}')
    return save(workdir, results)


def save(workdir: str, results) -> int:
    """Writes ``results.json``; the exit status: 0 when every run succeeded."""
    with open(os.path.join(workdir, 'results.json'), 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)
    print(f'\n(results: {os.path.join(workdir, "results.json")})')
    return 0 if all(r['status'] == 'succeeded' for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
