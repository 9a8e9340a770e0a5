"""The HTML run report: one self-contained file per run that opens offline in any browser.

Written at the end of every run, failed runs included (``write_run_report``, called by
``pipeline/run.py``), at ``<pipeline_root>/_runs/<run>.html`` beside the run's record
(``pipeline/run_record.py``); ``pipeline_runner.py report [RUN] [--out PATH]`` writes it
again for any recorded run (``write_report``). It shows, with a table of contents:

1. Run: status, what failed and why (the words the command line printed), each component's
   time on a timeline (cached ones marked), the config, the data files with sizes and
   sha256, the code digest and the library versions.
2. Data: every feature's statistics for train and eval side by side, with a histogram or
   its top values; the anomalies with what to do about each; drift against the previous
   span with its thresholds; the curated schema, and where TFDV's inferred one differs.
3. Features: what each column became, from the feature plan.
4. Training: loss and metric curves, the early-stopping point, the hyperparameters, the
   model's layers and parameter count.
5. Evaluation: metrics overall and per slice, candidate beside baseline, each threshold's
   verdict, the plots of the task, and why the model was (not) blessed.
6. Push: the version, its signatures, the TFLite model's size and latency per example beside
   the SavedModel's (``export.tflite``), and a curl and a Python gRPC call for
   ``pipeline_runner.py serve``.
7. Lineage: the artifacts that made the model, from ML Metadata, and the runs before it.

Modules: ``gather`` (with ``data``, ``training``, ``evaluation``) reads; ``charts`` builds
the Vega-Lite specs; ``render`` fills ``templates/report.html.j2`` and inlines the Vega
files of ``assets/`` (see its README). The page makes no network request: a
Content-Security-Policy forbids it, and nothing is loaded from outside the file.
"""
import logging
import os
import time
import traceback
from typing import Any, Dict, Optional

_log = logging.getLogger(__name__)


def _write(path: str, html: str) -> int:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = html.encode('utf-8')
    with open(path + '.tmp', 'wb') as f:
        f.write(data)
    os.replace(path + '.tmp', path)
    return len(data)


def write_report(config, store, run, record: Optional[Dict[str, Any]], out: str,
                 summary: Optional[Dict[str, Any]] = None) -> int:
    """Writes the report of ``run`` (an ML Metadata pipeline_run context) to ``out``; returns
    its size in bytes. ``record``: the run's record (None for a run that wrote none);
    ``summary``: the run's summary, by default the record's, else collected again."""
    from pipeline.html_report.gather import gather
    from pipeline.html_report.render import render_page

    record = record or {}
    if summary is None:
        summary = record.get('summary')
    if summary is None:
        from pipeline.report import collect
        summary = collect(config, run=run)
    return _write(out, render_page(gather(config, store, run, record, summary)))


def write_run_report(config, summary: Dict[str, Any], inputs=None,
                     log: Optional[str] = None) -> Optional[str]:
    """At the end of a run: records it (``pipeline/run_record``) and writes its report.

    ``inputs``: the data files the run read, as the preflight's ``{path: [size, mtime_ns]}``
    (or a list of paths); ``log``: the run's log file. Sets ``summary['report']`` to the
    report's path and returns it. Never raises: a report that cannot be written must not
    fail the run; the summary then says why (``summary['report_error']``) and the traceback
    goes to the run's log.
    """
    from pipeline import run_record
    from pipeline.metadata import find_run, open_store

    start, cpu = time.time(), time.process_time()
    record = None
    try:
        record = run_record.build(config, summary, inputs, log)
        if not record['run_id']:
            raise RuntimeError('the run left no record in ML Metadata (it failed before TFX '
                               'started it)')
        path = run_record.path_for(config.paths.pipeline_root, record['run_id'], '.html')
        store = open_store(config.paths.metadata, read_only=True)
        run = find_run(store, config.name, record['run_id'])
        size = write_report(config, store, run, record, path, summary=summary)
        # CPU time too: on a busy machine the wall clock also measures the other jobs.
        record.update(report=path, report_seconds=round(time.time() - start, 2),
                      report_cpu_seconds=round(time.process_time() - cpu, 2),
                      report_bytes=size)
        summary['report'] = path
        return path
    except Exception as e:  # noqa: BLE001 - see the docstring
        _log.error('The run report could not be written: %s', traceback.format_exc())
        summary['report_error'] = f'{type(e).__name__}: {e}'
        return None
    finally:
        if record is not None and record.get('run_id'):
            try:
                run_record.save(record, config.paths.pipeline_root)
            except OSError:
                _log.error('The run record could not be written: %s', traceback.format_exc())
