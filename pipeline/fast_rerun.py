"""The unchanged rerun, answered without starting TFX.

An unchanged rerun of the pipeline is served entirely from TFX's cache: every component is
"reused from cache" and nothing is trained, evaluated or pushed. Reaching that answer
through TFX costs ~40 CPU-seconds of imports (TensorFlow, Beam, TFMA, TFDV) and pipeline
compilation. This module answers the same question in well under a second, and only when
the answer is certain:

Each run computes its key under the run lock, from the inputs it starts on
(``run_key(config, inputs)``: the inputs ``pipeline/inputs.py`` resolved), and after a run
that succeeded with no component failed, ``record`` writes
``<pipeline_root>/_fast_rerun/last.json``: that key, the run's summary, and the size and
modification time of the ML Metadata file. The key is the one taken at the start, never
recomputed at the end: a new span, a schema edit or a code edit that lands while a run goes
is not in what that run read, so the next run's key differs and it goes through TFX.
``lookup`` (under the lock too, so it sees the record of the run before it) returns that
summary, marked as reused, only if
  * the key is the same: the whole config (runner, Beam args, paths included), every file
    the run reads (path, size, mtime in ns: what CsvExampleGen's fingerprint uses), the
    spans, the schema's contents and the feature plan, the digest of every component
    module's code and of custom modules, the pipeline's own code (``pipeline/``, which
    builds the graph), and the versions of Python and of the TFX libraries;
  * the ML Metadata file is exactly as that run left it: no other run, of this config or
    any other, has recorded anything since (another run could change the baseline);
  * the artifacts the summary points at still exist (the pushed model, the pipeline root).
Otherwise the pipeline runs through TFX as always, which records the cached executions in
ML Metadata. ``run.fast_rerun: false`` (``--set run.fast_rerun=false``) always runs TFX
(and still records, for the next run).
"""
import hashlib
import json
import os
import platform
import time
from importlib import metadata as importlib_metadata
from typing import Any, Dict, Optional, TextIO

from pipeline import code_digest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARIES = ('tfx', 'tensorflow', 'tfx-bsl', 'tensorflow-transform', 'tensorflow-model-analysis',
             'tensorflow-data-validation', 'apache-beam', 'ml-metadata')
RECORD = os.path.join('_fast_rerun', 'last.json')


def _stat(path: str) -> Any:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def run_key(config, inputs) -> str:
    """A hash of everything an unchanged rerun depends on (see the module docstring)."""
    import dataclasses

    h = hashlib.sha256()

    def add(label: str, value: Any) -> None:
        h.update(json.dumps([label, value], sort_keys=True, default=str).encode())

    settings = dataclasses.asdict(config)
    settings['run'].pop('verbose', None)  # only changes what is printed
    settings['run'].pop('fast_rerun', None)  # how the answer is found, not what it is
    add('config', settings)
    resolved = inputs.to_dict()
    resolved['schema'].pop('drafted')  # drafted in the run before, read now: the same schema
    add('inputs', resolved)
    add('graph code', code_digest.tree_digest(os.path.join(REPO, 'pipeline')))
    add('python', platform.python_version())
    for lib in LIBRARIES:
        try:
            add('lib', [lib, importlib_metadata.version(lib)])
        except importlib_metadata.PackageNotFoundError:
            add('lib', [lib, None])
    return h.hexdigest()


def _record_path(config) -> str:
    return os.path.join(config.paths.pipeline_root, RECORD)


def record(config, key: str, summary: Dict[str, Any]) -> None:
    """Remembers a successful run, under the ``key`` it started with, for ``lookup``;
    forgets it after any other outcome."""
    path = _record_path(config)
    ok = summary.get('status') == 'succeeded' and summary.get('components') and all(
        c.get('state') in ('ran', 'cached') for c in summary['components'])
    if not ok:
        if os.path.exists(path):
            os.remove(path)
        return
    entry = {'key': key, 'metadata': _stat(config.paths.metadata),
             'recorded_at': time.strftime('%Y-%m-%d %H:%M:%S'), 'summary': summary}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
        json.dump(entry, f, default=str)
    os.replace(path + '.tmp', path)


def lookup(config, key: str, out: Optional[TextIO] = None) -> Optional[Dict[str, Any]]:
    """The summary of a run that a rerun with this ``key`` would repeat from cache, or None."""
    start = time.time()
    try:
        with open(_record_path(config), encoding='utf-8') as f:
            entry = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    summary = entry['summary']
    if entry.get('metadata') is None or entry['metadata'] != _stat(config.paths.metadata):
        return None
    push = summary.get('push') or {}
    if push.get('pushed') and not (push.get('path') and os.path.exists(push['path'])):
        return None
    if entry['key'] != key:
        return None
    components = [{'id': c['id'], 'state': 'cached', 'seconds': 0.0}
                  for c in summary.get('components', [])]
    if out is not None:
        for i, c in enumerate(components, 1):
            out.write(f'[{i:2d}/{len(components)}] {c["id"]} reused from cache\n')
        out.write(f'        nothing changed since the run of {entry["recorded_at"]}: '
                  f'every component is cached (checked without starting TFX)\n')
    summary = dict(summary, components=components, total_seconds=round(time.time() - start, 1),
                   fast_rerun=True)
    if push:
        summary['push'] = dict(push, from_cache=True)
    return summary
