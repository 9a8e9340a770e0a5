"""Distributed training (issue 21): ``training.distribute`` on local clusters of processes.

Two pipeline runs on one store and 500 taxi rows share the tests: ``multi_worker``
(MultiWorkerMirroredStrategy, a chief and a worker on loopback ports), then
``parameter_server`` (ParameterServerStrategy with Keras ``fit``: a coordinating chief, two
workers, one parameter server). Each is evaluated, blessed and pushed as usual; the
pushed models are served. A killed worker is shown on the Trainer's ``run_fn`` alone, on
the first run's artifacts.
"""
import io
import os
import sys
import threading
import time

import pytest

from testlib import write_config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'serving'))

# Few steps: the processes' start-up (~20 s each, TensorFlow and TFX imported) dominates.
TRAINING = {'train_steps': 40, 'eval_steps': 5, 'steps_per_epoch': 20, 'batch_size': 32}
LENIENT = ['evaluation.thresholds=[{metric: auc, lower: 0.5}]',
           'evaluation.change_thresholds=[{metric: auc, max_decrease: 1.0}]',
           'evaluation.slices=[]']


@pytest.fixture(scope='module')
def distributed(tmp_path_factory, taxi_sample):
    from pipeline.config import load_config
    from pipeline.report import latest_run, open_store, run_outputs
    from pipeline.run import run_pipeline

    directory = str(tmp_path_factory.mktemp('distributed'))
    path = write_config(directory, data={'root': taxi_sample}, training=TRAINING)
    runs = {}
    for strategy in ('multi_worker', 'parameter_server'):
        config = load_config(path, LENIENT + [f'training.distribute={strategy}'])
        out = io.StringIO()
        started = time.monotonic()
        summary = run_pipeline(config, out=out)
        store = open_store(config.paths.metadata)
        runs[strategy] = {'summary': summary, 'output': out.getvalue(),
                          'seconds': time.monotonic() - started,
                          'nodes': run_outputs(store, latest_run(store, config.name))}
    runs['config'] = config
    return runs


@pytest.mark.parametrize('strategy, workers, replicas', [('multi_worker', 2, 2),
                                                         ('parameter_server', 2, 1)])
def test_a_cluster_run_is_blessed_and_pushed(distributed, strategy, workers, replicas):
    run = distributed[strategy]
    summary = run['summary']
    assert summary['status'] == 'succeeded', summary.get('error')
    assert summary['blessed'] is True and summary['push']['pushed'] is True
    record = summary['training_record']
    assert record['distribute'] == strategy
    assert record['workers'] == workers and record['replicas_in_sync'] == replicas
    # A step's global batch is the per-replica batch times the replicas in sync.
    assert record['global_batch_size'] == TRAINING['batch_size'] * replicas
    from pipeline.report import render
    assert f'Training: {strategy} on {workers} worker(s)' in render(summary)
    # Each task of the local cluster ran and logged; only the chief exported.
    cluster = os.path.join(run['nodes']['Trainer']['outputs']['model_run'][0].uri, 'cluster')
    logs = sorted(f for f in os.listdir(cluster) if f.endswith('.log'))
    assert logs == (['chief-0.log', 'worker-0.log'] if strategy == 'multi_worker'
                    else ['chief-0.log', 'ps-0.log', 'worker-0.log', 'worker-1.log'])
    model = run['nodes']['Trainer']['outputs']['model'][0].uri
    assert os.listdir(model) == ['Format-Serving']


@pytest.mark.parametrize('strategy', ['multi_worker', 'parameter_server'])
def test_the_pushed_model_serves_predictions(distributed, strategy, tmp_path):
    from serving_testlib import check_served_model, push_copy, start_server
    serving_dir = str(tmp_path / 'taxi')
    push_copy(distributed[strategy]['summary']['push']['path'], serving_dir, 1)
    server = start_server(serving_dir)
    try:
        check_served_model(server)
    finally:
        server.stop()


