"""The data-change guard: which CSV files a run read, as they were, and whether they still are.

A file's fingerprint is ``[size in bytes, mtime in ns]``, taken where the file lives: a
local path (or ``file://``) with ``os.stat`` (TensorFlow's local stat rounds mtimes to the
second), any other URI (``gs://``, ``s3://``, ...) with ``tf.io.gfile.stat``, which is how
ExampleGen reads it.

Two records meet in the AnomalyGate (``changes``):
  * ``read``: what ExampleGen read. Its executor fingerprints the files it is about to read
    and records them on its Examples artifact (``record``), so the record travels with the
    artifact to wherever the gate runs (the local runner, a Kubeflow container) and names
    the paths as the run read them (``gs://...``, the image's ``/pipeline/data/...``).
  * ``checked``: what the preflight checked, on the machine that starts a run (local runs
    only; an orchestrator that runs elsewhere has none, and nothing of the compiling
    machine's files goes into its spec).
The gate fails the run when a file was read in another state than the preflight checked, was
read without being checked, or changed after ExampleGen read it.

No TensorFlow or TFX imports at module level: the preflight uses this before anything heavy
is loaded.
"""
import json
import os
from typing import Dict, Iterable, List, Optional

# The custom property of an Examples artifact that holds ExampleGen's record (JSON text:
# a string property survives the trip through Kubeflow's artifact metadata unchanged; a
# number there would be a double, too coarse for nanoseconds).
RECORD_PROPERTY = 'input_files'

Fingerprints = Dict[str, List[int]]


def _local(path: str) -> Optional[str]:
    """The local path of ``path``, or None for a remote URI."""
    if path.startswith('file://'):
        return path[len('file://'):]
    return None if '://' in path else path


def stat(path: str) -> Optional[List[int]]:
    """``[size, mtime in ns]`` of one file, or None when it does not exist."""
    local = _local(path)
    if local is not None:
        try:
            st = os.stat(local)
        except FileNotFoundError:
            return None
        return [st.st_size, st.st_mtime_ns]
    import tensorflow as tf
    try:
        st = tf.io.gfile.stat(path)
    except tf.errors.NotFoundError:
        return None
    return [st.length, st.mtime_nsec]


def fingerprint(paths: Iterable[str]) -> Fingerprints:
    """{path: [size, mtime in ns]} of files that exist (local paths normalized)."""
    result = {}
    for path in paths:
        local = _local(path)
        key = os.path.normpath(path) if local == path else path
        found = stat(path)
        if found is None:
            raise FileNotFoundError(f'{path}: no such file')
        result[key] = found
    return result


def record(artifact, fingerprints: Fingerprints) -> None:
    """Stores ExampleGen's record on its Examples artifact."""
    artifact.set_string_custom_property(RECORD_PROPERTY, json.dumps(fingerprints, sort_keys=True))


def recorded(artifact) -> Optional[Fingerprints]:
    """The record stored by ``record``, or None for an artifact without one."""
    text = artifact.get_string_custom_property(RECORD_PROPERTY)
    return json.loads(text) if text else None


def _describe(fp: List[int]) -> str:
    return f'{fp[0]} bytes (modified {fp[1]} ns)'


def changed_files(fingerprints: Fingerprints) -> List[str]:
    """Lines naming each file of ``fingerprints`` that is now gone or different."""
    lines = []
    for path, was in sorted(fingerprints.items()):
        now = stat(path)
        if now is None:
            lines.append(f'{path}: removed')
        elif now != list(was):
            lines.append(f'{path}: was {_describe(was)}, now {_describe(now)}')
    return lines


def changes(read: List[Fingerprints], checked: Optional[Fingerprints] = None) -> List[str]:
    """Lines naming every file the run must not trust, for the gate's message.

    ``read``: the records of every ExampleGen of the run; ``checked``: the preflight's
    record, if the run had one. A checked file that no record names (ExampleGen did not read
    it, or its artifact predates the records) is compared with the file as it is now.
    """
    lines, seen = [], set()
    for files in read:
        for path, was in sorted(files.items()):
            seen.add(path)
            if checked is not None and path not in checked:
                lines.append(f'{path}: read by ExampleGen but not checked by the preflight '
                             f'(it appeared after the check)')
                continue
            if checked is not None and list(checked[path]) != list(was):
                lines.append(f'{path}: was {_describe(checked[path])} when the preflight '
                             f'checked it, {_describe(was)} when ExampleGen read it')
                continue
            now = stat(path)
            if now != list(was):
                lines.append(f'{path}: was {_describe(was)} when ExampleGen read it, '
                             f'{"removed since" if now is None else "now " + _describe(now)}')
    unread = {p: fp for p, fp in (checked or {}).items() if p not in seen}
    return lines + changed_files(unread)
