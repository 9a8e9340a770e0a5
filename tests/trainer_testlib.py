"""The Trainer's ``FnArgs`` of a recorded run, rebuilt from ML Metadata, to run a trainer's
``run_fn`` (or the Tuner's ``tuner_fn``) again on the same artifacts, without a pipeline."""
import copy
import json
import os

from pipeline import report


def trainer_inputs(metadata: str, pipeline: str, node: str = 'Trainer'):
    """(input artifacts, exec properties) of ``node``'s latest execution in ``pipeline``."""
    from ml_metadata.proto import metadata_store_pb2
    store = report.open_store(metadata)
    executions = [e for e in store.get_executions_by_type(
        next(t.name for t in store.get_execution_types() if t.name.endswith('.' + node)
             or t.name == node))
        if e.last_known_state == metadata_store_pb2.Execution.COMPLETE]
    execution = max(executions, key=lambda e: e.id)
    [context] = [c for c in store.get_contexts_by_execution(execution.id) if c.type == 'pipeline_run']
    inputs = report.run_outputs(store, context)[node]['inputs']
    properties = {k: v.string_value or v.int_value for k, v in execution.custom_properties.items()}
    return inputs, properties


def fn_args_of(metadata: str, pipeline: str, directory: str, node: str = 'Trainer',
               training=None, **custom):
    """The ``FnArgs`` ``node`` ran with, writing to ``directory``; ``training`` entries
    replace those of ``custom_config['training']``, ``custom`` other custom_config keys."""
    from tfx.components.trainer import fn_args_utils
    inputs, properties = trainer_inputs(metadata, pipeline, node)
    config = json.loads(properties['custom_config'])
    config = copy.deepcopy(config)
    config['training'].update(training or {})
    config.update(custom)
    properties['custom_config'] = json.dumps(config)
    fn_args = fn_args_utils.get_common_fn_args(inputs, properties, working_dir=directory)
    fn_args.serving_model_dir = os.path.join(directory, 'serving')
    fn_args.model_run_dir = os.path.join(directory, 'model_run')
    fn_args.transform_output = fn_args.transform_graph_path
    return fn_args


def kill_a_task_once_training(run_fn, fn_args, victim: str):
    """Runs ``run_fn(fn_args)`` (a cluster strategy, started locally) and SIGKILLs the task
    named ``victim`` (``worker-0``...) once the cluster has taken a training step.
    Returns (the ``ClusterError`` it raised, seconds from the kill to the failure, the
    pids of the cluster's tasks)."""
    import signal
    import threading
    import time

    import pytest

    from components import distribute
    cluster_json = os.path.join(fn_args.model_run_dir, 'cluster', 'cluster.json')
    heartbeat = os.path.join(fn_args.model_run_dir, 'cluster', 'heartbeat')
    pids, killed = {}, []

    def kill():
        deadline = time.monotonic() + 300
        while not os.path.exists(heartbeat) and time.monotonic() < deadline:
            time.sleep(0.2)
        with open(cluster_json) as f:
            pids.update({name: task['pid'] for name, task in json.load(f).items()})
        killed.append(time.monotonic())
        os.kill(pids[victim], signal.SIGKILL)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    with pytest.raises(distribute.ClusterError) as failure:
        run_fn(fn_args)
    failed_after = time.monotonic() - killed[0]
    killer.join(5)
    return failure.value, failed_after, pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
