"""The run browser: the runs ML Metadata recorded for a pipeline, one run, or two compared.

    python pipeline_runner.py runs [--config ...]           # every run, oldest first
    python pipeline_runner.py runs show RUN [--config ...]  # one run
    python pipeline_runner.py runs diff A B [--config ...]  # what changed from A to B

It reads the SQLite ML Metadata store directly (no server, no TFX or TensorFlow import) and
each run's record beside it (``<pipeline_root>/_runs/<run>.json``, ``pipeline/run_record``)
for what ML Metadata does not hold: the error as printed, the metrics, the config, the data
files' fingerprints, the code digest and the library versions. A run without a record
(killed, or older than the records) is shown from ML Metadata alone: its status then comes
from its executions' states, "interrupted" when some never finished. RUN is a run id as
listed, a unique prefix of it, ``latest`` or ``latest~N``.

An unchanged rerun answered without TFX (``pipeline/fast_rerun.py``) records no run: it
repeats the run before it.
"""
import datetime
import os
from typing import Any, Dict, List, Optional

from components.features import KEY_METRICS
from pipeline import run_record
from pipeline.metadata import (NodeExecution, find_run, open_store, pipeline_runs, read_runs,
                               string_property)


def key_metric(config) -> str:
    """The metric a run is known by: the first threshold's, else the task's key metric."""
    if config.evaluation.thresholds:
        return config.evaluation.thresholds[0].metric
    return KEY_METRICS.get(config.data.task, 'example_count')


def _local_time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000).strftime('%Y-%m-%d %H:%M:%S')


def _output_property(nodes: Dict[str, NodeExecution], node: str, key: str, name: str) -> str:
    found = nodes.get(node)
    artifacts = found.outputs.get(key) if found else None
    return string_property(artifacts[0], name) if artifacts else ''


def _status(nodes: Dict[str, NodeExecution], record: Optional[Dict[str, Any]]) -> str:
    failed = [n.node for n in nodes.values() if n.state == 'failed']
    if record and record.get('status') == 'failed':
        error = record.get('error') or ''
        node = error.split(' failed:', 1)[0] if ' failed:' in error else (failed or [''])[0]
        return f'failed ({node})' if node else 'failed'
    if failed:
        return f'failed ({failed[0]})'
    if any(n.state in ('running', 'new') for n in nodes.values()):
        return 'interrupted'
    if record:
        return record.get('status') or 'succeeded'
    return 'succeeded' if nodes else 'empty'


def describe(run, nodes: Dict[str, NodeExecution], record: Optional[Dict[str, Any]],
             metric: str) -> Dict[str, Any]:
    """One run as a row: time, status, duration, blessing, key metric, pushed version."""
    ended = max((n.ended_ms for n in nodes.values()), default=run.create_time_since_epoch)
    summary = (record or {}).get('summary') or {}
    blessed = _output_property(nodes, 'Evaluator', 'blessing', 'blessed')
    pushed = _output_property(nodes, 'Pusher', 'pushed_model', 'pushed')
    version = _output_property(nodes, 'Pusher', 'pushed_model', 'pushed_version')
    evaluation = summary.get('evaluation') or {}
    return {
        'run_id': run.name,
        'started': _local_time(run.create_time_since_epoch),
        'status': _status(nodes, record),
        'seconds': (record or {}).get('total_seconds') or round(
            (ended - run.create_time_since_epoch) / 1000, 1),
        'blessed': None if blessed == '' else blessed == '1',
        'metric': metric,
        'metric_value': (evaluation.get('metrics') or {}).get(metric),
        'version': version if pushed == '1' and version else None,
        'push_reused': pushed == '1' and nodes.get('Pusher') is not None
        and nodes['Pusher'].state == 'cached',
        'components': {n.node: n.state for n in nodes.values()},
        'recorded': record is not None,
        'report': (record or {}).get('report'),
    }


def run_rows(config, store=None) -> List[Dict[str, Any]]:
    """Every run of the pipeline, oldest first (see ``describe``)."""
    if store is None:
        if not os.path.exists(config.paths.metadata):
            return []
        store = open_store(config.paths.metadata, read_only=True)
    runs = pipeline_runs(store, config.name)
    nodes = read_runs(store, runs)
    metric = key_metric(config)
    return [describe(run, nodes[run.id], run_record.read(config.paths.pipeline_root, run.name),
                     metric) for run in runs]


