"""``run.beam_workers: N``: every Beam job of a run on SDK worker processes of their own.

A cluster runner (Flink, Spark, Dataflow) runs the SDK harness in worker processes, sends
every element over the Fn API and pickles every function to workers that share no memory
with the launcher; the in-process runner does none of that. ``worker_pool(n)`` sets it up
on this machine from Beam's own parts, for the length of a run:

* **Beam's worker pool** (``BeamFnExternalWorkerPoolServicer``, the service of
  ``apache_beam.runners.worker.worker_pool_main``) in a process of its own, in a process
  group of its own, on a free loopback port. For each worker a job asks for it starts an
  SDK harness process (``python -c 'SdkHarness(...).run()'``), which ends with the job.
* **a Beam job service** (Beam's ``LocalJobServicer``) in the launcher, on a free loopback
  port, whose jobs Beam's ``FnApiRunner`` runs with ``n`` workers: it asks the pool for
  ``n`` harnesses per job and splits each stage's input over them, in parallel.
* the Beam arguments of every Beam component (``BEAM_ARGS``): ``--runner=PortableRunner
  --job_endpoint=... --environment_type=EXTERNAL --environment_config=...``, the two
  addresses as TFX placeholders of environment variables that the pool sets while it runs.
  TFX's cache keys on the Beam arguments as written (unresolved), so a rerun on the
  workers is served from the cache although each run's ports differ.

Why not Beam's embedded job service (``--job_endpoint=embed``) or its
``local_job_service_main``: both run a job with ``FnApiRunner.run_via_runner_api``, which
never reads ``--direct_num_workers`` (only the DirectRunner's ``run_pipeline`` does) and
keeps its default of one worker, so every job would run on one harness whatever ``n``;
``--sdk_worker_parallelism`` is read by the Java job servers (Flink, Spark) only.
``Job`` below is that job with ``n`` workers (``LocalJobServicer(beam_job_type=...)`` is
Beam's hook for it). Why not ``worker_pool_main``'s own ``main``: it binds every interface
(``[::]``), where anyone who reaches the port can have it start a harness that runs the
code they send, and it does not say which port it took when given 0. The servicer is the
same; ``serve_pool`` binds 127.0.0.1 and prints the port.

No process is left behind: the pool and its harnesses share a process group, which
``worker_pool`` ends (SIGTERM, then SIGKILL) when the run ends, fails or is interrupted
(SIGINT; SIGTERM is turned into the same interruption while the pool runs). If the
launcher itself dies (SIGKILL), the pool sees its stdin close and ends its group.
A harness that dies mid-job fails the job at once: the pool reports how each harness
ended, and ``Pool._watch`` fails the running jobs with a message naming the dead worker
(Beam's FnApiRunner does not abort a bundle whose worker is gone: the job would wait); the
component, then the run, fail with that message.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence

# Environment variables that carry the addresses from the pool to the Beam arguments
# (resolved by TFX where each Beam component runs: in the launcher, for the local and Beam
# orchestrators).
JOB_ENDPOINT_ENV = 'PIPELINE_BEAM_JOB_ENDPOINT'
POOL_ENV = 'PIPELINE_BEAM_WORKER_POOL'
# Seconds a job may run (--job_server_timeout): a week.
JOB_TIMEOUT = 7 * 24 * 3600
# How long the pool may take to start (a Python process importing Beam and gRPC).
START_TIMEOUT = 120.0


# The Beam arguments that say where a job's workers run; the pool sets them itself.
PLACEMENT_FLAGS = ('--runner', '--job_endpoint', '--environment_type', '--environment_config')
LOCAL_HOSTS = ('localhost', '127.0.0.1', '::1', '[::1]', '')
IN_PROCESS_RUNNERS = ('', 'directrunner', 'direct', 'switchingdirectrunner',
                      'bundlebaseddirectrunner', 'fnapirunner', 'interactiverunner')


def flag_values(args: Sequence[str]) -> Dict[str, str]:
    """{'--flag': value} of Beam arguments (``--flag=value`` or ``--flag value``; the last
    one wins, as in Beam)."""
    values: Dict[str, str] = {}
    args = [a for a in args if isinstance(a, str)]
    for i, arg in enumerate(args):
        if not arg.startswith('--'):
            continue
        if '=' in arg:
            flag, value = arg.split('=', 1)
        else:
            nxt = args[i + 1] if i + 1 < len(args) else ''
            flag, value = arg, ('' if nxt.startswith('--') else nxt)
        values[flag.replace('-', '_').replace('__', '--', 1)] = value
    return values


def placement_flags(args: Sequence[str]) -> List[str]:
    """The flags of ``args`` that say where Beam's workers run."""
    return [f for f in PLACEMENT_FLAGS if f in flag_values(args)]