def test_a_killed_worker_fails_the_training_clearly_and_leaves_no_process(distributed, tmp_path):
    """The worker is killed mid-training: the Trainer fails within seconds with an error
    naming the worker and how it died, and every process of the cluster is gone."""
    from components import distribute, trainer
    from trainer_testlib import alive, fn_args_of, kill_a_task_once_training

    config = distributed['config']
    fn_args = fn_args_of(config.paths.metadata, config.name, str(tmp_path),
                         training={'distribute': 'multi_worker', 'steps_per_epoch': 20})
    fn_args.train_steps = 100_000   # it would train for hours
    failure, failed_after, pids = kill_a_task_once_training(trainer.run_fn, fn_args, 'worker-0')
    message = str(failure)
    assert 'training.distribute multi_worker: worker-0' in message
    assert 'was killed by signal SIGKILL' in message and 'worker-0.log' in message
    assert failed_after < distribute.STOP_SECONDS + 5
    assert not any(alive(pid) for pid in pids.values())
    assert not os.path.exists(fn_args.serving_model_dir)


def test_where_tf_config_is_set_a_lost_worker_fails_the_chief_instead_of_hanging(
        distributed, tmp_path):
    """A cluster that provides TF_CONFIG (Vertex AI, a TFJob) has no supervisor of ours: the
    chief and a worker run the Trainer's task as such a cluster's replicas do; the worker
    is killed mid-training, and the chief fails on its own within a minute (TensorFlow's
    collectives abort on the lost peer) and exports nothing."""
    import json
    import subprocess
    import types

    from components import distribute
    from trainer_testlib import fn_args_of

    config = distributed['config']
    fn_args = fn_args_of(config.paths.metadata, config.name, str(tmp_path),
                         training={'distribute': 'multi_worker', 'steps_per_epoch': 20})
    fn_args.train_steps = 100_000   # it would train for hours
    job = str(tmp_path / 'job.json')
    with open(job, 'w') as f:
        json.dump(distribute.job_of(fn_args, 'components.trainer.train_task'), f, default=str)
    cluster = distribute.local_cluster(types.SimpleNamespace(distribute='multi_worker', workers=2))
    heartbeat = str(tmp_path / 'heartbeat')   # only to see that training has begun
    tasks = {}
    try:
        for name, task in (('worker', distribute.Task(cluster, 'worker', 0)),
                           ('chief', distribute.Task(cluster, 'chief', 0))):
            with open(tmp_path / f'{name}.log', 'wb') as log:
                tasks[name] = subprocess.Popen(
                    [sys.executable, '-m', 'components.distribute', job], stdout=log,
                    stderr=subprocess.STDOUT, env=dict(os.environ, TF_CONFIG=task.tf_config(),
                                                       **{distribute.HEARTBEAT_ENV: heartbeat}))
        deadline = time.monotonic() + 300
        while not os.path.exists(heartbeat) and time.monotonic() < deadline:
            assert tasks['chief'].poll() is None, (tmp_path / 'chief.log').read_text()[-3000:]
            time.sleep(0.2)
        assert os.path.exists(heartbeat), 'the cluster never started training'
        time.sleep(2)
        tasks['worker'].kill()
        killed = time.monotonic()
        code = tasks['chief'].wait(timeout=120)
        failed_after = time.monotonic() - killed
    finally:
        for p in tasks.values():
            if p.poll() is None:
                p.kill()
            p.wait()
    log = (tmp_path / 'chief.log').read_text(errors='replace')
    assert code != 0
    assert failed_after < 60, failed_after
    assert 'job:worker' in log[-20000:], log[-3000:]
    assert not os.path.exists(fn_args.serving_model_dir)


def _threads(pid: int) -> int:
    try:
        with open(f'/proc/{pid}/status') as f:
            return next(int(line.split()[1]) for line in f if line.startswith('Threads:'))
    except (OSError, StopIteration):
        return 0


