"""``run.beam_workers``: every Beam job of a run on SDK worker processes of their own.

The module fixture runs the command line three times on one store, with 2 workers and
``run.in_memory_rows: 0`` (so StatisticsGen, as Transform and the Evaluator, goes to Beam on
a few hundred rows): a worker is SIGKILLed in the first Beam job (the run fails at once,
saying so, and leaves no process behind), the second run is sent SIGTERM in a Beam job (it
stops as Ctrl-C would), the third completes from where they stopped. Its Beam components'
outputs are then compared with the same executors run in this process (Beam's direct
runner) on the same input artifacts: the statistics, the transform graph's outputs on the
same rows, the metrics and the blessing, and the BulkInferrer's predictions
(``inference.infer_dir``: the batch-inference job of ``predict``, tests/test_predict.py).
"""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from pipeline import beam_workers
from pipeline.config import ConfigError, load_config
from testlib import REPO, rerun_node, taxi_rows, write_config, write_csv

CONFIG = os.path.join(REPO, 'configs', 'taxi.yaml')
SMALL = ['training.train_steps=60', 'training.eval_steps=5', 'training.steps_per_epoch=30',
         'training.batch_size=64']
ON_WORKERS = ['--beam-workers', '2', '--set', 'run.in_memory_rows=0']


# --------------------------------------------------------------------------------------
# What the config refuses before anything runs.

def test_remote_workers_refuse_a_local_pipeline_root():
    for args, where in ((['--runner=DataflowRunner', '--project=p', '--region=r'], 'on Dataflow'),
                        (['--runner=FlinkRunner', '--flink_master=flink:8081'],
                         'in Docker containers'),
                        (['--runner=PortableRunner', '--job_endpoint=localhost:8099',
                          '--environment_type=EXTERNAL', '--environment_config=10.1.2.3:50000'],
                         'at 10.1.2.3:50000'),
                        # Flink on Kubernetes with Beam's worker pool as each task manager's
                        # sidecar: "localhost" is the task manager's.
                        (['--runner=FlinkRunner', '--flink_master=flink:8081',
                          '--environment_type=EXTERNAL', '--environment_config=localhost:50000'],
                         r'on the cluster at flink:8081 \(--flink_master')):
        with pytest.raises(ConfigError, match=r'paths\.pipeline_root: .* is a local path, but '
                           rf'run\.beam_args run Beam\'s workers {where}'):
            load_config(CONFIG, [f'run.beam_args=[{", ".join(args)}]'])
        load_config(CONFIG, [f'run.beam_args=[{", ".join(args)}]',
                             'paths.pipeline_root=gs://bucket/root'])
    # Workers on this machine see its paths.
    load_config(CONFIG, ['run.beam_args=[--runner=PortableRunner, --job_endpoint=embed, '
                         '--environment_type=LOOPBACK]'])
    load_config(CONFIG, ['run.beam_workers=2'])


def test_the_command_line_refuses_beam_args_it_cannot_run(capsys):
    import pipeline_runner

    assert pipeline_runner.main(['--beam-arg=--runner=DataflowRunner']) == 2
    assert 'Config refused: ' in capsys.readouterr().err
    assert pipeline_runner.main(['--beam-workers', '2', '--beam-arg=--runner=FlinkRunner']) == 2
    err = capsys.readouterr().err
    assert 'run.beam_workers: sends every Beam job to its own worker pool; it cannot be ' \
           'combined with --runner in run.beam_args' in err
    assert pipeline_runner.main(['--beam-workers', '-1']) == 2
    assert 'run.beam_workers: expected 0 or more, got -1' in capsys.readouterr().err
    # The Dask runner runs none of the pipeline's Beam jobs (docs/orchestrators.md).
    assert pipeline_runner.main(['--beam-arg=--runner=apache_beam.runners.dask.dask_runner.'
                                 'DaskRunner']) == 2
    assert ("run.beam_args: --runner=apache_beam.runners.dask.dask_runner.DaskRunner: Beam "
            "2.56's Dask runner runs none of the pipeline's Beam jobs") in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# The pool alone: started and ended with its process group, however its launcher ends.

