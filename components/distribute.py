"""The trainers' distribution strategies, and the local cluster that runs them here.

``training.distribute``:

``none``              one device, in the Trainer's process (the default; nothing here runs).
``mirrored``          ``tf.distribute.MirroredStrategy``: every local GPU, in the Trainer's
                      process (one replica on a machine without GPUs).
``multi_worker``      ``tf.distribute.MultiWorkerMirroredStrategy``: synchronous data
                      parallelism across worker processes; every step all-reduces the
                      gradients of one global batch.
``parameter_server``  ``tf.distribute.ParameterServerStrategy``: the chief coordinates
                      (``ClusterCoordinator``, through Keras ``fit``), workers compute
                      asynchronously, parameter servers hold the variables.

That is the Keras trainer (``components/trainer.py``). The Estimator trainer
(``components/estimator_trainer.py``) gives the same values to ``RunConfig.train_distribute``
(its ``parameter_server`` is TF1's between-graph strategy: the chief and the workers all
train, and finish by themselves) and runs on the same local cluster; only the function each
task runs differs.

The two cluster strategies follow the ``TF_CONFIG`` contract. Where ``TF_CONFIG`` is set (a
Vertex AI training job's worker pools, a Kubeflow TFJob: docs/distributed.md), the
Trainer's process is the task it names and nothing is started. Where it is not, the Trainer
starts a cluster of local processes on free loopback ports (``training.workers``,
``training.parameter_servers``) and supervises it (:func:`run_local_cluster`): each process
runs ``python -m components.distribute <job.json>`` with its own ``TF_CONFIG``, which is
exactly what a cluster's replica runs, the chief included. The chief trains and exports to
the Trainer's output; the Trainer's process waits for it.

Why the Trainer's process is not the chief itself: TensorFlow's collective runtime and the
coordination service it starts can be set up once per process (a second multi-worker
training in the same process fails, its peers of the first run reported dead), and TFX's
local runner runs every component in one process; and a training that hangs (a collective
waiting for a dead peer) can only be ended by killing the process that runs it. A chief in a
child process keeps the Trainer's process as it was, and lets the supervisor stop everything.

Failures: a process of the local cluster that dies stops the training at once (the
supervisor polls every half second); one that exits early (a parameter server must not,
nor a Keras parameter-server cluster's worker) too; so does a cluster that goes ``training.cluster_timeout``
seconds without a training step (``Heartbeat``). Then every process is terminated, and the
error names the task, its exit status and the end of its log. The children also exit on
their own if the Trainer's process disappears (``_exit_with_parent``), so none outlives it.
Where ``TF_CONFIG`` is set there is no supervisor: a lost peer aborts the collectives of the
others (a reset connection, or a missed heartbeat of the coordination service the strategy
starts), which fails their training (tests/test_distribute.py). No per-collective timeout is
set: TensorFlow spends a sleeping thread on each collective for its whole timeout, which
exhausted the threads of a 12k-row run (docs/distributed.md).
"""
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

NONE, MIRRORED, MULTI_WORKER, PARAMETER_SERVER = 'none', 'mirrored', 'multi_worker', 'parameter_server'
CLUSTER_STRATEGIES = (MULTI_WORKER, PARAMETER_SERVER)
CHIEF, WORKER, PS = 'chief', 'worker', 'ps'
# The file the chief of a local cluster touches at each training step (Heartbeat).
HEARTBEAT_ENV = 'TRAINER_CLUSTER_HEARTBEAT'
CLUSTER_DIR = 'cluster'          # under the model run: the job, each task's log, the pids
POLL_SECONDS = 0.5
STOP_SECONDS = 10                # after a SIGTERM, before SIGKILL


class ClusterError(RuntimeError):
    """A task of the local cluster failed; the message names it and ends with its log."""


