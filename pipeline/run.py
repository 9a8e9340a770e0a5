"""Running the pipeline on an orchestrator, with one progress line per component.

Unless ``verbose``, everything the libraries print (TensorFlow, Beam, pip, Keras) goes to a
log file under ``<pipeline_root>/_logs/`` instead of the terminal; the progress lines and
the summary go to the terminal, and the log's path is printed when something fails.
"""
import contextlib
import logging
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, TextIO

from pipeline.config import PipelineConfig


class Progress:
    """One line per component as it starts, and one as it ends, read from ML Metadata.

    A thread polls the store (read-only: the orchestrator's writes never wait for it, and
    MLMD's SQLite connections retry a busy database) for the executions of the pipeline run
    that began after ``since_ms``, in the order they were registered: an execution that
    appears prints "[ i/n] <node> ...", and one that reaches a final state prints its
    outcome with the time ML Metadata recorded for it ("done in", "reused from cache in",
    "FAILED"). This is the record every orchestrator writes, so the lines do not depend on
    what TFX logs. ``components`` is the same, for the summary.
    """
    # MLMD's execution states, as the summary names them.
    ENDED = {'COMPLETE': 'ran', 'CACHED': 'cached', 'FAILED': 'failed', 'CANCELED': 'failed'}

    # Seconds between polls. Once the run's context is found, a poll is one query (~1 ms
    # of CPU); a start is printed within this long of ML Metadata recording it.
    INTERVAL = 0.5

    def __init__(self, out: TextIO, metadata_path: str, pipeline_name: str, total: int,
                 since_ms: int, interval: float = 0.0):
        self.out, self.path, self.name, self.total = out, metadata_path, pipeline_name, total
        self.since_ms, self.interval = since_ms, interval or self.INTERVAL
        self.components: List[Dict[str, Any]] = []
        self.running: Dict[int, str] = {}        # execution id -> node id, started, not ended
        self._seen: Dict[int, str] = {}          # execution id -> node id
        self._store = self._run = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='progress', daemon=True)

    def __enter__(self) -> 'Progress':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def _open(self):
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2

        if self._store is None and os.path.exists(self.path):
            connection = metadata_store_pb2.ConnectionConfig()
            connection.sqlite.filename_uri = self.path
            connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
            self._store = metadata_store.MetadataStore(connection)
        return self._store

    def poll(self) -> None:
        """Prints what changed since the last poll. A store that is not there yet, or busy,
        is read again at the next poll."""
        from ml_metadata.proto import metadata_store_pb2

        from pipeline.report import latest_run
        try:
            store = self._open()
            self._run = self._run or (store and latest_run(store, self.name, self.since_ms))
            if not self._run:
                return
            executions = sorted(store.get_executions_by_context(self._run.id), key=lambda e: e.id)
            for e in executions:
                if e.id not in self._seen:
                    nodes = [c.name.split('.', 1)[-1] for c in store.get_contexts_by_execution(e.id)
                             if c.type == 'node']
                    self._seen[e.id] = node = nodes[0] if nodes else e.type
                    self.running[e.id] = node
                    self.write(f'[{len(self._seen):2d}/{self.total}] {node} ...')
                state = self.ENDED.get(metadata_store_pb2.Execution.State.Name(e.last_known_state))
                if state and e.id in self.running:
                    self.end(e.id, state, (e.last_update_time_since_epoch
                                           - e.create_time_since_epoch) / 1000)
        except Exception:  # noqa: BLE001 - a busy or half-created store: next poll
            logging.getLogger(__name__).debug('progress poll', exc_info=True)

    def end(self, execution_id: int, state: str, seconds: float) -> None:
        node = self.running.pop(execution_id)
        self.components.append({'id': node, 'state': state, 'seconds': round(seconds, 1)})
        outcome = {'ran': f'done in {seconds:.1f}s', 'cached': f'reused from cache in {seconds:.1f}s',
                   'failed': 'FAILED'}[state]
        self.write(f'        {node} {outcome}')

    def write(self, line: str) -> None:
        self.out.write(line + '\n')
        self.out.flush()


def _fd(stream: TextIO) -> Optional[int]:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