HOLD_POOL = ('import sys, time; from pipeline.beam_workers import worker_pool\n'
             'with worker_pool(2) as pool:\n'
             '    print(pool.pid, flush=True); time.sleep(600)\n')


def start_holder():
    holder = subprocess.Popen([sys.executable, '-c', HOLD_POOL], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=REPO))
    return holder, int(holder.stdout.readline())


def wait_gone(pgid, seconds=30.0):
    deadline = time.time() + seconds
    while beam_workers.group_alive(pgid) and time.time() < deadline:
        time.sleep(0.2)
    return not beam_workers.group_alive(pgid)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])
def test_the_pool_ends_with_its_launcher(sig):
    holder, pool = start_holder()
    assert beam_workers.group_alive(pool)
    holder.send_signal(sig)
    holder.wait(timeout=60)
    # SIGTERM: the launcher ends the pool on its way out; SIGKILL: the pool sees its stdin
    # close and ends its own process group.
    assert wait_gone(pool), psutil.Process(pool).cmdline()


# --------------------------------------------------------------------------------------
# Three runs of the command line on one store.

def harnesses(proc: psutil.Process):
    """(the pool's pid, the SDK harness processes) under a running command line."""
    pool, found = None, []
    with_children = []
    try:
        with_children = proc.children(recursive=True)
    except psutil.Error:
        pass
    for p in with_children:
        try:
            cmd = ' '.join(p.cmdline())
        except psutil.Error:
            continue
        if 'pipeline.beam_workers' in cmd:
            pool = p.pid
        elif 'SdkHarness' in cmd:
            found.append(p)
    return pool, found


def run_and(args, action, out_path, timeout=1800):
    """Runs the command line; once a Beam job's harnesses run, ``action(cli, harnesses)``
    (None: let it run). Returns (exit code, output, pool pid, seconds from the action to
    the exit)."""
    with open(out_path, 'w+', encoding='utf-8') as out:
        cli = subprocess.Popen([sys.executable, 'pipeline_runner.py', *args], cwd=REPO,
                               stdout=out, stderr=subprocess.STDOUT)
        proc, pool, acted = psutil.Process(cli.pid), None, None
        deadline = time.time() + timeout
        while cli.poll() is None and time.time() < deadline:
            found_pool, found = harnesses(proc)
            pool = pool or found_pool
            if action and acted is None and len(found) == 2:
                time.sleep(1.0)  # the job is under way
                action(cli, found)
                acted = time.time()
            time.sleep(0.2)
        code = cli.wait(timeout=max(1.0, deadline - time.time()))
        out.seek(0)
        return code, out.read(), pool, (time.time() - acted if acted else None)


@pytest.fixture(scope='module')
def worker_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('beam_workers')
    header, rows = taxi_rows(400)
    data = write_csv(str(tmp / 'data' / 'data.csv'), header, rows)
    write_csv(str(tmp / 'infer' / 'new.csv'), header, rows[:50])
    path = write_config(str(tmp), data={'root': os.path.dirname(data)},
                        inference={'infer_dir': str(tmp / 'infer'), 'keep': ['company']})
    args = ['--config', path, *ON_WORKERS, *[a for s in SMALL for a in ('--set', s)]]
    killed = {}

    def kill_a_worker(cli, found):
        killed['pid'] = found[0].pid
        found[0].send_signal(signal.SIGKILL)

    runs = {'killed': run_and(args, kill_a_worker, tmp / 'killed.out'),
            'interrupted': run_and(args, lambda cli, found: cli.send_signal(signal.SIGTERM),
                                   tmp / 'interrupted.out')}
    # Through TFX: the fast rerun would not apply anyway (no run completed), but be sure.
    runs['rerun'] = run_and(args + ['--set', 'run.fast_rerun=false',
                                    '--summary-json', str(tmp / 'summary.json')],
                            None, tmp / 'rerun.out')
    with open(tmp / 'summary.json', encoding='utf-8') as f:
        summary = json.load(f)
    return dict(runs, killed_pid=killed.get('pid'), summary=summary, tmp=tmp,
                config=load_config(path, ['run.beam_workers=2', 'run.in_memory_rows=0'] + SMALL))