def _host(address: str) -> str:
    address = address.split('://', 1)[-1]
    return address.rsplit(':', 1)[0] if address.count(':') == 1 or ']:' in address else address


def remote_workers(args: Sequence[str]) -> str:
    """Where Beam's workers run when not on this machine, as a phrase for a refusal
    ('on Dataflow (--runner=DataflowRunner)'); '' when they run here (in this process, in
    local processes, or in the pool of ``run.beam_workers``)."""
    v = flag_values(args)
    runner = v.get('--runner', '')
    name = runner.rsplit('.', 1)[-1].lower()
    if name in IN_PROCESS_RUNNERS:
        return ''
    if name in ('dataflowrunner', 'dataflow', 'testdataflowrunner'):
        return f'on Dataflow (--runner={runner})'
    if name == 'daskrunner':
        address = v.get('--dask_client_address', '')
        return (f'on the Dask cluster at {address} (--dask_client_address)'
                if address and _host(address) not in LOCAL_HOSTS else '')
    environment = v.get('--environment_type', '').upper()
    if environment == 'LOOPBACK':  # the harness runs in the launching process
        return ''
    if environment in ('', 'DOCKER'):
        return (f'in Docker containers (--runner={runner}'
                + (', --environment_type=DOCKER)' if environment else ', whose default '
                   'environment is DOCKER)'))
    # PROCESS or EXTERNAL workers run beside the runner's own workers: on the cluster when
    # the job goes to one (an EXTERNAL pool at "localhost" is then the cluster node's).
    for flag in ('--flink_master', '--spark_master_url', '--job_endpoint'):
        address = v.get(flag, '')
        if address and not address.startswith(('[', 'local', 'embed')) \
                and _host(address) not in LOCAL_HOSTS:
            return f'on the cluster at {address} ({flag}, --environment_type={environment})'
    if environment == 'EXTERNAL':
        config = v.get('--environment_config', '')
        return (f'at {config} (--environment_type=EXTERNAL)'
                if _host(config) not in LOCAL_HOSTS else '')
    return ''


def unsupported_runner(args: Sequence[str]) -> str:
    """Why the runner of the Beam arguments ``args`` cannot run the pipeline's Beam jobs, or
    ''. Beam 2.56's Dask runner runs none (docs/orchestrators.md, "Beam's Dask runner")."""
    runner = flag_values(args).get('--runner', '')
    if runner.rsplit('.', 1)[-1].lower() == 'daskrunner':
        return (f'--runner={runner}: Beam 2.56\'s Dask runner runs none of the pipeline\'s '
                'Beam jobs (it passes every option to dask.distributed.Client; TFDV\'s, '
                'TFT\'s and TFMA\'s transforms stop in its translation, RunInference when it '
                'runs: docs/orchestrators.md, "Beam\'s Dask runner"); use the direct, portable, '
                'Flink, Spark or Dataflow runner, or run.beam_workers')
    return ''


def beam_args(pool: Optional['Pool'] = None) -> List:
    """The Beam arguments that send a job to a pool: ``pool``'s addresses (a job this
    process submits itself: ``predict``), or, without one, TFX placeholders of the
    environment variables the running run's pool sets (the pipeline's components)."""
    if pool is None:
        from tfx.dsl.placeholder import placeholder as ph
        job_endpoint = ph.environment_variable(JOB_ENDPOINT_ENV)
        pool_address = ph.environment_variable(POOL_ENV)
    else:
        job_endpoint, pool_address = pool.job_endpoint, pool.pool_address
    return ['--runner=PortableRunner',
            '--job_endpoint=' + job_endpoint,
            # The PortableRunner waits for a job's end on a gRPC stream with this deadline
            # (default 60 s: any longer job failed with DEADLINE_EXCEEDED).
            f'--job_server_timeout={JOB_TIMEOUT}',
            '--environment_type=EXTERNAL',
            '--environment_config=' + pool_address]


