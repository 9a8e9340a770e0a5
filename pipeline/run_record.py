"""What each run records beside ML Metadata: ``<pipeline_root>/_runs/<run>.json``.

ML Metadata holds a run's executions, artifacts and exec properties, but not the config as
it was given, the contents' fingerprints of the data files, the digest of this repository's
code, the library versions, or why the run failed in the words the command line printed.
At the end of every run (failed runs included) ``pipeline/html_report`` writes them here, in
one small JSON file named after the run (its ML Metadata ``pipeline_run`` context), beside
the run's HTML report (``<run>.html``):

  run_id, pipeline, status, error, log    as the summary printed them
  config                                  every key of the config as run (command-line
                                          overrides applied, paths resolved)
  config_given                            the keys that differ from the defaults: the YAML
                                          file as given, plus the overrides
  data_files                              [{path, size, modified_ns, sha256}] of every CSV
                                          file the preflight checked
  code                                    {digest, parts}: sha256 of pipeline/, components/
                                          and the custom modules, as the fast rerun hashes them
  libraries                               Python's and the pipeline libraries' versions
  summary                                 the run's summary (``pipeline/report.collect``)
  report, report_seconds, report_bytes    the HTML report and what it cost

The run browser (``pipeline/runs.py``) reads these next to ML Metadata; a run without a
record (killed, or recorded before this file existed) is shown from ML Metadata alone.
"""
import dataclasses
import hashlib
import json
import os
import platform
from importlib import metadata as importlib_metadata
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from pipeline.metadata import file_stem

RUNS_DIR = '_runs'
FORMAT = 1


def path_for(pipeline_root: str, run_id: str, suffix: str = '.json') -> str:
    return os.path.join(pipeline_root, RUNS_DIR, file_stem(run_id) + suffix)


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def data_files(inputs: Union[Mapping[str, Any], Iterable[str], None]) -> List[Dict[str, Any]]:
    """Size, modification time and sha256 of each file. ``inputs`` is the preflight's
    ``{path: [size, mtime_ns]}`` (or just paths); a file that changed since it was checked
    is marked ``changed``, one that is gone ``missing``."""
    checked = dict(inputs) if isinstance(inputs, Mapping) else {p: None for p in inputs or ()}
    found = []
    for path in sorted(checked):
        entry: Dict[str, Any] = {'path': path}
        try:
            st = os.stat(path)
        except FileNotFoundError:
            found.append(dict(entry, missing=True))
            continue
        entry.update(size=st.st_size, modified_ns=st.st_mtime_ns, sha256=sha256_of(path))
        if checked[path] is not None and list(checked[path]) != [st.st_size, st.st_mtime_ns]:
            entry['changed'] = True
        found.append(entry)
    return found


def code_digest(config) -> Dict[str, Any]:
    """sha256 of the code a run runs: this repository's ``pipeline/`` and ``components/``,
    and the custom modules; ``digest`` covers them all."""
    from pipeline.code_digest import REPO, tree_digest

    parts = {f'{d}/': tree_digest(os.path.join(REPO, d)) for d in ('pipeline', 'components')}
    for key, path in (('modules.transform', config.modules.transform),
                      ('modules.trainer', config.modules.trainer)):
        if path and os.path.isfile(path):
            parts[key] = sha256_of(path)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {'digest': digest, 'parts': parts}


def library_versions() -> Dict[str, Optional[str]]:
    from pipeline.fast_rerun import LIBRARIES

    versions: Dict[str, Optional[str]] = {'python': platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            versions[lib] = None
    return versions


def _plain(value: Any) -> Any:
    """JSON's and YAML's types: tuples as lists, dataclasses (thresholds) as dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: v for k, v in _plain(dataclasses.asdict(value)).items() if v is not None}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def given_keys(obj, base_dir: str = '', defaults=None) -> Dict[str, Any]:
    """The fields of a config dataclass that differ from their defaults (required ones
    always), nested sections included when any of their keys do. ``defaults``: the instance
    whose values are the defaults (a section's default as its parent declares it, e.g. the
    search space's ranges); else the fields' own. A default path counts as the default once
    resolved against ``base_dir``, as the config resolves it."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if dataclasses.is_dataclass(value):
            sub = given_keys(value, base_dir,
                             default if dataclasses.is_dataclass(default) else None)
            if sub:
                out[f.name] = sub
            continue
        if default is dataclasses.MISSING:
            out[f.name] = _plain(value)
            continue
        resolved = (os.path.abspath(os.path.join(base_dir, default))
                    if isinstance(default, str) and default and base_dir else default)
        if value != default and value != resolved:
            out[f.name] = _plain(value)
    return out


def build(config, summary: Dict[str, Any], inputs=None,
          log: Optional[str] = None) -> Dict[str, Any]:
    """The record of the run ``summary`` describes (see the module docstring)."""
    config_dict = _plain(dataclasses.asdict(config))
    config_dict.pop('base_dir', None)
    given = given_keys(config, config.base_dir)
    given.pop('base_dir', None)
    return {
        'format': FORMAT,
        'run_id': summary.get('run_id'),
        'pipeline': config.name,
        'status': summary.get('status'),
        'error': summary.get('error'),
        'log': log if summary.get('error') and log and os.path.exists(log) else None,
        'total_seconds': summary.get('total_seconds'),
        'config': config_dict,
        'config_given': given,
        'data_files': data_files(inputs),
        'code': code_digest(config),
        'libraries': library_versions(),
        'summary': {k: v for k, v in summary.items() if k not in ('report', 'report_error')},
    }


def save(record: Dict[str, Any], pipeline_root: str) -> str:
    path = path_for(pipeline_root, record['run_id'])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
        json.dump(record, f, indent=1, default=str)
    os.replace(path + '.tmp', path)
    return path


def read(pipeline_root: str, run_id: str) -> Optional[Dict[str, Any]]:
    """The record of ``run_id``, or None when that run wrote none (or it is unreadable)."""
    try:
        with open(path_for(pipeline_root, run_id), encoding='utf-8') as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get('run_id') == run_id else None