@dataclass(frozen=True)
class Task:
    """This process's place in a cluster: ``TF_CONFIG``'s ``cluster`` and ``task``."""
    cluster: Dict[str, List[str]]
    type: str
    index: int

    @property
    def name(self) -> str:
        return f'{self.type}-{self.index}'

    @property
    def is_chief(self) -> bool:
        """The chief exports: the ``chief`` task, or worker 0 of a cluster without one."""
        return self.type == CHIEF or (self.type == WORKER and self.index == 0
                                      and CHIEF not in self.cluster)

    @property
    def workers(self) -> int:
        """Tasks that train: chief and workers (the chief of a parameter-server cluster
        coordinates; it computes no gradients)."""
        chief = 0 if PS in self.cluster else len(self.cluster.get(CHIEF, ()))
        return len(self.cluster.get(WORKER, ())) + chief

    def tf_config(self) -> str:
        return json.dumps({'cluster': self.cluster, 'task': {'type': self.type, 'index': self.index}})

    def resolver(self):
        import tensorflow as tf
        return tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(self.cluster), task_type=self.type, task_id=self.index,
            rpc_layer='grpc')


def task_from_env(environ=os.environ) -> Optional[Task]:
    """The task ``TF_CONFIG`` describes, or None when it is not set."""
    text = environ.get('TF_CONFIG', '')
    if not text.strip():
        return None
    try:
        config = json.loads(text)
        cluster = {job: list(addresses) for job, addresses in config['cluster'].items()}
        task = Task(cluster, str(config['task']['type']), int(config['task'].get('index', 0)))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f'TF_CONFIG: expected {{"cluster": {{job: [host:port, ...]}}, '
                         f'"task": {{"type": job, "index": n}}}}, got {text!r} ({e})') from None
    if task.type not in cluster or not 0 <= task.index < len(cluster[task.type]):
        raise ValueError(f'TF_CONFIG: task {task.name} is not in its cluster {cluster}')
    return task


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def local_cluster(training) -> Dict[str, List[str]]:
    """The cluster the Trainer starts on this machine, on free loopback ports."""
    def addresses(n: int) -> List[str]:
        return [f'127.0.0.1:{free_port()}' for _ in range(n)]
    if training.distribute == MULTI_WORKER:
        cluster = {CHIEF: addresses(1)}
        if training.workers > 1:
            cluster[WORKER] = addresses(training.workers - 1)
        return cluster
    return {CHIEF: addresses(1), WORKER: addresses(training.workers),
            PS: addresses(training.parameter_servers)}


def train(fn_args, training, task_fn: Callable[[Any, Optional[Task]], Any], entry: str,
          workers_serve: bool = True):
    """Runs ``task_fn(fn_args, task)`` where ``training.distribute`` says: in this process
    (no cluster strategy; or ``TF_CONFIG`` names this process's task), or in each process
    of a local cluster, as ``entry`` (the dotted name of ``task_fn``). ``workers_serve``:
    a parameter-server cluster's workers serve the chief until stopped (Keras's
    ``ClusterCoordinator``), so one that exits fails the run; False: they train and finish
    by themselves (the Estimator's between-graph training)."""
    if training.distribute not in CLUSTER_STRATEGIES:
        return task_fn(fn_args, None)
    task = task_from_env()
    if task is not None:
        return task_fn(fn_args, task)
    return run_local_cluster(fn_args, training, entry, workers_serve)


def make_strategy(training, task: Optional[Task]):
    """The ``tf.distribute`` strategy of this process (None for ``none``)."""
    import tensorflow as tf
    if training.distribute == MIRRORED:
        return tf.distribute.MirroredStrategy()
    if training.distribute == MULTI_WORKER:
        # No collective timeout (CommunicationOptions.timeout_seconds): TensorFlow runs each
        # collective's timer on a thread of its own that sleeps for the whole timeout, so a
        # timeout of T seconds keeps T x (collectives per second) threads alive: at 600 s the
        # 12k taxi run reached ~16,000 threads a process and aborted ("Resource temporarily
        # unavailable"; docs/distributed.md). A lost peer is found by the coordination
        # service's heartbeats, which MultiWorkerMirroredStrategy starts, and, locally, by
        # the supervisor (a task's exit; no step for training.cluster_timeout).
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=task.resolver())
    if training.distribute == PARAMETER_SERVER:
        return tf.distribute.ParameterServerStrategy(task.resolver())
    return None