def _fmt_value(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.4f}'


def _blessed(value: Optional[bool]) -> str:
    return '-' if value is None else ('yes' if value else 'no')


def _version(row: Dict[str, Any]) -> str:
    if not row['version']:
        return '-'
    return row['version'] + (' (earlier push)' if row['push_reused'] else '')


def format_rows(rows: List[Dict[str, Any]]) -> str:
    header = ['RUN', 'STARTED', 'STATUS', 'TIME', 'BLESSED',
              (rows[0]['metric'] if rows else 'METRIC').upper(), 'PUSHED']
    table = [header] + [[r['run_id'], r['started'], r['status'], f'{r["seconds"]:.1f}s',
                         _blessed(r['blessed']), _fmt_value(r['metric_value']), _version(r)]
                        for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return '\n'.join('  '.join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in table)


def list_runs(config) -> str:
    rows = run_rows(config)
    where = config.paths.metadata
    if not rows:
        return f'Pipeline {config.name!r} has no runs recorded in {where}.'
    return (f'Runs of pipeline {config.name!r} in {where}, oldest first '
            f'(show one: runs show RUN; compare: runs diff A B):\n' + format_rows(rows))


def _one(config, ref: str):
    store = open_store(config.paths.metadata, read_only=True)
    run = find_run(store, config.name, ref)
    nodes = read_runs(store, [run])[run.id]
    record = run_record.read(config.paths.pipeline_root, run.name)
    return store, run, nodes, record


def show(config, ref: str) -> str:
    from pipeline.report import render

    _, run, nodes, record = _one(config, ref)
    row = describe(run, nodes, record, key_metric(config))
    lines = [f'Run {run.name} of pipeline {config.name!r}',
             f'Status: {row["status"]}; started {row["started"]}; took {row["seconds"]:.1f}s',
             f'Blessed: {_blessed(row["blessed"])}; pushed: {_version(row)}; '
             f'{row["metric"]}: {_fmt_value(row["metric_value"])}']
    lines.append(f'Report: {record["report"]}' if record and record.get('report') else
                 f'Report: none written; make one with: pipeline_runner.py report {run.name}')
    lines.append('Components (from ML Metadata):')
    start = run.create_time_since_epoch
    for n in sorted(nodes.values(), key=lambda n: n.started_ms):
        lines.append(f'  {n.node:28s} {n.state:8s} {(n.ended_ms - n.started_ms) / 1000:6.1f}s  '
                     f'(at {(n.started_ms - start) / 1000:.1f}s)')
    if record is None:
        lines.append('This run wrote no record (it was killed, or ran before records were '
                     'kept): ML Metadata is all there is.')
        return '\n'.join(lines)
    lines.append('Summary, as printed at the end of the run:')
    lines += ['  ' + line for line in render(record['summary']).strip('\n').splitlines()]
    lines.append('Data files:')
    for f in record.get('data_files', []):
        lines.append(f'  {f["path"]}  ' + ('(missing at the end of the run)' if f.get('missing')
                                           else f'{f["size"]:,} bytes, sha256 {f["sha256"][:16]}'))
    code = record.get('code') or {}
    lines.append(f'Code digest: {code.get("digest", "?")[:16]} ('
                 + ', '.join(f'{k} {v[:12]}' for k, v in (code.get('parts') or {}).items()) + ')')
    lines.append('Libraries: ' + ', '.join(f'{k} {v}' for k, v in
                                            (record.get('libraries') or {}).items()))
    return '\n'.join(lines)


def _flatten(value: Any, prefix: str = '') -> Dict[str, Any]:
    if isinstance(value, dict):
        out: Dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f'{prefix}.{k}' if prefix else str(k)))
        return out
    return {prefix: value}


def _schema_rows(nodes: Dict[str, NodeExecution]) -> Optional[Dict[str, Dict[str, Any]]]:
    from pipeline.html_report.data import load_schema, output, schema_rows

    schema = load_schema(output(nodes, 'ImportSchemaGen', 'schema'))
    return None if schema is None else {r['name']: r for r in schema_rows(schema)}


