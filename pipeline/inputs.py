"""A run's inputs, resolved once before anything runs: ``resolve(config) -> RunInputs``.

Everything the graph depends on that lives on disk is read here, in one place, and held in
one frozen value: the spans trained on and the one drift is checked against, every CSV file
the run reads with its fingerprint, the row estimate that decides how StatisticsGen works,
the schema to use (its contents, where the run reads its staged copy, whether it was drafted
just now), the feature plan, and the digest of each module's code for the cache keys.
``create_pipeline(config, inputs)`` then builds the graph from the config and this value
without reading or writing anything, so every orchestrator, and every task of one run,
builds the same graph from the same value (``to_dict`` / ``from_dict`` carry it between
processes, e.g. from Airflow's first task to its second).

Resolving refuses what the config check could not see without the data and the schema,
before TensorFlow is imported, with a ``ConfigError`` naming the key (exit 2): a configured
schema that does not exist or does not parse, a schema column missing from a CSV header, and
what the feature plan and the evaluation refuse (the label not in the schema, ``bucketize``
or ``numeric`` on a string column, ``positive_class`` missing, a threshold on a metric that
is not computed). Drafting a schema is the one step here that loads TensorFlow (TFDV): it
happens only when asked for (see ``choose_schema``).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from components import csv_format
from components.csv_format import CsvFormat
from components.features import STRING, FeaturePlan, plan_from_schema
from pipeline import code_digest, spans
from pipeline.config import (LATEST, ConfigError, PipelineConfig, decodes, read_format,
                             read_header)
from pipeline.evaluation import check_evaluation
from pipeline.preflight import DataError, check_file
from pipeline.profile import data_profile, training_files
from pipeline.schema import describe_schema, draft_schema, parse_schema, staged_path, write_schema

# ``data.schema: draft``: draft the schema from the data (again whenever the data changes).
DRAFT = 'draft'


@dataclass(frozen=True)
class SchemaInputs:
    path: str        # the schema file the run uses (curated, or drafted)
    text: str        # its contents as resolved: what is staged, validated against, planned from
    staged: str      # the content-addressed copy the run reads (under the pipeline root)
    drafted: bool    # drafted from the data by this resolution

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode('utf-8')).hexdigest()


@dataclass(frozen=True)
class RunInputs:
    # Spans trained on, oldest first (the newest last); () for a flat data root.
    spans: Tuple[int, ...]
    # The span before the newest, read to check drift against; None without drift thresholds.
    drift_span: Optional[int]
    # Every CSV file the run reads, as (path, size, mtime in ns), in reading order.
    files: Tuple[Tuple[str, int, int], ...]
    # Rows of the newest span (or flat root), estimated from the files' size.
    rows: int
    # How every CSV file is read: delimiter (given or detected), encoding, NA tokens.
    csv_format: CsvFormat
    schema: SchemaInputs
    plan: FeaturePlan
    # {module name or module file: digest of its code and of the project code it imports}.
    code: Mapping[str, str]
    # inference.infer_dir's CSV files, as (path, size, mtime in ns): new or changed files
    # re-run the BulkInferrer. () when batch predictions are off.
    infer_files: Tuple[Tuple[str, int, int], ...] = ()
    # tuning.reuse resolved: the directory of the best_hyperparameters artifact the Trainer
    # trains with ('' without reuse).
    tuning_reuse: str = ''

    @property
    def newest_span(self) -> Optional[int]:
        return self.spans[-1] if self.spans else None

    @property
    def fingerprints(self) -> Dict[str, List[int]]:
        """{path: [size, mtime_ns]} of the files, as ``components.input_files`` reads them."""
        return {path: [size, mtime] for path, size, mtime in self.files}

    def to_dict(self) -> Dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> 'RunInputs':
        return cls(spans=tuple(d['spans']), drift_span=d['drift_span'],
                   files=tuple(tuple(f) for f in d['files']), rows=d['rows'],
                   csv_format=CsvFormat(**dict(d['csv_format'], na_values=tuple(
                       d['csv_format']['na_values']))),
                   schema=SchemaInputs(**d['schema']), plan=FeaturePlan.from_dict(d['plan']),
                   code=dict(d['code']),
                   infer_files=tuple(tuple(f) for f in d.get('infer_files', ())),
                   tuning_reuse=d.get('tuning_reuse', ''))


def drift_enabled(config: PipelineConfig) -> bool:
    drift = config.validation.drift
    return (drift.default_linf is not None or drift.default_js is not None
            or any(v is not None for v in drift.per_feature.values()))


def read_spans(config: PipelineConfig) -> Tuple[Tuple[int, ...], Optional[int]]:
    """(spans trained on, span drift is checked against) as the data root holds them now."""
    root = config.data.root
    window = tuple(spans.window(root, config.data.spans))
    previous = spans.previous_span(root) if drift_enabled(config) else None
    return window, previous


def files_to_read(config: PipelineConfig, window, drift_span) -> List[str]:
    """The files of the spans trained on (or the flat root's), and of the drift span."""
    root = config.data.root
    if '://' in root:  # remote: ExampleGen lists it where it runs
        return []
    read = ([drift_span] if drift_span is not None and drift_span not in window else [])
    read += list(window)
    if not read:
        return spans.input_files(root)
    return [f for span in read for f in spans.input_files(root, span)]


def fingerprint(paths: List[str]) -> Tuple[Tuple[str, int, int], ...]:
    result = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as e:
            raise DataError(f'{path}: {e.strerror}; expected a readable CSV file') from None
        result.append((path, st.st_size, st.st_mtime_ns))
    return tuple(result)


def default_schema_path(config: PipelineConfig) -> str:
    return os.path.join(config.base_dir, 'schemas', config.name, 'schema.pbtxt')


def reading_format(config: PipelineConfig) -> CsvFormat:
    """How the run reads its CSV files (``pipeline.config.read_format``); a damaged gzip file
    met while detecting the delimiter is a ``DataError`` naming it."""
    try:
        return read_format(config)
    except csv_format.GZIP_ERRORS as e:
        first = next(iter(spans.input_files(config.data.root)), config.data.root)
        raise DataError(f'{first}: {csv_format.gzip_error(e)}') from None


def draft(config: PipelineConfig, files, fmt: CsvFormat) -> Tuple[str, Any]:
    """(the glob read, TFDV's draft of the schema) of the data ``files`` (resolved ones),
    read as ``fmt`` says.

    The files must be readable as tables before TFDV infers anything from them (the
    preflight's checks that need no schema: a ``DataError`` names the file and line); a run
    checks them again against the draft.
    """
    from pipeline.run import quiet_output

    for file, _, _ in files:
        check_file(file, {}, config.data.label, fmt=fmt)
    pattern = spans.input_glob(config.data.root)
    logs = (os.path.join(config.paths.pipeline_root, '_logs')
            if '://' not in config.paths.pipeline_root else tempfile.gettempdir())
    # TFDV's inference: the one step of resolving that loads TensorFlow; what it prints
    # goes to a log, as a run's libraries' output does.
    with quiet_output(os.path.join(logs, f'draft-{time.strftime("%Y%m%d-%H%M%S")}.log')):
        return pattern, draft_schema(pattern, config.data.label, config.data.exclude, fmt,
                                     config.features.datetime)


def _draft(config: PipelineConfig, files, fmt: CsvFormat, path: str,
           log: Callable[[str], None], why: str) -> None:
    pattern, schema = draft(config, files, fmt)
    write_schema(schema, path)
    log(f'{why}: drafted a schema from {pattern} (TFDV inference) and wrote it to {path}:')
    for line in describe_schema(schema):
        log(line)


class NoSchemaYet(ConfigError):
    """No schema at ``path`` yet, where ``choose_schema`` drafts one."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


def schema_in_use(config: PipelineConfig, files=None) -> str:
    """The schema file runs of ``config`` use, without drafting one.

    ``data.schema`` names a file: it must exist (a mistyped path is refused, never drafted
    over). ``data.schema: draft``: the draft of ``files`` (one per state of the data files,
    under ``<pipeline_root>/_schemas/draft-<files>/``, so an unchanged rerun reuses it), or
    without ``files`` the newest draft (for commands that read what a run left: ``predict``,
    the report). Not set: ``schemas/<name>/schema.pbtxt``. ``NoSchemaYet`` when a draft or
    the default schema does not exist yet.
    """
    configured = config.data.schema
    if configured and configured != DRAFT:
        if os.path.isfile(configured):
            return configured
        raise ConfigError(
            f'data.schema: {configured} does not exist; expected the curated schema file. '
            'Fix the path, or leave data.schema out to use (and on a new dataset draft) '
            f'{default_schema_path(config)}, or set data.schema: draft to infer one from '
            'the data, or write a draft to review with: pipeline_runner.py draft-schema '
            f'--out {configured}')
    drafts = os.path.join(config.paths.pipeline_root, '_schemas')
    if configured != DRAFT:
        candidates = [default_schema_path(config)]
    elif files is not None:
        key = hashlib.sha256(json.dumps([config.data.label, list(config.data.exclude),
                                         list(files)]).encode()).hexdigest()[:16]
        candidates = [os.path.join(drafts, f'draft-{key}', 'schema.pbtxt')]
    else:
        candidates = sorted(glob.glob(os.path.join(drafts, 'draft-*', 'schema.pbtxt')),
                            key=os.path.getmtime, reverse=True)
    for path in candidates:
        if os.path.isfile(path):
            return path
    where = candidates[0] if candidates else drafts
    raise NoSchemaYet(f'data.schema: no schema at {where}; run the pipeline first (it drafts '
                      'one for a new dataset), or set data.schema to the curated file', where)


def choose_schema(config: PipelineConfig, files, fmt: CsvFormat,
                  log: Callable[[str], None]) -> Tuple[str, bool]:
    """(the schema file to use, whether it was drafted now): ``schema_in_use``'s, drafted
    from the data when there is none yet (on a new dataset's first run, for review)."""
    kubeflow = ConfigError(
        'data.schema: the kubeflow runner reads the curated schema staged in the image; draft '
        f'one first (pipeline_runner.py draft-schema --out {default_schema_path(config)}), '
        'review it, and rebuild the image') if config.run.runner == 'kubeflow' else None
    if kubeflow and config.data.schema == DRAFT:
        raise kubeflow
    try:
        return schema_in_use(config, files), False
    except NoSchemaYet as missing:
        if kubeflow:
            raise kubeflow from None
        path = missing.path
    if config.data.schema == DRAFT:
        _draft(config, files, fmt, path, log, 'data.schema is "draft"')
    else:
        _draft(config, files, fmt, path, log, f'No schema at {path} yet (a new dataset)')
        log('  Review it, tighten it and commit it: later runs validate against it.')
    return path, True


def check_columns(schema, schema_path: str, paths: List[str], fmt: CsvFormat) -> None:
    """Every column of the schema is in every file's header (else ``data.schema`` is refused:
    the schema and the data disagree before any row is read)."""
    names = [f.name for f in schema.feature]
    for path in paths:
        header = read_header(path, fmt)
        if (not header or len(set(header)) != len(header) or not all(map(str.strip, header))
                or not decodes(path, fmt)):
            continue  # a malformed or undecodable header: the preflight refuses it, saying how
        missing = [n for n in names if n not in header]
        if missing:
            raise ConfigError(
                f'data.schema: {path}, line 1: column{"s" if len(missing) > 1 else ""} '
                f'{", ".join(map(repr, missing))} missing from the header; expected every '
                f'column of the schema {schema_path} (header: {", ".join(header)})')


def check_plan(config: PipelineConfig, schema, schema_path: str, fmt: CsvFormat) -> FeaturePlan:
    """The feature plan; what it refuses, refused here with the key it names."""
    features = {f.name for f in schema.feature}
    if config.data.label not in features:
        raise ConfigError(f'data.label: {config.data.label!r} is not a feature of the schema '
                          f'{schema_path} (features: {", ".join(sorted(features))})')
    try:
        profile = data_profile(config, schema, fmt)
    except ValueError as e:  # a file that is not a table: the preflight's words, with the line
        from tensorflow_metadata.proto.v0 import schema_pb2
        types = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
        for path in training_files(config):
            check_file(path, types, config.data.label, schema_path, fmt=fmt)
        raise DataError(str(e)) from None
    try:
        plan = plan_from_schema(schema, config, profile)
    except ValueError as e:  # its messages start with the key at fault
        raise ConfigError(str(e)) from None
    check_label(config, plan, (profile or {}).get(config.data.label))
    return plan


def check_label(config: PipelineConfig, plan: FeaturePlan, p) -> None:
    """A classification label with fewer than two classes in the training data is refused
    before anything trains: as the data's fault (one value only), or as
    ``data.positive_class``'s when the positive class is not among the values (they are
    matched exactly, case included); a binary label of numbers must hold 0 and 1 (the
    transform takes them as they are). ``p``: the label's ColumnProfile (None: not
    profiled)."""
    task = plan.task
    if p is None or task == 'regression':
        return
    label, files = config.data.label, ', '.join(training_files(config)[:3])
    values = ', '.join(f'{v!r} ({n:,} rows)' for v, n in p.top[:10]) + (
        ', ...' if p.distinct > 10 else '')
    if not p.present:
        raise DataError(f'{files}: column {label!r} (data.label) has no value in any of the '
                        f'{p.rows:,} rows read; expected a label in every training row')
    if p.distinct < 2:
        raise DataError(f'{files}: column {label!r} (data.label) has one value in all '
                        f'{p.present:,} rows with a label ({values}); a {task} task needs at '
                        f'least two classes in the training data')
    if plan.label_dtype == STRING:
        spelled: Dict[str, List[str]] = {}
        for value, _ in p.top:
            spelled.setdefault(value.strip().casefold(), []).append(value)
        twins = [names for names in spelled.values() if len(names) > 1]
        if twins:
            raise DataError(
                f'{files}: column {label!r} (data.label) spells one class several ways: '
                + '; '.join(' and '.join(map(repr, names)) for names in twins)
                + '; values that differ only in spaces or case are different classes: '
                  'expected each class spelled one way (clean the file)')
    if task != 'binary' or p.distinct > len(p.top):  # (a sample's rarest values unseen)
        return
    if plan.label_dtype == STRING:
        if config.data.positive_class not in dict(p.top):
            raise ConfigError(
                f'data.positive_class: {config.data.positive_class!r} is not a value of column '
                f'{label!r} in {files} (its values: {values}); expected one of them, spelled '
                f'exactly')
    elif not {float(v) for v in dict(p.top)} <= {0.0, 1.0}:
        raise ConfigError(
            f'data.task: binary, but column {label!r} in {files} holds numbers other than 0 '
            f'and 1 (its values: {values}); expected 0 (negative) and 1 (positive), or '
            f'task: multiclass')


# The one file of a Tuner's best_hyperparameters artifact (TFX's Trainer reads the only
# file in the directory).
BEST_HYPERPARAMETERS_FILE = 'best_hyperparameters.txt'


def tuning_reuse(config: PipelineConfig) -> str:
    """``tuning.reuse`` as the directory of a ``best_hyperparameters`` artifact: the path
    given (the directory, or the file in it), or for ``latest`` the newest such artifact
    this pipeline's metadata store records whose file still exists. '' without reuse."""
    reuse = config.tuning.reuse
    if not reuse:
        return ''
    if reuse == LATEST:
        found = latest_hyperparameters(config)
        if not found:
            raise ConfigError(
                f'tuning.reuse: latest: no tuning results of pipeline {config.name!r} in '
                f'{config.paths.metadata}; run with tuning.trials: N first, or give the path '
                f'of a best_hyperparameters directory')
        return found
    directory = os.path.dirname(reuse) if os.path.isfile(reuse) else reuse
    path = os.path.join(directory, BEST_HYPERPARAMETERS_FILE)
    try:
        with open(path, encoding='utf-8') as f:
            values = json.load(f).get('values')
    except (OSError, ValueError, AttributeError) as e:
        raise ConfigError(f'tuning.reuse: expected a Tuner\'s best_hyperparameters directory '
                          f'holding {BEST_HYPERPARAMETERS_FILE}, got {reuse} '
                          f'({getattr(e, "strerror", None) or e})') from None
    if not isinstance(values, dict) or len(os.listdir(directory)) != 1:
        raise ConfigError(f'tuning.reuse: {path} is not KerasTuner hyperparameters alone '
                          f'(expected {{"values": {{...}}}}, the only file of its directory)')
    return directory


def latest_hyperparameters(config: PipelineConfig) -> str:
    if not os.path.exists(config.paths.metadata):
        return ''
    from ml_metadata import errors
    from pipeline.metadata import open_store
    store = open_store(config.paths.metadata, read_only=True)
    context = store.get_context_by_type_and_name('pipeline', config.name)
    if context is None:
        return ''
    try:
        type_id = store.get_artifact_type('HyperParameters').id
    except errors.NotFoundError:
        return ''
    found = [a for a in store.get_artifacts_by_context(context.id)
             if a.type_id == type_id and os.path.isfile(os.path.join(a.uri, BEST_HYPERPARAMETERS_FILE))]
    return max(found, key=lambda a: a.id).uri if found else ''


def resolve(config: PipelineConfig, log: Callable[[str], None] = print) -> RunInputs:
    """The inputs of a run of ``config`` on the data as it is now (see the module docstring).

    Raises ``ConfigError`` for what it refuses, ``DataError`` for a data file it cannot read
    (or, before drafting a schema, one that is not a table). ``log`` gets the lines that say
    a schema was drafted.
    """
    window, drift_span = read_spans(config)
    paths = files_to_read(config, window, drift_span)
    files = fingerprint(paths)
    fmt = reading_format(config)
    schema_path, drafted = choose_schema(config, files, fmt, log)
    try:
        with open(schema_path, 'rb') as f:
            content = f.read()
    except OSError as e:
        raise ConfigError(f'data.schema: cannot read {schema_path}: {e.strerror}') from None
    try:
        text = content.decode('utf-8')
    except UnicodeDecodeError as e:
        raise ConfigError(f'data.schema: {schema_path} is not UTF-8 text ({e})') from None
    try:
        schema = parse_schema(text, schema_path)
    except ValueError as e:
        raise ConfigError(f'data.schema: {e}') from None
    check_columns(schema, schema_path, paths, fmt)
    plan = check_plan(config, schema, schema_path, fmt)
    check_evaluation(config, plan.task)
    newest = ([p for p in paths if os.path.dirname(p) == spans.span_dir(config.data.root, window[-1])]
              if window else paths)
    digest = hashlib.sha256(content).hexdigest()
    return RunInputs(
        spans=window, drift_span=drift_span, files=files, rows=csv_format.estimated_rows(newest), csv_format=fmt,
        schema=SchemaInputs(path=schema_path, text=text, drafted=drafted,
                            staged=staged_path(digest, config.paths.pipeline_root)),
        plan=plan,
        code=code_digest.module_digests([config.modules.transform, config.modules.trainer]),
        infer_files=fingerprint(spans.input_files(config.inference.infer_dir))
        if config.inference.infer_dir else (),
        tuning_reuse=tuning_reuse(config))
