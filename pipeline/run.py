"""Running the pipeline on an orchestrator, with one progress line per component.

Unless ``verbose``, everything the libraries print (TensorFlow, Beam, pip, Keras) goes to a
log file under ``<pipeline_root>/_logs/`` instead of the terminal; the progress lines and
the summary go to the terminal, and the log's path is printed when something fails.
"""
import contextlib
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, TextIO

from pipeline.config import PipelineConfig

# Messages the TFX orchestrators log for each node (local runner, then Beam runner).
_STARTED = ('Component %s is running.', 'node %s is running.')
_FINISHED = ('Component %s is finished.', 'node %s is finished.')
_CACHED = 'A cached execution %d is used.'


class Progress(logging.Handler):
    """Turns the orchestrators' log records into one line per component."""

    def __init__(self, out: TextIO, total: int):
        super().__init__(level=logging.INFO)
        self.out, self.total = out, total
        self.started: Dict[str, float] = {}
        self.components: List[Dict[str, Any]] = []
        self.current: Optional[str] = None
        self.cached = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg in _STARTED:
            self.current, self.cached = str(record.args[0]), False
            self.started[self.current] = time.time()
            self.write(f'[{len(self.started):2d}/{self.total}] {self.current} ...')
        elif record.msg == _CACHED:
            self.cached = True
        elif record.msg in _FINISHED:
            node = str(record.args[0])
            seconds = time.time() - self.started.get(node, time.time())
            state = 'cached' if self.cached else 'ran'
            self.components.append({'id': node, 'state': state, 'seconds': round(seconds, 1)})
            self.write(f'        {node} {"reused from cache" if self.cached else "done"} '
                       f'in {seconds:.1f}s')
            self.current = None

    def write(self, line: str) -> None:
        self.out.write(line + '\n')
        self.out.flush()


@contextlib.contextmanager
def quiet_output(log_path: str):
    """Sends file descriptors 1 and 2 (C++ logs and subprocesses included) to ``log_path``.

    Yields a stream on the original terminal for the lines the user should see.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    terminal = os.fdopen(os.dup(saved_out), 'w', buffering=1)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
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


def run_pipeline(config: PipelineConfig, out: TextIO = sys.stdout) -> Dict[str, Any]:
    """Runs the pipeline once and returns the summary dict (see ``pipeline.report``).

    It does not raise for a failed run: the summary's ``status`` is 'failed' and its
    ``error`` says why. Data the preflight refuses raises ``DataError`` before anything runs
    or is recorded (see ``pipeline.preflight``). A run overlapping another on the same
    metadata store waits for it (``pipeline.lock``), and the summary covers this run only.
    """
    from pipeline import fast_rerun
    from pipeline.lock import run_lock
    from pipeline.preflight import preflight
    from pipeline.schema import load_schema

    # An unchanged rerun first: its data passed the preflight in the run it repeats.
    if config.run.fast_rerun:
        unchanged = fast_rerun.lookup(config, out)
        if unchanged is not None:
            return unchanged

    # First, before the heavy imports: a refusal should take a moment, not a TF start-up.
    checked = preflight(config, load_schema(config.data.schema)
                        if os.path.exists(config.data.schema) else None)
    with run_lock(config.paths.metadata, log=lambda line: print(line, file=out, flush=True)):
        summary = _run_pipeline(config, out, checked)
        fast_rerun.record(config, summary)
        return summary


def _run_pipeline(config: PipelineConfig, out: TextIO, checked) -> Dict[str, Any]:
    from pipeline.preflight import DataError
    from pipeline.schema import ensure_schema
    from components.input_files import changed_files

    start = time.time()
    stamp = time.strftime('%Y%m%d-%H%M%S')
    log_path = os.path.join(config.paths.pipeline_root, '_logs', f'run-{stamp}.log')
    os.makedirs(os.path.dirname(os.path.abspath(config.paths.metadata)), exist_ok=True)
    configure_logging(config.run.verbose)
    error = None
    with (contextlib.nullcontext(out) if config.run.verbose else quiet_output(log_path)) as term:
        from pipeline import html_report, report  # TensorFlow and TFX start up here, behind the log
        from pipeline.pipeline import create_pipeline
        ensure_schema(config, log=lambda line: term.write(line + '\n'))
        tfx_pipeline = create_pipeline(config)
        changed = changed_files(checked)
        if changed:
            raise DataError('data files changed after the preflight checked them; expected them '
                            'to stay put during a run:\n  ' + '\n  '.join(changed))
        progress = Progress(term, total=len(tfx_pipeline.components))
        logging.getLogger().addHandler(progress)
        try:
            orchestrator(config.run.runner)(tfx_pipeline)
        except Exception as e:  # noqa: BLE001 - the summary reports any failure
            node = progress.current or 'the pipeline'
            error = f'{node} failed: {type(e).__name__}: {e}'
            if progress.current:
                progress.components.append({'id': node, 'state': 'failed', 'seconds': round(
                    time.time() - progress.started.get(node, start), 1)})
                progress.write(f'        {node} FAILED')
            logging.getLogger(__name__).exception('Pipeline run failed')
        finally:
            logging.getLogger().removeHandler(progress)
        summary = report.collect(config, since_ms=int(start * 1000) - 1000,
                                 components=progress.components, error=error,
                                 total_seconds=time.time() - start)
        html_report.write_run_report(config, summary, checked, log_path)
    if error and not config.run.verbose:
        summary['log'] = log_path
    return summary
