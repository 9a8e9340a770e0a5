"""This checkout against a reference commit: a cold run and an unchanged rerun of the bundled
taxi data, alternating, in one invocation, and the time resolving a run's inputs takes.

    .venv/bin/python benchmarks/core_bench.py [--reference aab6d68] [--rounds 2]

The reference is ``git archive``d into a temporary directory and run with this venv: a
script's directory comes first on ``sys.path``, so each side imports its own ``pipeline`` and
``components``. Each side gets its own output directories; each cold run starts from empty
ones. Prints every time, the medians and their ratios (this / reference), and the held-out
AUC of each cold run (the change must not move it).
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(repo: str, out: str, *extra: str) -> dict:
    summary = os.path.join(out, 'summary.json')
    args = [sys.executable, 'pipeline_runner.py', '--pipeline-root', os.path.join(out, 'p'),
            '--metadata', os.path.join(out, 'metadata.sqlite'),
            '--serving-dir', os.path.join(out, 'serving'), '--summary-json', summary, *extra]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise SystemExit(f'{repo}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}')
    with open(summary, encoding='utf-8') as f:
        result = json.load(f)
    return {'seconds': seconds, 'cpu': cpu,
            'auc': (result.get('evaluation') or {}).get('metrics', {}).get('auc'),
            'components': {c['id']: c.get('seconds') for c in result['components']}}


def resolve_seconds(repo: str, rounds: int = 5) -> float:
    code = ('import time; from pipeline.config import load_config; from pipeline.inputs import resolve; '
            'c = load_config("configs/taxi.yaml"); t = time.time(); '
            f'[resolve(c) for _ in range({rounds})]; print((time.time() - t) / {rounds})')
    done = subprocess.run([sys.executable, '-c', code], cwd=repo, capture_output=True, text=True,
                          check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--reference', default='aab6d68', help='the commit to compare with')
    p.add_argument('--rounds', type=int, default=2)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix='core-bench-')
    reference = os.path.join(work, 'reference')
    os.makedirs(reference)
    archive = subprocess.run(['git', 'archive', args.reference], cwd=REPO, capture_output=True,
                             check=True).stdout
    subprocess.run(['tar', '-x', '-C', reference], input=archive, check=True)
    sides = {'this': REPO, 'reference': reference}
    times = {(side, kind): [] for side in sides for kind in ('cold', 'rerun', 'cold cpu', 'rerun cpu')}
    aucs = {side: [] for side in sides}
    try:
        for i in range(args.rounds):
            # Alternating, and the order swapped each round: a machine whose load drifts
            # favours neither side.
            for side, repo in (list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]):
                out = os.path.join(work, f'{side}-{i}')
                cold = run(repo, out)
                rerun = run(repo, out)
                for kind, r in (('cold', cold), ('rerun', rerun)):
                    times[side, kind].append(r['seconds'])
                    times[side, f'{kind} cpu'].append(r['cpu'])
                aucs[side].append(cold['auc'])
                print(f'round {i + 1} {side:9s} cold {cold["seconds"]:6.1f} s ({cold["cpu"]:.1f} s CPU, '
                      f'auc {cold["auc"]:.4f})   unchanged rerun {rerun["seconds"]:5.2f} s '
                      f'({rerun["cpu"]:.2f} s CPU)\n    {cold["components"]}', flush=True)
        for kind in ('cold', 'cold cpu', 'rerun', 'rerun cpu'):
            this, ref = (statistics.median(times[s, kind]) for s in ('this', 'reference'))
            print(f'{kind:9s} median: this {this:7.2f} s, reference {ref:7.2f} s, '
                  f'ratio {this / ref:.3f}')
        print(f'held-out auc: this {aucs["this"]}, reference {aucs["reference"]}')
        print(f'resolving the inputs (this checkout): {resolve_seconds(REPO) * 1000:.0f} ms')
        print('(a machine shared with other work: compare the ratios, not the seconds)')
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