def scaled(training, replicas: int):
    """``training`` with the learning rate times the replicas in sync, if ``scale_lr``
    (the global batch grows with them; the rate stays as configured otherwise)."""
    if not training.scale_lr or replicas == 1:
        return training
    return types.SimpleNamespace(**{**vars(training),
                                    'learning_rate': training.learning_rate * replicas})


def serve(task: Task) -> None:
    """A parameter server, or a parameter-server cluster's worker: serves the chief until
    it is stopped (locally by the supervisor; in a cluster, when the job ends)."""
    import tensorflow as tf
    server = tf.distribute.Server(tf.train.ClusterSpec(task.cluster), job_name=task.type,
                                  task_index=task.index, protocol='grpc', start=True)
    print(f'{task.name}: serving the chief at {task.cluster[task.type][task.index]}', flush=True)
    server.join()


def task_dirs(fn_args, task: Optional[Task]):
    """``fn_args`` for ``task``: a task other than the chief exports nothing and keeps its
    logs (TensorBoard's, checkpoints of its own) under ``<model_run>/cluster/<task>/``."""
    if task is None or task.is_chief:
        return fn_args
    import attr
    return attr.evolve(fn_args, serving_model_dir=None,
                       model_run_dir=os.path.join(fn_args.model_run_dir, CLUSTER_DIR, task.name))


# ------------------------------------------------------------------------------------
# Progress, for the supervisor.

class _Beat:
    def __init__(self, path: str):
        self.path, self.last = path, 0.0

    def __call__(self) -> None:
        now = time.time()
        if now - self.last >= 1.0:
            self.last = now
            with open(self.path, 'a'):
                os.utime(self.path)


def heartbeat_callbacks(training) -> list:
    """A Keras callback that tells the local cluster's supervisor training goes on (none
    when there is no supervisor): at every step, or, as Keras allows no step-level callback
    with ParameterServerStrategy, at every epoch's start and end there (so
    ``cluster_timeout`` must exceed an epoch's ``steps_per_epoch`` steps)."""
    path = os.environ.get(HEARTBEAT_ENV)
    if not path:
        return []
    import tensorflow as tf
    beat = _Beat(path)
    if training.distribute == PARAMETER_SERVER:
        return [tf.keras.callbacks.LambdaCallback(on_epoch_begin=lambda *_: beat(),
                                                  on_epoch_end=lambda *_: beat())]
    return [tf.keras.callbacks.LambdaCallback(on_train_batch_end=lambda *_: beat(),
                                              on_test_batch_end=lambda *_: beat())]


def heartbeat_hooks() -> list:
    """The Estimator's equivalent of ``heartbeat_callbacks``: a ``SessionRunHook`` that
    tells the local cluster's supervisor at every step that training goes on (none when
    there is no supervisor)."""
    path = os.environ.get(HEARTBEAT_ENV)
    if not path:
        return []
    import tensorflow as tf
    beat = _Beat(path)

    class Heartbeat(tf.estimator.SessionRunHook):
        def after_run(self, run_context, run_values):
            beat()

    return [Heartbeat()]


# ------------------------------------------------------------------------------------
# The local cluster: the supervisor (in the Trainer's process) and its tasks.

def job_of(fn_args, entry: str) -> Dict[str, Any]:
    fields = ('working_dir', 'train_files', 'eval_files', 'train_steps', 'eval_steps',
              'schema_path', 'transform_graph_path', 'serving_model_dir', 'model_run_dir',
              'base_model', 'hyperparameters', 'custom_config')
    return {'entry': entry, 'supervisor': os.getpid(),
            'fn_args': {f: getattr(fn_args, f) for f in fields}}