def test_multi_worker_tasks_keep_a_bounded_number_of_threads(distributed, tmp_path):
    """The 12k taxi run used to abort at its second epoch ("Resource temporarily
    unavailable"): a collective timeout made TensorFlow start a thread per collective that
    slept for the whole timeout, ~75 a step, until no thread could be created. Over 150
    steps each task's threads now stay flat (the old code reached thousands). With
    ``scale_lr`` the model trains at the configured rate times the 2 replicas."""
    import json

    from components import trainer, training_record
    from trainer_testlib import fn_args_of

    config = distributed['config']
    fn_args = fn_args_of(config.paths.metadata, config.name, str(tmp_path),
                         training={'distribute': 'multi_worker', 'steps_per_epoch': 50,
                                   'early_stopping_patience': 0, 'scale_lr': True,
                                   'learning_rate': 0.002})
    fn_args.train_steps = 150
    cluster_json = os.path.join(fn_args.model_run_dir, 'cluster', 'cluster.json')
    heartbeat = os.path.join(fn_args.model_run_dir, 'cluster', 'heartbeat')
    counts = {}   # task -> (threads at the first step, the most seen)
    done = threading.Event()

    def count():
        while not os.path.exists(heartbeat) and not done.wait(0.2):
            pass
        with open(cluster_json) as f:
            pids = {name: task['pid'] for name, task in json.load(f).items()}
        while not done.wait(0.5):
            for name, pid in pids.items():
                n = _threads(pid)
                first, most = counts.get(name, (n, n))
                counts[name] = (first, max(most, n))

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    try:
        trainer.run_fn(fn_args)
    finally:
        done.set()
        counter.join(10)
    assert os.path.exists(os.path.join(fn_args.serving_model_dir, 'saved_model.pb'))
    record = training_record.read(fn_args.serving_model_dir)
    assert record['scale_lr'] is True and record['replicas_in_sync'] == 2
    assert record['hyperparameters']['learning_rate'] == pytest.approx(0.004)
    assert set(counts) == {'chief-0', 'worker-0'}
    for name, (first, most) in counts.items():
        assert most - first < 300, (name, first, most)


def test_multi_worker_training_is_reproducible_for_a_fixed_seed(distributed, tmp_path):
    """Synchronous training: two trainings with one seed export the same weights (each
    worker's shard and order follow the seed; the all-reduce of two workers' gradients
    does not depend on which arrives first)."""
    import numpy as np
    import tensorflow as tf

    from components import trainer
    from trainer_testlib import fn_args_of

    config = distributed['config']
    weights = []
    for attempt in ('a', 'b'):
        fn_args = fn_args_of(config.paths.metadata, config.name, str(tmp_path / attempt),
                             training={'distribute': 'multi_worker', 'steps_per_epoch': 10,
                                       'seed': 7})
        fn_args.train_steps = 10
        trainer.run_fn(fn_args)
        reader = tf.train.load_checkpoint(os.path.join(fn_args.serving_model_dir,
                                                       'variables', 'variables'))
        weights.append({name: reader.get_tensor(name)
                        for name in reader.get_variable_to_shape_map()
                        if 'OPTIMIZER_SLOT' not in name and '.OPTIMIZER' not in name})
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 4
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=name)


def test_tf_config_names_this_processs_task_and_a_bad_one_is_refused():
    """Where a cluster sets TF_CONFIG (Vertex AI, a TFJob), the Trainer is the task it names
    and starts nothing; a malformed one is refused naming what was expected."""
    import json

    from components import distribute

    cluster = {'chief': ['c:1'], 'worker': ['w:1', 'w:2'], 'ps': ['p:1']}
    env = {'TF_CONFIG': json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': 1}})}
    task = distribute.task_from_env(env)
    assert (task.type, task.index, task.is_chief, task.workers) == ('worker', 1, False, 2)
    assert distribute.task_from_env({}) is None
    no_chief = {'worker': ['w:1', 'w:2']}
    assert distribute.task_from_env({'TF_CONFIG': json.dumps(
        {'cluster': no_chief, 'task': {'type': 'worker', 'index': 0}})}).is_chief
    with pytest.raises(ValueError, match=r'TF_CONFIG: task worker-5 is not in its cluster'):
        distribute.task_from_env({'TF_CONFIG': json.dumps(
            {'cluster': cluster, 'task': {'type': 'worker', 'index': 5}})})
    with pytest.raises(ValueError, match=r'TF_CONFIG: expected \{"cluster"'):
        distribute.task_from_env({'TF_CONFIG': '{"task": {}}'})