def test_a_killed_worker_fails_the_run_at_once_saying_so(worker_runs):
    code, out, pool, seconds = worker_runs['killed']
    assert code == 1, out[-3000:]
    # The first Beam job (StatisticsGen, in_memory_rows 0) fails with the worker's fate.
    assert (f'StatisticsGen failed: RuntimeError: ' in out and
            f'Beam worker process {worker_runs["killed_pid"]} was killed by SIGKILL while the '
            'job ran on the worker pool (run.beam_workers: 2); the job failed') in out, out[-3000:]
    assert seconds < 120, seconds
    assert 'Traceback' not in out
    assert pool and not beam_workers.group_alive(pool)


def test_an_interrupted_run_stops_its_workers(worker_runs):
    code, out, pool, seconds = worker_runs['interrupted']
    assert code == 130, out[-3000:]
    assert 'Interrupted: nothing was pushed by this run.' in out
    assert seconds < 60, seconds
    assert pool and not beam_workers.group_alive(pool)


def test_the_rerun_completes_on_the_workers_from_the_cache_of_the_failed_runs(worker_runs):
    code, out, pool, _ = worker_runs['rerun']
    assert code == 0, out[-3000:]
    summary = worker_runs['summary']
    assert summary['status'] == 'succeeded' and summary['blessed'] and summary['push']['version']
    states = {c['id']: c['state'] for c in summary['components']}
    # What the failed runs completed is reused although each run's pool had other ports
    # (the Beam arguments hold placeholders, which TFX's cache keys on).
    assert states['CsvExampleGen'] == 'cached', states
    assert {states[n] for n in ('StatisticsGen', 'Transform', 'Evaluator')} <= {'ran', 'cached'}
    assert states['BulkInferrer'] == 'ran', states
    assert not beam_workers.group_alive(pool)
    # Every Beam job of the run went to the pool, on two workers each.
    log_dir = os.path.join(worker_runs['config'].paths.pipeline_root, '_logs')
    with open(os.path.join(log_dir, sorted(os.listdir(log_dir))[-1]), encoding='utf-8') as f:
        log = f.read()
    ran = [n for n in ('StatisticsGen', 'Transform', 'Evaluator', 'BulkInferrer')
           if states[n] == 'ran']
    # The Evaluator evaluates up to 200k eval rows in memory whatever the runner
    # (components/fast_evaluator); beyond, or for what it does not support, TFMA's Beam job.
    if states['Evaluator'] == 'ran' and '(in memory) written to' in log:
        ran.remove('Evaluator')
    assert log.count('Job state changed to DONE') == len(ran)
    assert log.count('Starting worker with command') == 2 * len(ran)
    assert 'DirectRunner' not in log


# --------------------------------------------------------------------------------------
# The rerun's Beam components against the same executors in this process.