def fn_args_of(job: Dict[str, Any]):
    """The Trainer's ``FnArgs`` in a task of the local cluster. The data accessor reads
    tf.Example files, as every Examples artifact of this pipeline holds (ExampleGen's and
    Transform's)."""
    from tfx.components.trainer import fn_args_utils
    from tfx.components.util import tfxio_utils

    def tf_dataset_factory(file_pattern, options, schema):
        return tfxio_utils.make_tfxio(
            file_pattern=file_pattern, telemetry_descriptors=['Trainer'],
            payload_format='FORMAT_TF_EXAMPLE', schema=schema).TensorFlowDataset(options)

    args = dict(job['fn_args'])
    return fn_args_utils.FnArgs(
        transform_output=args['transform_graph_path'], schema_file=args['schema_path'],
        data_accessor=fn_args_utils.DataAccessor(tf_dataset_factory=tf_dataset_factory,
                                                 record_batch_factory=None,
                                                 data_view_decode_fn=None),
        **args)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f'was killed by signal {signal.Signals(-code).name}'
        except ValueError:
            return f'was killed by signal {-code}'
    return f'exited with code {code}'


def _tail(path: str, lines: int = 12) -> str:
    try:
        with open(path, 'rb') as f:
            f.seek(max(0, os.path.getsize(path) - 8192))
            text = f.read().decode('utf-8', 'replace')
    except OSError:
        return ''
    return '\n'.join('    ' + (line if len(line) <= 400 else line[:400] + ' ...')
                     for line in text.splitlines()[-lines:])


