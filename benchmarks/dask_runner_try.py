"""Beam's Dask runner (``apache_beam.runners.dask``) on the pipeline's own Beam jobs.

    .venv/bin/uv pip install -r requirements-dask.lock      # optional: dask, distributed
    .venv/bin/python benchmarks/dask_runner_try.py --config CONFIG [--set KEY=VALUE ...]
        [--workers 2]

CONFIG is the config of a run that completed (e.g. one with ``--set run.in_memory_rows=0
--set inference.infer_dir=DIR``, so that StatisticsGen and the BulkInferrer ran on Beam).
The script starts a local dask.distributed cluster (``--workers`` processes, one thread
each), runs a plain Beam job on it (Create, Map, GroupByKey), then runs again the
executors of the latest run's Beam components (StatisticsGen, Transform, the Evaluator,
the BulkInferrer), each on its recorded inputs with the pipeline's Beam arguments and
``--runner=apache_beam.runners.dask.dask_runner.DaskRunner
--dask_client_address=<the cluster>``; then all of it again on the same runner handed only
its own options (``OwnOptionsDaskRunner``, below), writing into a temporary
directory. It prints, per job, ``ok`` and the seconds, or the error where it stopped.
docs/orchestrators.md ("Beam's Dask runner") has the figures.
"""
import argparse
import os
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests'))  # testlib.rerun_node
sys.path.insert(0, REPO)

NODES = ('StatisticsGen', 'Transform', 'Evaluator', 'BulkInferrer')
STOCK = 'apache_beam.runners.dask.dask_runner.DaskRunner'
# Beam 2.56's DaskRunner hands every pipeline option that is not at its default (--runner
# itself, TFX's --labels, ...) to dask.distributed.Client(), which refuses them: no job
# starts. This one hands it the Dask options alone, to see where the jobs stop next.
OWN_OPTIONS = 'dask_runner_try.OwnOptionsDaskRunner'


def own_options_runner():
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskOptions, DaskRunner

    class OwnOptionsDaskRunner(DaskRunner):
        def run_pipeline(self, pipeline, options):
            own = options.view_as(DaskOptions)
            return super().run_pipeline(pipeline, PipelineOptions(
                [f'--dask_client_address={own.address}'] if own.address else []))
    return OwnOptionsDaskRunner


def __getattr__(name):  # the runner class, when Beam imports it by name
    if name == 'OwnOptionsDaskRunner':
        return own_options_runner()
    raise AttributeError(name)


def plain_job(args):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    with beam.Pipeline(options=PipelineOptions(args)) as p:
        _ = (p | beam.Create([('a', 1), ('b', 2), ('a', 3)]) | beam.Map(lambda kv: kv)
             | beam.GroupByKey() | beam.Map(lambda kv: (kv[0], sum(kv[1]))))


def where_it_stopped(error: BaseException) -> str:
    """The error, and the innermost frame of Beam's Dask runner or of Dask it came from."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if '/apache_beam/runners/dask/' in f.filename or '/dask/' in f.filename]
    at = f' (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})' if frames else ''
    first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ''
    return f'{type(error).__name__}: {first}{at}'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', required=True)
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    p.add_argument('--workers', type=int, default=2)
    args = p.parse_args(argv)

    from dask.distributed import LocalCluster

    from pipeline.config import load_config
    from pipeline.pipeline import beam_args
    from testlib import rerun_node

    config = load_config(args.config, args.set)
    results = []
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, tempfile.TemporaryDirectory() as tmp:
        jobs = []
        # Beam knows the runner by its full name only (it is not in its list of short names).
        for runner in (STOCK, OWN_OPTIONS):
            dask = [f'--runner={runner}', f'--dask_client_address={cluster.scheduler_address}']
            jobs.append((f'{runner}: plain Beam job', lambda dask=dask: plain_job(dask)))
            jobs += [(f'{runner}: {node}', lambda node=node, dask=dask: rerun_node(
                config, node, os.path.join(tmp, node), beam_args(config) + dask))
                     for node in NODES]
        for name, job in jobs:
            start = time.time()
            try:
                job()
                results.append((name, 'ok', time.time() - start))
            except Exception as e:  # noqa: BLE001 - what stops it is the result
                results.append((name, where_it_stopped(e), time.time() - start))
            print(f'{name}: {results[-1][1]} ({results[-1][2]:.1f} s)', flush=True)
    return 0 if all(r[1] == 'ok' for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