def serve_pool() -> None:
    """The pool process: Beam's worker pool servicer on 127.0.0.1; prints its port, then
    ``exit <pid> <wait status>`` for each harness that ends, until stdin closes (the
    launcher ended the pool, or died); then it ends its process group."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer
    from apache_beam.utils import thread_pool_executor

    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[('grpc.http2.max_pings_without_data', 0),
                                  ('grpc.http2.max_ping_strikes', 0)])
    port = server.add_insecure_port('127.0.0.1:0')
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        BeamFnExternalWorkerPoolServicer(use_process=True), server)
    server.start()
    print(port, flush=True)

    def reap() -> None:
        # The servicer never waits for its harnesses (Beam's runner does not stop External
        # workers; a harness ends when its job's control stream closes). Waiting here
        # reaps them and tells the launcher how each ended.
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.2)
                continue
            print(f'exit {pid} {status}', flush=True)

    threading.Thread(target=reap, name='reap', daemon=True).start()
    sys.stdin.read()
    os.killpg(0, signal.SIGTERM)  # the harnesses, and this process


def how_it_ended(status: int) -> str:
    """A wait status in words: 'was killed by SIGKILL', 'exited with status 1'."""
    if os.WIFSIGNALED(status):
        return f'was killed by {signal.Signals(os.WTERMSIG(status)).name}'
    return f'exited with status {os.WEXITSTATUS(status)}'


class JobService:
    """Beam's job service (``LocalJobServicer``) in this process, on a loopback port, whose
    jobs Beam's FnApiRunner runs on ``workers`` harnesses of the pool; ``fail_running``
    fails the jobs that are running (a harness died under them)."""

    def __init__(self, workers: int):
        from apache_beam.portability.api import beam_job_api_pb2
        from apache_beam.runners.portability import local_job_service
        from apache_beam.runners.portability.fn_api_runner import fn_runner

        self.running, self.lock = set(), threading.Lock()
        service = self

        class ParallelJob(local_job_service.BeamJob):
            def _invoke_runner(self):
                self.set_state(beam_job_api_pb2.JobState.RUNNING)
                runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
                # The runner's worker count. Only its run_pipeline() sets it (from
                # --direct_num_workers); a job service calls run_via_runner_api().
                runner._num_workers = workers  # pylint: disable=protected-access
                with service.lock:
                    service.running.add(self)
                try:
                    return runner.run_via_runner_api(self._pipeline_proto,
                                                     self.pipeline_options())
                finally:
                    with service.lock:
                        service.running.discard(self)

            def fail(self, message: str) -> None:
                # What a failed job reports: an error message, then the FAILED state; the
                # client (PortableRunner) raises with the message.
                self._log_queues.put(beam_job_api_pb2.JobMessage(
                    message_id=f'worker-{time.time()}', time=time.strftime('%Y-%m-%d %H:%M:%S.'),
                    importance=beam_job_api_pb2.JobMessage.JOB_MESSAGE_ERROR,
                    message_text=message))
                self.set_state(beam_job_api_pb2.JobState.FAILED)

        self._servicer = local_job_service.LocalJobServicer(beam_job_type=ParallelJob)
        self.port = self._servicer.start_grpc_server(0)

    def fail_running(self, message: str) -> int:
        """Fails every running job with ``message``; how many there were."""
        with self.lock:
            jobs = list(self.running)
            self.running.clear()
        for job in jobs:
            # Its runner thread stays blocked on the dead harness (Beam's runner does not
            # abort a bundle whose worker is gone); it is a daemon thread, ended with the
            # process.
            job.fail(message)
        return len(jobs)

    def stop(self) -> None:
        self._servicer.stop()


def _python_on_path() -> str:
    """A PATH on which ``python`` is this interpreter (the pool starts harnesses with it)."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')
    found = shutil.which('python', path=path)
    if not found or os.path.realpath(found) != os.path.realpath(sys.executable):
        raise RuntimeError(f'run.beam_workers: Beam\'s worker pool starts its workers as '
                           f'"python"; expected {os.path.dirname(sys.executable)}/python to be '
                           f'this interpreter ({sys.executable}), found {found}')
    return path