class _Process:
    def __init__(self, task: Task, job_path: str, run_dir: str, env: Dict[str, str]):
        self.task, self.log = task, os.path.join(run_dir, f'{task.name}.log')
        with open(self.log, 'wb') as log:
            # Its own session: a signal meant for the Trainer's terminal reaches the
            # supervisor, which stops the cluster in order.
            self.popen = subprocess.Popen(
                [sys.executable, '-m', 'components.distribute', job_path],
                env=dict(env, TF_CONFIG=task.tf_config()), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def poll(self) -> Optional[int]:
        return self.popen.poll()


def run_local_cluster(fn_args, training, entry: str, workers_serve: bool = True) -> None:
    """Runs ``entry`` on a local cluster of processes and waits for its chief to finish.

    Writes ``<model_run>/cluster/``: ``job.json`` (what every task runs), ``<task>.log``
    (each task's output), ``cluster.json`` (tasks, addresses and pids). Raises
    ``ClusterError`` when a task fails or the cluster stops making progress; every process
    is stopped before this returns or raises.
    """
    cluster = local_cluster(training)
    run_dir = os.path.join(fn_args.model_run_dir, CLUSTER_DIR)
    os.makedirs(run_dir, exist_ok=True)
    job_path = os.path.join(run_dir, 'job.json')
    with open(job_path, 'w', encoding='utf-8') as f:
        json.dump(job_of(fn_args, entry), f, indent=1, default=str)
    heartbeat = os.path.join(run_dir, 'heartbeat')
    env = dict(os.environ, **{HEARTBEAT_ENV: heartbeat})
    if training.distribute == PARAMETER_SERVER:
        # TensorFlow's parameter-server guide: RPCs to a lost task fail instead of
        # retrying, so that the coordinator sees the failure.
        env['GRPC_FAIL_FAST'] = 'use_caller'
    what = f'training.distribute {training.distribute}'
    # Servers first, the chief last: it connects to them.
    order = [Task(cluster, job, i) for job in (PS, WORKER, CHIEF) for i in range(len(cluster.get(job, ())))]
    processes: List[_Process] = []
    started, done = time.time(), False
    try:
        for task in order:
            processes.append(_Process(task, job_path, run_dir, env))
        with open(os.path.join(run_dir, 'cluster.json'), 'w', encoding='utf-8') as f:
            json.dump({p.task.name: {'address': cluster[p.task.type][p.task.index],
                                     'pid': p.popen.pid, 'log': p.log} for p in processes}, f, indent=1)
        print(f'{what}: {", ".join(p.task.name for p in processes)} on '
              f'{", ".join(cluster[CHIEF] + cluster.get(WORKER, []) + cluster.get(PS, []))}; '
              f'logs in {run_dir}', flush=True)
        serving = (PS, WORKER) if training.distribute == PARAMETER_SERVER and workers_serve else (PS,)
        _supervise(processes, training, heartbeat, started, what, serving)
        done = True
    finally:
        _stop(processes, graceful=done and training.distribute == MULTI_WORKER)


def _supervise(processes, training, heartbeat: str, started: float, what: str,
               serving=(PS,)) -> None:
    """Returns when the chief has finished; raises when a task fails, the chief exits
    early, a task of a ``serving`` job exits at all, or no step is made for
    ``cluster_timeout`` seconds."""
    chief = next(p for p in processes if p.task.is_chief)
    while True:
        for p in processes:
            code = p.poll()
            if code is None:
                continue
            if p is chief and code == 0:
                return
            if code != 0 or p.task.type in serving or p is chief:
                raise ClusterError(
                    f'{what}: {p.task.name} (pid {p.popen.pid}) {_describe_exit(code)} '
                    f'{time.time() - started:.1f} s after the cluster started; the other tasks '
                    f'were stopped. The end of its log, {p.log}:\n{_tail(p.log)}')
        try:
            last = max(started, os.path.getmtime(heartbeat))
        except OSError:
            last = started
        if time.time() - last > training.cluster_timeout:
            raise ClusterError(
                f'{what}: no training step for {training.cluster_timeout} s '
                f'(training.cluster_timeout); the cluster was stopped as hung. The end of '
                f'the chief\'s log, {chief.log}:\n{_tail(chief.log)}')
        time.sleep(POLL_SECONDS)


def _stop(processes: List[_Process], graceful: bool = False) -> None:
    """Stops every task still running: SIGTERM, then SIGKILL to those still there after
    STOP_SECONDS; waits for all (no zombies). ``graceful``: the chief finished, so a
    multi-worker worker is leaving by itself; it gets STOP_SECONDS to do so first."""
    deadline = time.time() + STOP_SECONDS
    running = [p for p in processes if p.poll() is None]
    if graceful:
        for p in running:
            if p.task.type == WORKER:
                try:
                    p.popen.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    pass
        deadline = time.time() + STOP_SECONDS
        running = [p for p in running if p.poll() is None]
    for p in running:
        _signal(p, signal.SIGTERM)
    for p in running:
        try:
            p.popen.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.popen.wait()


def _signal(p: _Process, sig) -> None:
    try:
        os.killpg(p.popen.pid, sig)
    except ProcessLookupError:
        pass


def _exit_with_parent(parent: int) -> None:
    """Exits this task when the process that started it is gone (it was killed, so it
    could not stop us)."""
    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(1.0)
    threading.Thread(target=watch, name='exit-with-parent', daemon=True).start()


def main(argv: List[str]) -> None:
    """A task of the local cluster: ``python -m components.distribute <job.json>``."""
    with open(argv[1], encoding='utf-8') as f:
        job = json.load(f)
    _exit_with_parent(job['supervisor'])
    task = task_from_env()
    module, _, name = job['entry'].rpartition('.')
    task_fn = getattr(importlib.import_module(module), name)
    print(f'{task.name}: {job["entry"]} (pid {os.getpid()})', flush=True)
    task_fn(fn_args_of(job), task)


if __name__ == '__main__':
    main(sys.argv)
