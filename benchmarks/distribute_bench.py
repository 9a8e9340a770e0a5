"""Wall time and held-out AUC of the Keras trainer under each ``training.distribute``.

    python benchmarks/distribute_bench.py [--strategies none,mirrored,multi_worker,parameter_server]
                                          [--workdir DIR] [--set KEY=VALUE ...]

Each strategy is a whole pipeline run on the bundled taxi data (configs/taxi.yaml) with a
fresh root, in its own process, one after the other (``benchmarks/trainers.py``'s ``run``);
list a strategy twice (``none,multi_worker,none,multi_worker``) to alternate them on a
shared machine. Printed per run: the held-out AUC (the Evaluator's, on the eval split), the
Trainer's seconds and the run's wall time, and each strategy's Trainer time as a ratio of
the first ``none`` run's. The clusters are local processes (docs/distributed.md); no GPU
here, so ``mirrored`` is one replica.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trainers import REPO, run, save  # noqa: E402

STRATEGIES = ('none', 'mirrored', 'multi_worker', 'parameter_server')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--strategies', default=','.join(STRATEGIES), help='in order; may repeat')
    p.add_argument('--workdir', help='where the fresh roots go (default: a temp dir)')
    p.add_argument('--config', default=os.path.join(REPO, 'configs', 'taxi.yaml'))
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    args = p.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix='distribute-bench-')
    results = []
    for i, strategy in enumerate(args.strategies.split(',')):
        print(f'running the pipeline with training.distribute={strategy} ...', flush=True)
        r = run('keras', workdir, args.config, args.set + [f'training.distribute={strategy}'], i)
        results.append(dict(r, strategy=strategy))
    reference = next((r['trainer_seconds'] for r in results if r['strategy'] == 'none'), None)
    print(f'\n{"strategy":<17} {"held-out AUC":>12} {"Trainer s":>9} {"vs none":>7} '
          f'{"run wall s":>10}  status')
    for r in results:
        auc = 'n/a' if r['auc'] is None else f'{r["auc"]:.4f}'
        ratio = (f'{r["trainer_seconds"] / reference:.2f}x'
                 if reference and r['trainer_seconds'] else 'n/a')
        print(f'{r["strategy"]:<17} {auc:>12} {r["trainer_seconds"] or 0:>9.1f} {ratio:>7} '
              f'{r["wall_seconds"]:>10.1f}  {r["status"]}{" " + r["error"] if r["error"] else ""}')
    return save(workdir, results)


if __name__ == '__main__':
    sys.exit(main())
