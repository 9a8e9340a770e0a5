"""Distributed training of the Estimator trainer (issue 21): ``training.trainer: estimator``
with ``training.distribute: multi_worker | parameter_server`` on local clusters of processes.

TensorFlow 2.15's Estimator distribution: ``RunConfig(train_distribute=...)`` with each
process's ``TF_CONFIG``, and ``train_and_evaluate`` in every task. Two pipeline runs on one
store and 500 taxi rows share the tests: ``multi_worker`` (a chief and a worker) and
``parameter_server`` (a chief and two workers that all train, one parameter server, and
start together). Each
is evaluated, blessed and pushed; the pushed models are served. A killed worker is shown on
the trainer's ``run_fn`` alone, on the first run's artifacts.
"""
import io
import os
import re
import sys

import pytest

from testlib import write_config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'serving'))

TRAINING = {'trainer': 'estimator', 'train_steps': 40, 'eval_steps': 5, 'batch_size': 32,
            'checkpoint_steps': 20}
LENIENT = ['evaluation.thresholds=[{metric: auc, lower: 0.5}]',
           'evaluation.change_thresholds=[{metric: auc, max_decrease: 1.0}]',
           'evaluation.slices=[]']


@pytest.fixture(scope='module')
def estimator_distributed(tmp_path_factory, taxi_sample):
    from pipeline.config import load_config
    from pipeline.report import latest_run, open_store, run_outputs
    from pipeline.run import run_pipeline

    directory = str(tmp_path_factory.mktemp('estimator_distributed'))
    path = write_config(directory, data={'root': taxi_sample}, training=TRAINING)
    runs = {}
    for strategy in ('multi_worker', 'parameter_server'):
        config = load_config(path, LENIENT + [f'training.distribute={strategy}'])
        out = io.StringIO()
        summary = run_pipeline(config, out=out)
        store = open_store(config.paths.metadata)
        runs[strategy] = {'summary': summary, 'output': out.getvalue(),
                          'nodes': run_outputs(store, latest_run(store, config.name))}
    runs['config'] = config
    return runs


@pytest.mark.parametrize('strategy, workers, replicas, tasks', [
    ('multi_worker', 2, 2, ['chief-0.log', 'worker-0.log']),
    ('parameter_server', 3, 1, ['chief-0.log', 'ps-0.log', 'worker-0.log', 'worker-1.log'])])
def test_an_estimator_cluster_run_is_blessed_pushed_and_serves(
        estimator_distributed, strategy, workers, replicas, tasks, tmp_path):
    from pipeline.report import render
    from serving_testlib import check_served_model, push_copy, start_server

    run = estimator_distributed[strategy]
    summary = run['summary']
    assert summary['status'] == 'succeeded', summary.get('error')
    assert summary['blessed'] is True and summary['push']['pushed'] is True
    record = summary['training_record']
    assert (record['trainer'], record['distribute']) == ('estimator', strategy)
    assert record['workers'] == workers and record['replicas_in_sync'] == replicas
    assert record['global_batch_size'] == TRAINING['batch_size'] * replicas
    assert f'Training: {strategy} on {workers} worker(s)' in render(summary)
    # Every task of the local cluster ran; only the chief exported; its checkpoints hold
    # the training's last step.
    model_run = run['nodes']['Trainer']['outputs']['model_run'][0].uri
    assert sorted(f for f in os.listdir(os.path.join(model_run, 'cluster'))
                  if f.endswith('.log')) == tasks
    # Every task that trains reads a shard of its own and takes steps: under multi_worker
    # each task takes every (synchronous) step; under parameter_server each asynchronous
    # step is one task's, and the tasks start together (StartTogether: before it, a worker
    # that asked for its session before the chief had initialized the variables slept
    # 30 s, and a training this short was the chief's alone).
    trainers = [t[:-len('.log')] for t in tasks if not t.startswith('ps')]
    shards, steps, global_step = set(), {}, 0
    for name in trainers:
        log = open(os.path.join(model_run, 'cluster', f'{name}.log'), errors='replace').read()
        shards.update(re.findall(rf'{name}: reads input shard (\d+) of {len(trainers)}\b', log))
        for own, reached in re.findall(
                rf'{name}: trained (\d+) step\(s\) of its own, to global step (\d+)', log):
            steps[name], global_step = int(own), max(global_step, int(reached))
    assert shards == {str(i + 1) for i in range(len(trainers))}, shards
    assert 'chief-0' in steps and all(steps.get(name) for name in trainers if name != 'chief-0'), steps
    if strategy == 'multi_worker':
        assert set(steps.values()) == {TRAINING['train_steps']} == {global_step}, steps
    else:
        assert TRAINING['train_steps'] <= global_step and sum(steps.values()) <= global_step
    import tensorflow as tf
    saved = int(tf.train.latest_checkpoint(model_run).rsplit('-', 1)[1])
    assert TRAINING['train_steps'] <= saved <= global_step
    model = run['nodes']['Trainer']['outputs']['model'][0].uri
    assert os.listdir(model) == ['Format-Serving']
    serving_dir = str(tmp_path / 'taxi')
    push_copy(summary['push']['path'], serving_dir, 1)
    server = start_server(serving_dir)
    try:
        check_served_model(server)
    finally:
        server.stop()


def test_a_killed_estimator_worker_fails_the_training_clearly_and_leaves_no_process(
        estimator_distributed, tmp_path):
    """A parameter-server cluster's worker is killed mid-training: the Trainer fails within
    seconds naming the worker and how it died, every process is gone, nothing exported."""
    from components import distribute, estimator_trainer
    from trainer_testlib import alive, fn_args_of, kill_a_task_once_training

    config = estimator_distributed['config']
    fn_args = fn_args_of(config.paths.metadata, config.name, str(tmp_path),
                         training={'distribute': 'parameter_server'})
    fn_args.train_steps = 10_000_000   # it would train for hours
    failure, failed_after, pids = kill_a_task_once_training(estimator_trainer.run_fn, fn_args,
                                                            'worker-1')
    message = str(failure)
    assert 'training.distribute parameter_server: worker-1' in message
    assert 'was killed by signal SIGKILL' in message and 'worker-1.log' in message
    assert failed_after < distribute.STOP_SECONDS + 5
    assert not any(alive(pid) for pid in pids.values())
    assert not os.path.exists(fn_args.serving_model_dir)