@contextlib.contextmanager
def quiet_output(log_path: str, out: TextIO = sys.stdout):
    """Sends file descriptors 1 and 2 (C++ logs and subprocesses included) to ``log_path``.

    Yields a stream for the lines the user should see: ``out`` as it was before (the
    terminal), or ``out`` itself when it is not one of those descriptors (Airflow's task
    log, a test's buffer).
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    fd = _fd(out)
    terminal = (os.fdopen(os.dup(saved_out if fd == 1 else saved_err), 'w', buffering=1)
                if fd in (1, 2) else None)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield terminal or out
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        if terminal:
            terminal.close()


def configure_logging(verbose: bool) -> None:
    """Library loggers at INFO go to the log (or the terminal with --verbose)."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '0' if verbose else '2')
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.INFO)
    # Timestamped lines in the run log, unless the caller set up logging already (its
    # handlers are kept).
    logging.basicConfig(format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    logging.getLogger().setLevel(logging.INFO)
    if not verbose:
        import warnings
        warnings.filterwarnings('ignore')


def orchestrator(runner: str) -> Callable[[Any], Any]:
    if runner == 'beam':
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
        return BeamDagRunner().run
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    return LocalDagRunner().run


def run_pipeline(config: PipelineConfig, out: TextIO = sys.stdout,
                 inputs=None) -> Dict[str, Any]:
    """Runs the pipeline once and returns the summary dict (see ``pipeline.report``).

    ``inputs``: the run's inputs, if the caller resolved them already
    (``pipeline.inputs.resolve``, which refuses a config that does not fit the data or the
    schema with ``ConfigError``). Data the preflight refuses raises ``DataError`` before
    anything runs or is recorded (see ``pipeline.preflight``). A failed run does not raise:
    the summary's ``status`` is 'failed' and its ``error`` says why.

    A run overlapping another on the same metadata store waits for it (``pipeline.lock``);
    it then resolves its inputs again, as the data may have moved on meanwhile. Under the
    lock, the inputs the run starts on are its fast-rerun key (``pipeline.fast_rerun``):
    looked up there, and recorded with the summary at the end, so a span, a schema or a
    code edit that lands during the run makes the next run go through TFX.
    """
    from pipeline import fast_rerun
    from pipeline.inputs import resolve
    from pipeline.lock import run_lock
    from pipeline.preflight import preflight
    from pipeline.schema import write_staged

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    # Refusals first, before any wait: they need the schema, not the lock.
    inputs = inputs or resolve(config, log=say)
    with run_lock(config.paths.metadata, log=say) as waited:
        if waited:
            inputs = resolve(config, log=say)
        key = fast_rerun.run_key(config, inputs)
        # An unchanged rerun first: its data passed the preflight in the run it repeats.
        if config.run.fast_rerun:
            unchanged = fast_rerun.lookup(config, key, out)
            if unchanged is not None:
                return unchanged
        # Before the heavy imports: a refusal should take a moment, not a TF start-up.
        preflight(config, inputs, log=say)
        write_staged(inputs.schema.text.encode('utf-8'), inputs.schema.staged)
        summary = _run_pipeline(config, inputs, out)
        fast_rerun.record(config, key, summary)
        return summary


def _run_pipeline(config: PipelineConfig, inputs, out: TextIO) -> Dict[str, Any]:
    from components.input_files import changed_files
    from pipeline.preflight import DataError

    start = time.time()
    stamp = time.strftime('%Y%m%d-%H%M%S')
    log_path = os.path.join(config.paths.pipeline_root, '_logs', f'run-{stamp}.log')
    os.makedirs(os.path.dirname(os.path.abspath(config.paths.metadata)), exist_ok=True)
    configure_logging(config.run.verbose)
    error = None
    with (contextlib.nullcontext(out) if config.run.verbose else quiet_output(log_path, out)) as term:
        from pipeline import html_report, report  # TensorFlow and TFX start up here, behind the log
        from pipeline.pipeline import create_pipeline
        tfx_pipeline = create_pipeline(config, inputs)
        changed = changed_files(inputs.fingerprints)
        if changed:
            raise DataError('data files changed after the preflight checked them; expected them '
                            'to stay put during a run:\n  ' + '\n  '.join(changed))
        progress = Progress(term, config.paths.metadata, config.name,
                            total=len(tfx_pipeline.components), since_ms=int(start * 1000))
        with progress:
            try:
                orchestrator(config.run.runner)(tfx_pipeline)
            except Exception as e:  # noqa: BLE001 - the summary reports any failure
                error = e
                logging.getLogger(__name__).exception('Pipeline run failed')
        if error is not None:
            # The node that was running when the orchestrator gave up (its execution may
            # still read RUNNING: the launcher raised before recording the failure).
            failed = [c['id'] for c in progress.components if c['state'] == 'failed']
            for execution_id in list(progress.running):
                failed.append(progress.running[execution_id])
                progress.end(execution_id, 'failed', 0.0)
            node = failed[0] if failed else 'the pipeline'
            error = f'{node} failed: {type(error).__name__}: {error}'
        summary = report.collect(config, since_ms=int(start * 1000) - 1000,
                                 components=progress.components, error=error,
                                 total_seconds=time.time() - start)
        summary['spans'] = list(inputs.spans)  # the run's, whatever the data root holds now
        html_report.write_run_report(config, summary, inputs.fingerprints, log_path)
    if error and not config.run.verbose:
        summary['log'] = log_path
    return summary