def diff(config, ref_a: str, ref_b: str) -> str:
    """What changed from run A to run B: config, data files, schema, code, metrics."""
    _, run_a, nodes_a, rec_a = _one(config, ref_a)
    _, run_b, nodes_b, rec_b = _one(config, ref_b)
    lines = [f'From run {run_a.name} to run {run_b.name} (pipeline {config.name!r}):']
    missing = [r.name for r, rec in ((run_a, rec_a), (run_b, rec_b)) if rec is None]
    if missing:
        lines.append(f'  (no record for {", ".join(missing)}: config, data files, code and '
                     f'metrics of that run are unknown; schema from ML Metadata)')
    rec_a, rec_b = rec_a or {}, rec_b or {}

    lines.append('Config:')
    ca, cb = _flatten(rec_a.get('config') or {}), _flatten(rec_b.get('config') or {})
    changed = [k for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]
    lines += [f'  {k}: {ca.get(k, "(unset)")!r} -> {cb.get(k, "(unset)")!r}' for k in changed] or [
        '  same' if ca and cb else '  unknown']

    lines.append('Data files:')
    fa = {f['path']: f for f in rec_a.get('data_files', [])}
    fb = {f['path']: f for f in rec_b.get('data_files', [])}
    data_lines = []
    for path in sorted(set(fa) | set(fb)):
        a, b = fa.get(path), fb.get(path)
        if a is None:
            data_lines.append(f'  added    {path} ({b.get("size", 0):,} bytes)')
        elif b is None:
            data_lines.append(f'  removed  {path}')
        elif a.get('sha256') != b.get('sha256'):
            data_lines.append(f'  changed  {path}: {a.get("size", 0):,} -> {b.get("size", 0):,} '
                              f'bytes, sha256 {str(a.get("sha256"))[:12]} -> {str(b.get("sha256"))[:12]}')
    lines += data_lines or (['  same'] if fa and fb else ['  unknown'])

    lines.append('Schema (curated, as ImportSchemaGen read it):')
    sa, sb = _schema_rows(nodes_a), _schema_rows(nodes_b)
    if sa is None or sb is None:
        lines.append('  unknown (a run has no schema artifact)')
    else:
        schema_lines = []
        for name in list(sa) + [n for n in sb if n not in sa]:
            if name not in sb:
                schema_lines.append(f'  removed  {name}')
            elif name not in sa:
                schema_lines.append(f'  added    {name} ({sb[name]["type"]})')
            else:
                schema_lines += [f'  {name}.{field}: {sa[name][field] or "-"} -> {sb[name][field] or "-"}'
                                 for field in ('type', 'presence', 'valency', 'domain', 'environments')
                                 if sa[name][field] != sb[name][field]]
        lines += schema_lines or ['  same']

    lines.append('Code digest:')
    pa = (rec_a.get('code') or {}).get('parts') or {}
    pb = (rec_b.get('code') or {}).get('parts') or {}
    code_lines = [f'  {k}: {str(pa.get(k))[:12]} -> {str(pb.get(k))[:12]}'
                  for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)]
    la, lb = rec_a.get('libraries') or {}, rec_b.get('libraries') or {}
    code_lines += [f'  {k}: {la.get(k)} -> {lb.get(k)}' for k in sorted(set(la) | set(lb))
                   if la.get(k) != lb.get(k)]
    lines += code_lines or (['  same'] if pa and pb else ['  unknown'])

    lines.append('Metrics (eval split, overall):')
    ma = ((rec_a.get('summary') or {}).get('evaluation') or {}).get('metrics') or {}
    mb = ((rec_b.get('summary') or {}).get('evaluation') or {}).get('metrics') or {}
    metric_lines = []
    for name in sorted(set(ma) | set(mb)):
        a, b = ma.get(name), mb.get(name)
        delta = f' ({b - a:+.4f})' if a is not None and b is not None else ''
        metric_lines.append(f'  {name:28s} {_fmt_value(a)} -> {_fmt_value(b)}{delta}')
    lines += metric_lines or ['  none (neither run was evaluated)']
    row_a = describe(run_a, nodes_a, rec_a or None, key_metric(config))
    row_b = describe(run_b, nodes_b, rec_b or None, key_metric(config))
    lines.append(f'Status: {row_a["status"]} -> {row_b["status"]}; blessed: '
                 f'{_blessed(row_a["blessed"])} -> {_blessed(row_b["blessed"])}; pushed: '
                 f'{_version(row_a)} -> {_version(row_b)}')
    return '\n'.join(lines)