def _read_port(proc: subprocess.Popen, timeout: float) -> int:
    """The port line the pool prints, or a RuntimeError when it dies or is late."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f'the Beam worker pool did not start within {timeout:.0f} s')
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        raise RuntimeError(f'the Beam worker pool failed to start (exit status {proc.wait()}; '
                           'its error is in the run log)')
    return int(line)


def _end_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Ends the pool's process group: stdin closed (the pool ends it), then SIGTERM and
    SIGKILL for whatever is left."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.time() + grace
        while time.time() < deadline and group_alive(proc.pid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
        if not group_alive(proc.pid):
            break
    proc.wait()


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` is left (zombies aside)."""
    import psutil

    for p in psutil.process_iter(['pid']):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread, as SIGINT does, so the pool is
    ended on the way out (elsewhere than in the main thread, signals are the caller's)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f'signal {signum}')

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Pool:
    """A running pool: its process (``pid`` is also its process group), its addresses, and
    the job service whose jobs run on it."""

    def __init__(self, workers: int, proc: subprocess.Popen, start_timeout: float):
        self.workers, self.proc = workers, proc
        self.pool_address = f'127.0.0.1:{_read_port(proc, start_timeout)}'
        self.service = JobService(workers)
        self.job_endpoint = f'localhost:{self.service.port}'
        self.stopping = False
        self._reader = threading.Thread(target=self._watch, name='beam-pool', daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def harness_cpu(self, timeout: float = 60.0) -> float:
        """CPU seconds (user + system) of the harnesses that have ended, once the running
        ones have (they end with their job's control stream; at most ``timeout`` s): what
        the benchmarks add to the launcher's own CPU time."""
        import psutil
        pool = psutil.Process(self.pid)
        deadline = time.time() + timeout
        while pool.children() and time.time() < deadline:
            time.sleep(0.2)
        times = pool.cpu_times()
        return times.children_user + times.children_system

    def _watch(self) -> None:
        """Reads the pool's reports: a harness that did not exit normally fails the jobs
        that are running; so does the pool's own end before the run ends it."""
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 3 and parts[0] == 'exit' and int(parts[2]) != 0:
                self._died(f'Beam worker process {parts[1]} {how_it_ended(int(parts[2]))}')
        if not self.stopping:
            self._died(f'the Beam worker pool (pid {self.pid}) ended')

    def _died(self, what: str) -> None:
        message = (f'{what} while the job ran on the worker pool (run.beam_workers: '
                   f'{self.workers}); the job failed')
        self.service.fail_running(message)

    def stop(self) -> None:
        self.stopping = True
        self.service.stop()
        _end_group(self.proc)


@contextlib.contextmanager
def worker_pool(workers: int, start_timeout: float = START_TIMEOUT) -> Iterator[Optional[Pool]]:
    """Beam's worker pool and a job service with ``workers`` workers, for the ``with``
    block (see the module docstring); 0 workers: nothing (in-process Beam), yields None."""
    if workers <= 0:
        yield None
        return
    env = dict(os.environ, PATH=_python_on_path())
    saved = {k: os.environ.get(k) for k in (JOB_ENDPOINT_ENV, POOL_ENV)}
    with _sigterm_interrupts():
        proc = subprocess.Popen([sys.executable, '-m', 'pipeline.beam_workers'], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                start_new_session=True, text=True)
        pool = None
        try:
            pool = Pool(workers, proc, start_timeout)
            os.environ[JOB_ENDPOINT_ENV], os.environ[POOL_ENV] = pool.job_endpoint, pool.pool_address
            yield pool
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if pool is not None:
                pool.stop()
            else:
                _end_group(proc)


if __name__ == '__main__':
    serve_pool()