def in_process(worker_runs, node_id, tmp):
    """(inputs, the workers' outputs, in-process outputs) of ``node_id``'s executor in
    the rerun, run again here with the in-process Beam arguments (testlib.rerun_node)."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    from pipeline.pipeline import beam_args

    config = worker_runs['config']
    local = config.replace(run=dataclasses.replace(config.run, beam_workers=0))
    execution, inputs, outputs, ours = rerun_node(config, node_id, tmp, beam_args(local))
    if execution.last_known_state == mlmd.Execution.CACHED:
        pytest.skip(f'{node_id} was reused from the cache in the rerun')
    return inputs, outputs, ours


def assert_close(x, y, path=''):
    """Equal values (as MessageToDict gives them), floats to 1e-6: the workers sum in
    another order. Lists of features are matched by path."""
    if isinstance(x, dict):
        assert x.keys() == y.keys(), path
        for k in x:
            assert_close(x[k], y[k], f'{path}.{k}')
    elif isinstance(x, list):
        assert len(x) == len(y), path
        if x and isinstance(x[0], dict) and 'path' in x[0]:
            x, y = (sorted(v, key=lambda f: str(f['path'])) for v in (x, y))
        for i, (u, v) in enumerate(zip(x, y)):
            assert_close(u, v, f'{path}[{i}]')
    elif isinstance(x, float) and isinstance(y, float):
        assert x == pytest.approx(y, rel=1e-6, abs=1e-9, nan_ok=True), path
    else:
        assert x == y, path


def test_the_workers_statistics_are_the_in_process_ones(worker_runs, tmp_path):
    from google.protobuf.json_format import MessageToDict
    from tensorflow_metadata.proto.v0 import statistics_pb2
    from tfx.types import artifact_utils

    _, theirs, ours = in_process(worker_runs, 'StatisticsGen', str(tmp_path))
    for split in ('train', 'eval'):
        stats = []
        for artifact in (theirs['statistics'][0], ours['statistics'][0]):
            with open(os.path.join(artifact_utils.get_split_uri([artifact], split),
                                   'FeatureStats.pb'), 'rb') as f:
                stats.append(statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read()))
        assert stats[0].datasets[0].num_examples > 50
        assert_close(*map(MessageToDict, stats), path=split)


def test_the_workers_transform_graph_transforms_rows_as_the_in_process_one(worker_runs, tmp_path):
    import tensorflow as tf
    import tensorflow_transform as tft
    from tfx.types import artifact_utils

    inputs, theirs, ours = in_process(worker_runs, 'Transform', str(tmp_path))
    graphs = [tft.TFTransformOutput(a['transform_graph'][0].uri) for a in (theirs, ours)]
    # The vocabularies (ColumnVocabularies, written on a worker) are the same files.
    names = sorted(os.listdir(graphs[0].transform_savedmodel_dir + '/assets'))
    assert names
    for name in names:
        assert graphs[0].vocabulary_by_name(name) == graphs[1].vocabulary_by_name(name), name
    # Both graphs on the same raw rows (the eval split).
    uri = artifact_utils.get_split_uri(inputs['examples'], 'eval')
    files = tf.io.gfile.glob(os.path.join(uri, '*'))
    records = list(tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator())
    raw = tf.io.parse_example(records, graphs[0].raw_feature_spec())
    outs = [g.transform_features_layer()(dict(raw)) for g in graphs]
    assert outs[0].keys() == outs[1].keys() and len(outs[0]) > 5
    # The analyzers' partial sums are merged in another order on two workers: the z-score of
    # a ~1.4e9 timestamp differs in the 6th decimal (float32 rounding of its mean).
    for key in outs[0]:
        np.testing.assert_allclose(outs[0][key].numpy(), outs[1][key].numpy(), rtol=1e-5,
                                   atol=2e-5, err_msg=key)


def test_the_workers_metrics_and_blessing_are_the_in_process_ones(worker_runs, tmp_path):
    import tensorflow_model_analysis as tfma

    _, theirs, ours = in_process(worker_runs, 'Evaluator', str(tmp_path))
    results = [tfma.load_eval_result(a['evaluation'][0].uri) for a in (theirs, ours)]
    metrics = [dict((str(k), v) for k, v in r.slicing_metrics) for r in results]
    assert len(metrics[0]) > 10  # overall, and each trip_start_hour
    assert 'auc' in metrics[0]['()']['']['']
    assert_close(*metrics)
    blessed = [os.listdir(a['blessing'][0].uri) for a in (theirs, ours)]
    assert blessed[0] == blessed[1] == ['BLESSED']


def test_the_workers_predictions_are_the_in_process_ones(worker_runs, tmp_path):
    import csv

    _, theirs, ours = in_process(worker_runs, 'BulkInferrer', str(tmp_path))
    tables = []
    for artifacts in (theirs, ours):
        with open(os.path.join(artifacts['inference_result'][0].uri, 'predictions.csv'),
                  newline='', encoding='utf-8') as f:
            tables.append(list(csv.DictReader(f)))
    assert len(tables[0]) == 50
    assert list(tables[0][0]) == ['line', 'file', 'company', 'probability']
    assert [r['line'] for r in tables[0]] == [r['line'] for r in tables[1]]
    np.testing.assert_allclose([float(r['probability']) for r in tables[0]],
                               [float(r['probability']) for r in tables[1]], rtol=1e-6)
