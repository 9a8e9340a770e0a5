"""The pipeline's one typed configuration.

A dataset is described by one YAML file (``configs/<name>.yaml``). It is loaded into the
frozen dataclasses below, checked, and then passed explicitly to ``create_pipeline``; no code
reads module globals or environment variables behind the caller's back.

Overrides from the command line use dotted keys (``training.train_steps=200``); the specific
flags of ``pipeline_runner.py`` are sugar for these.

Every refusal raises :class:`ConfigError` with the dotted key at fault, before anything runs.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import os
import shutil
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple

import yaml

from components import csv_format, datetimes
from pipeline import spans

TASKS = ('binary', 'multiclass', 'regression')
# tuning.reuse: the newest tuning results in the pipeline's metadata store.
LATEST = 'latest'
RUNNERS = ('local', 'beam', 'kubeflow')
TRAINERS = ('keras', 'estimator', 'gbt')
ON_ANOMALIES = ('fail', 'warn')


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the dotted key."""


@dataclass(frozen=True)
class DataConfig:
    root: str
    label: str
    task: Literal['binary', 'multiclass', 'regression']
    # Columns that are read and validated but never used as model features
    # (e.g. a column that leaks the label).
    exclude: Tuple[str, ...] = ()
    # Deterministic hash split of ExampleGen: buckets for train and eval.
    split: Tuple[int, int] = (4, 1)
    # The curated schema file; it must exist. Not set: schemas/<name>/schema.pbtxt, which
    # a new dataset's first run drafts from the data (TFDV) for review. 'draft': drafted
    # from the data, again whenever the data changes (pipeline/inputs.py, README "Schemas").
    schema: str = ''
    # For binary tasks with a string label: the value that counts as the positive class.
    positive_class: str = ''
    # With span-<N>/ directories under root: train on the newest this many spans (fewer if
    # fewer exist). Each is read, summarized and validated on its own; the model is
    # evaluated on the newest span's eval split. A flat root has one body of data: keep 1.
    spans: int = 1
    # How the CSV files are read (components/csv_format.py). Cells that mean "missing",
    # besides the empty cell, in every column: pandas' list by default (NA, N/A, NaN, null,
    # None, ...); [] leaves only empty cells missing. A column of numbers with NA cells stays
    # numeric.
    na_values: Tuple[str, ...] = csv_format.NA_VALUES
    # The field delimiter: one character (",", ";", "|", "tab"...); empty: detected from the
    # first records among , ; tab | (printed when the run starts).
    delimiter: str = ''
    # The files' text encoding (a Python codec name: utf-8, cp1252, latin-1, utf-16...).
    # UTF-8 may start with a byte-order mark.
    encoding: str = 'utf-8'


@dataclass(frozen=True)
class RolesConfig:
    """The feature plan's automatic rules, each on by default (components/features.py says
    how each decides; the run's summary prints what each column became and why). A column
    named in features.categorical / numeric / bucketize is taken as configured, whatever
    these say."""
    # Drop near-unique string columns (IDs, names, free text: at least 90% distinct and
    # 20 values) and unique integers that span at most twice their count (row numbers).
    id: bool = True
    # Drop columns with a single value in every row (or no value at all).
    constant: bool = True
    # log1p a numeric column before its z-score when it is non-negative and skewed (> 2),
    # and has more than two values (a 0/1 flag has no tail).
    log_scale: bool = True
    # Expand a column the schema gives a time_domain into its date parts (year, month, day,
    # day of week, day of year, hour, with sin/cos of those that wrap). Off: the schema's
    # type decides, as for any column (features.datetime still applies).
    datetime: bool = True
    # Read a string column whose every value is a formatted number ("1,234", "$5.00",
    # "12.5%") as numbers (features.categorical keeps one a category).
    formatted_numbers: bool = True
    # Regression: train on the label's z-score, de-standardized in the model's last layer.
    standardize_label: bool = True
    # Regression, opt-in: a non-negative label skewed more than 1 (prices) is learnt on its
    # log1p scale (a squared error of the logs, i.e. of relative errors), and the model's
    # last layers return expm1 of it. Off by default: the Evaluator's error is on the
    # label's own scale, which a squared error on that scale fits better (diamonds' RMSE
    # 620 raw vs 747 log, wage's 36.9 vs 37.4: benchmarks/RESULTS_generality.md).
    log_label: bool = False
    # Binary classification: balanced class weights when the rarest class is under 10% of
    # the rows (Keras trainer only; the estimator and gbt trainers train unweighted).
    # 'all': multi-class labels too (off by default: the weights cost accuracy, the key
    # metric of a multi-class model).
    class_weights: Literal[True, False, 'all'] = True


@dataclass(frozen=True)
class FeaturesConfig:
    # Force a column to be treated as categorical / numeric, overriding the schema.
    categorical: Tuple[str, ...] = ()
    numeric: Tuple[str, ...] = ()
    # Numeric columns to bucketize into quantile buckets: {column: number of buckets}.
    bucketize: Mapping[str, int] = field(default_factory=dict)
    # Top-k tokens kept per categorical column; a schema domain of at most this many values
    # is used as the column's vocabulary as it is (components/features.py).
    vocab_size: int = 1000
    oov_buckets: int = 10           # out-of-vocabulary buckets per categorical column
    one_hot_max: int = 64           # categorical columns up to this size are one-hot in the deep part
    embedding_dim: int = 8          # otherwise they are embedded with this width
    # Date/time columns, overriding what schema drafting recognises: {column: format}, a
    # strptime format of %Y %m %d %H %M %S %f %z (components/datetimes.py), or
    # 'unix_seconds' for an integer column of seconds since 1970. Drafting records it as
    # the column's time_domain; the preflight refuses values that do not read in it.
    datetime: Mapping[str, str] = field(default_factory=dict)
    roles: RolesConfig = RolesConfig()


@dataclass(frozen=True)
class TrainingConfig:
    # keras: the wide-and-deep network (components/trainer.py); estimator: the same network
    # as a tf.estimator (docs/estimator.md); gbt: TensorFlow Decision Forests' gradient
    # boosted trees (components/gbt_trainer.py), which ignores the network's settings.
    trainer: Literal['keras', 'estimator', 'gbt'] = 'keras'
    train_steps: int = 2000
    eval_steps: int = 100           # validation: one pass over at most this many eval batches
    batch_size: int = 128
    learning_rate: float = 0.001
    # 256 units without dropout fit 43k diamonds better (held-out RMSE 578 vs 618) but
    # overfit 318 salaries (21,169 vs 17,865): benchmarks/RESULTS_generality.md. Not the
    # default until the network's size is chosen from the row count.
    hidden_units: int = 64          # width of the first deep layer; each next is half
    hidden_layers: int = 2          # depth of the deep part
    dropout: float = 0.1
    # Steps between validations; early stopping watches the eval loss at each one.
    steps_per_epoch: int = 200
    early_stopping_patience: int = 3
    seed: int = 42
    # Estimator trainer only.
    checkpoint_steps: int = 200
    keep_checkpoint_max: int = 3
    save_summary_steps: int = 50
    warm_start: bool = False
    # gbt trainer only: at most this many trees (early stopping on the eval batches may
    # stop sooner), each at most this deep (TF-DF's defaults).
    gbt_num_trees: int = 300
    gbt_max_depth: int = 6
    # A leaf holds at least this many training rows (TF-DF's ``min_examples``; its default
    # is 5, scikit-learn's and LightGBM's 20). 20 was better on 7 of the 11 generality sets
    # and met the target on ames, at one more of 69 rows wrong on penguins_raw, at three
    # seeds (benchmarks/RESULTS_generality.md).
    gbt_min_examples: int = 20
    # TF-DF's predefined hyper-parameters (its GradientBoostedTreesModel's
    # ``hyperparameter_template``): '' for TF-DF's defaults, 'better_default' (best-first
    # growth) or 'benchmark_rank1' (also oblique splits: its authors' best on their benchmark).
    gbt_template: Literal['', 'better_default', 'benchmark_rank1'] = ''
    # (docs/distributed.md) none; mirrored (every local GPU, one process; both trainers);
    # multi_worker (MultiWorkerMirroredStrategy, synchronous) or parameter_server
    # (ParameterServerStrategy, asynchronous): on the cluster TF_CONFIG describes, or
    # without one on a local cluster of processes the Trainer starts and supervises
    # (the keras and estimator trainers; the estimator's parameter_server is TF1's, where
    # the chief trains too).
    distribute: Literal['none', 'mirrored', 'multi_worker', 'parameter_server'] = 'none'
    # The global batch is batch_size per replica times the replicas; the learning rate
    # stays as configured unless this multiplies it by the replicas.
    scale_lr: bool = False
    # The local cluster: worker processes (multi_worker: the chief is one of them) and
    # parameter servers (parameter_server).
    workers: int = 2
    parameter_servers: int = 1
    # Seconds a local cluster may go without a training step (start-up included) before
    # the training is stopped as hung; a process that dies stops it at once.
    cluster_timeout: int = 600


@dataclass(frozen=True)
class SearchParam:
    """One searched hyperparameter: ``choices: [...]``, or a range ``min:``/``max:``
    (``log: true`` samples it log-uniformly). One choice, or min = max, fixes it."""
    choices: Tuple[float, ...] = ()
    min: Optional[float] = None
    max: Optional[float] = None
    log: bool = False


@dataclass(frozen=True)
class SearchSpaceConfig:
    """The Tuner's search space (components/hyperparameters.py); the defaults need no
    editing. Each tuned value replaces the training section's."""
    hidden_units: SearchParam = SearchParam(choices=(32, 64, 128, 256))
    hidden_layers: SearchParam = SearchParam(min=1, max=3)
    dropout: SearchParam = SearchParam(min=0.0, max=0.3)
    learning_rate: SearchParam = SearchParam(min=0.0001, max=0.01, log=True)
    batch_size: SearchParam = SearchParam(choices=(64, 128, 256))


@dataclass(frozen=True)
class TuningConfig:
    """Hyperparameter tuning: TFX's Tuner with KerasTuner before the Trainer, which then
    trains with the best values found (docs/tuning.md)."""
    # Trials of the search; 0 turns tuning off.
    trials: int = 0
    algorithm: Literal['random', 'bayesian', 'hyperband'] = 'random'
    # Wall-time cap on the whole search: no trial starts after it, and the one running
    # then stops at its next step (it still reports what it reached).
    max_minutes: float = 30.0
    # What the search optimizes, on the eval split: val_loss, or val_<metric> of the
    # model's metrics (binary: auc, binary_accuracy; multiclass:
    # sparse_categorical_accuracy; regression: mae). Losses and errors are minimized.
    objective: str = 'val_loss'
    # Training steps of each trial (0: training.train_steps), with the Trainer's early
    # stopping; hyperband gives its rounds fractions of these.
    train_steps: int = 0
    space: SearchSpaceConfig = SearchSpaceConfig()
    # Train with earlier results instead of searching: a Tuner's best_hyperparameters
    # artifact directory (or the file in it), or 'latest': the newest this pipeline's
    # metadata store holds.
    reuse: str = ''


@dataclass(frozen=True)
class Threshold:
    metric: str
    lower: Optional[float] = None
    upper: Optional[float] = None


@dataclass(frozen=True)
class ChangeThreshold:
    metric: str
    # The candidate may be at most this much worse than the baseline (absolute).
    max_decrease: float = 0.0
    higher_is_better: bool = True


@dataclass(frozen=True)
class EvaluationConfig:
    # Empty means the task's defaults (see components/evaluation.py).
    metrics: Tuple[str, ...] = ()
    slices: Tuple[Tuple[str, ...], ...] = ()
    thresholds: Tuple[Threshold, ...] = ()
    change_thresholds: Tuple[ChangeThreshold, ...] = ()
    # Bless a model only if its key metric (binary AUC, multi-class accuracy, regression
    # MSE) beats a trivial model's on the eval split: AUC 0.5 (a constant score), the share
    # of the most frequent class, the variance of the label (always predicting the mean).
    # null (the default): on when no thresholds are given, so that a new dataset's config
    # with none still pushes a model that learned something, and only such a model (TFMA
    # alone blesses nothing without a threshold). false: off; the summary still warns when
    # the model does not beat a trivial one.
    beat_trivial: Optional[bool] = None

    @property
    def gates_on_trivial(self) -> bool:
        return self.beat_trivial or (self.beat_trivial is None and not self.thresholds)


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds for comparing the newest span's statistics with the previous span's.

    String columns use the L-infinity distance of their value frequencies; numeric columns
    (integer categories too) the Jensen-Shannon divergence of their histograms (TFDV's drift
    comparators; components/drift). ``None`` turns a check off;
    ``per_feature`` overrides the default for one column (``null`` turns it off there).
    Drift beyond a threshold is an anomaly, stopped by the gate like any other.
    """
    default_linf: Optional[float] = None
    default_js: Optional[float] = None
    per_feature: Mapping[str, Optional[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class InfraConfig:
    """Infra validation (components/infra_validator): before the push, the candidate is served
    by the product's model server in a subprocess (and by ``tensorflow_model_server`` when it
    is on PATH), asked about ``examples`` eval examples on every signature over REST and gRPC,
    and pushed only if every answer equals the in-process prediction. Off by default: it adds
    a server start and a model load, ~15 s of a 12k-row taxi run (README, "Infra validation").
    """
    enabled: bool = False
    examples: int = 10
    # From a server's start to the model's AVAILABLE status, at most this long.
    load_timeout_seconds: float = 60.0
    # Refuse to push unless tensorflow_model_server is on PATH and serves the model too.
    require_tf_serving: bool = False


@dataclass(frozen=True)
class ValidationConfig:
    on_anomalies: Literal['fail', 'warn'] = 'fail'
    drift: DriftConfig = DriftConfig()
    infra: InfraConfig = InfraConfig()


@dataclass(frozen=True)
class PathsConfig:
    pipeline_root: str
    metadata: str
    serving_dir: str


@dataclass(frozen=True)
class RunConfig:
    # 'kubeflow' compiles a KFP v2 / Vertex AI pipeline spec instead of running
    # (docs/orchestrators.md); Airflow runs the DAG in dags/.
    runner: Literal['local', 'beam', 'kubeflow'] = 'local'
    beam_args: Tuple[str, ...] = ()
    verbose: bool = False
    # Airflow: the DAG's schedule (cron or preset such as '@daily'); empty: manual only.
    schedule: str = ''
    # Kubeflow: the container image (built by the Dockerfile) and where the spec goes.
    image: str = ''
    kfp_output: str = 'output/kubeflow/pipeline.json'
    # An unchanged rerun is answered from the last run's record without starting TFX
    # (pipeline/fast_rerun.py); false always runs through TFX.
    fast_rerun: bool = True
    # Every Beam job of the run on this many local Beam SDK worker processes of their own
    # (Beam's worker pool, through the portable runner: pipeline/beam_workers.py), as a
    # cluster runs them; 0: in this process (Beam's direct runner).
    beam_workers: int = 0
    # The most rows a component handles in its own process, without Beam: StatisticsGen
    # computes the statistics of up to this many rows in memory, and goes to Beam's runner
    # above it. Lower it to send small data to the runner (e.g. to the workers, in tests).
    in_memory_rows: int = 200_000


@dataclass(frozen=True)
class ExportConfig:
    """``tflite: true`` adds ``assets.extra/model.tflite`` (and ``model_tflite.json``: sizes,
    latencies, the check) to the pushed model (components/tflite_export), checked against the
    SavedModel on the eval split within ``tflite_tolerance`` (default 1e-5, or 0.05 with
    ``tflite_quantization: dynamic_range``; absolute for values up to 1 in size, relative to
    the value above). ``tflite_gate: true`` (with ``tflite``) has
    the Evaluator evaluate the TFLite model too (TFMA, ``model_type='tf_lite'``) and bless
    the candidate only if it also meets the value thresholds."""
    tflite: bool = False
    tflite_quantization: Literal['none', 'dynamic_range'] = 'none'
    tflite_tolerance: Optional[float] = None
    tflite_examples: int = 1000
    tflite_gate: bool = False

    @property
    def tolerance(self) -> float:
        if self.tflite_tolerance is not None:
            return self.tflite_tolerance
        return 1e-5 if self.tflite_quantization == 'none' else 0.05


@dataclass(frozen=True)
class InferenceConfig:
    """``infer_dir``: a directory of unlabelled CSV files that the BulkInferrer node scores
    after the push with the model this run pushed (components/bulk_inferrer), into
    ``predictions.<format>`` of its InferenceResult artifact. Empty: no such node."""
    infer_dir: str = ''
    format: Literal['csv', 'parquet'] = 'csv'
    keep: Tuple[str, ...] = ()


@dataclass(frozen=True)
class ModulesConfig:
    """Escape hatch: replace the generic Transform / Trainer code with a module of your own.

    Each is a path to a ``.py`` file that defines ``preprocessing_fn(inputs, custom_config)``
    (transform) or ``run_fn(fn_args)`` (trainer). Empty means the generic modules in
    ``components/``.
    """
    transform: str = ''
    trainer: str = ''


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    data: DataConfig
    paths: PathsConfig
    features: FeaturesConfig = FeaturesConfig()
    training: TrainingConfig = TrainingConfig()
    tuning: TuningConfig = TuningConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    validation: ValidationConfig = ValidationConfig()
    run: RunConfig = RunConfig()
    modules: ModulesConfig = ModulesConfig()
    export: ExportConfig = ExportConfig()
    inference: InferenceConfig = InferenceConfig()
    # Directory the relative paths in the file were resolved against.
    base_dir: str = ''

    def replace(self, **changes: Any) -> 'PipelineConfig':
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------
# Building the dataclasses from plain data, with errors that name the key.


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _convert(value, inner, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f'{key}: expected one of {", ".join(map(str, args))}, got {value!r}')
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f'{key}: expected a list, got {type(value).__name__} {value!r}')
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f'{key}[{i}]') for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f'{key}: expected a list of {len(args)} values, got {value!r}')
        return tuple(_convert(v, a, f'{key}[{i}]') for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise ConfigError(f'{key}: expected a mapping, got {type(value).__name__} {value!r}')
        return {str(k): _convert(v, args[1], f'{key}.{k}') for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f'{key}: expected true or false, got {value!r}')
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f'{key}: expected an integer, got {value!r}')
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{key}: expected a number, got {value!r}')
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f'{key}: expected a string, got {value!r}')
        return value
    raise TypeError(f'unsupported config type {tp} at {key}')


def _build(cls: Any, raw: Any, key: str) -> Any:
    where = key or 'the config file'
    if not isinstance(raw, dict):
        raise ConfigError(f'{where}: expected a mapping, got {type(raw).__name__} {raw!r}')
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        name = f'{key}.{unknown[0]}' if key else unknown[0]
        raise ConfigError(f'{name}: unknown key (known keys{" of " + key if key else ""}: '
                          f'{", ".join(sorted(fields))})')
    kwargs = {}
    for name, f in fields.items():
        sub = f'{key}.{name}' if key else name
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f'{sub}: required key is missing')
    return cls(**kwargs)


def _parse_scalar(text: str) -> Any:
    """Values given on the command line are read as YAML scalars ('200' -> 200)."""
    return yaml.safe_load(text) if text.strip() else ''


def apply_overrides(raw: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    """Applies ``a.b=value`` overrides to the raw YAML mapping (in place) and returns it."""
    for item in overrides:
        if '=' not in item:
            raise ConfigError(f'override {item!r}: expected KEY=VALUE, e.g. training.train_steps=200')
        dotted, text = item.split('=', 1)
        parts = dotted.strip().split('.')
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f'{dotted}: {part} is not a section')
        node[parts[-1]] = _parse_scalar(text)
    return raw


def load_config(path: str, overrides: Optional[List[str]] = None,
                check_data: bool = True) -> PipelineConfig:
    """Loads, overrides, resolves paths and checks one pipeline config."""
    if not os.path.isfile(path):
        raise ConfigError(f'{path}: config file not found')
    with open(path, encoding='utf-8') as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f'{path}: not valid YAML: {e}') from e
    raw = apply_overrides(raw, list(overrides or []))
    try:
        config = _build(PipelineConfig, raw, '')
    except ConfigError as e:
        raise ConfigError(f'{path}: {e}') from None
    base = os.path.dirname(os.path.abspath(path))
    # Paths in the file are relative to the repository root (the config file's parent
    # directory for configs/<name>.yaml) so that the same file works from any working dir.
    root = os.path.dirname(base) if os.path.basename(base) == 'configs' else base
    config = resolve_paths(config, root)
    validate(config, check_data=check_data, source=path)
    return config


def resolve_paths(config: PipelineConfig, root: str) -> PipelineConfig:
    def absolute(p: str) -> str:
        if not p or '://' in p:
            return p
        return os.path.abspath(os.path.join(root, os.path.expanduser(p)))

    schema = config.data.schema
    data = dataclasses.replace(config.data, root=absolute(config.data.root),
                               schema=schema if schema == 'draft' else absolute(schema))
    paths = PathsConfig(*(absolute(getattr(config.paths, f.name))
                          for f in dataclasses.fields(PathsConfig)))
    modules = ModulesConfig(transform=absolute(config.modules.transform),
                            trainer=absolute(config.modules.trainer))
    run = dataclasses.replace(config.run, kfp_output=absolute(config.run.kfp_output))
    reuse = config.tuning.reuse
    tuning = dataclasses.replace(config.tuning,
                                 reuse=reuse if reuse in ('', LATEST) else absolute(reuse))
    inference = dataclasses.replace(config.inference,
                                    infer_dir=absolute(config.inference.infer_dir))
    return dataclasses.replace(config, data=data, paths=paths, modules=modules, run=run,
                               inference=inference, tuning=tuning, base_dir=root)


def csv_files(data_root: str) -> List[str]:
    """The CSV files ExampleGen will read (the data root, or the latest span in it)."""
    return spans.input_files(data_root)


def read_format(config: PipelineConfig, path: str = '') -> csv_format.CsvFormat:
    """How the run reads every CSV file: the encoding, the NA tokens, and ``data.delimiter``
    or the delimiter detected in ``path`` (default: the first file of the newest span). A
    remote data root is not read: its delimiter is ``data.delimiter``, or a comma."""
    data = config.data
    path = path or next(iter(csv_files(data.root) if '://' not in data.root else []), '')
    if not path:
        return csv_format.CsvFormat(csv_format.delimiter_char(data.delimiter) or ',',
                                    data.encoding, tuple(data.na_values))
    return csv_format.resolve(path, data.delimiter, data.encoding, data.na_values)


def read_header(path: str, fmt: Optional[csv_format.CsvFormat] = None) -> List[str]:
    # Undecodable bytes are the preflight's to report (pipeline/preflight.py), with the line.
    return csv_format.read_header(path, fmt or csv_format.resolve(path), errors='replace')


def decodes(path: str, fmt: csv_format.CsvFormat) -> bool:
    """Whether the header of ``path`` is valid text in ``fmt``'s encoding."""
    try:
        csv_format.read_header(path, fmt)
    except UnicodeDecodeError:
        return False
    return True


def check_beam(config: PipelineConfig, fail) -> None:
    """``run.beam_workers``, ``run.in_memory_rows`` and where ``run.beam_args`` run Beam's
    workers: workers elsewhere cannot see a local pipeline root (``fail(key, message)``)."""
    from pipeline import beam_workers

    run = config.run
    for key in ('beam_workers', 'in_memory_rows'):
        if getattr(run, key) < 0:
            fail(f'run.{key}', f'expected 0 or more, got {getattr(run, key)}')
    if run.beam_workers and run.runner == 'kubeflow':
        fail('run.beam_workers', 'the kubeflow runner runs each component in its image; '
             'local Beam workers do not apply (leave run.beam_workers at 0)')
    if run.beam_workers:
        given = beam_workers.placement_flags(run.beam_args)
        if given:
            fail('run.beam_workers', f'sends every Beam job to its own worker pool; it cannot '
                 f'be combined with {", ".join(given)} in run.beam_args (leave one of them out)')
    unsupported = beam_workers.unsupported_runner(run.beam_args)
    if unsupported:
        fail('run.beam_args', unsupported)
    remote = beam_workers.remote_workers(run.beam_args)
    if remote and run.runner != 'kubeflow':
        root = config.paths.pipeline_root
        if '://' not in root:
            fail('paths.pipeline_root', f'{root} is a local path, but run.beam_args run Beam\'s '
                 f'workers {remote}, which cannot read or write it; give a URI they can '
                 f'reach (gs://BUCKET/..., s3://..., hdfs://...)')
        if config.inference.infer_dir:
            # components/batch_inference.py reads, writes and joins its files with local I/O.
            fail('inference.infer_dir', f'the BulkInferrer reads and writes files on this '
                 f'machine, but run.beam_args run Beam\'s workers {remote}; leave '
                 f'inference.infer_dir empty for such a run (the predict command scores files '
                 f'with Beam on this machine)')


def check_tuning(config: PipelineConfig, fail) -> None:
    from components import hyperparameters

    tuning = config.tuning
    if tuning.trials < 0:
        fail('tuning.trials', f'expected 0 (off) or a number of trials, got {tuning.trials}')
    if not tuning.trials and not tuning.reuse:
        return
    if config.training.trainer == 'gbt':
        fail('tuning', 'tuning searches the neural network\'s hyperparameters (width, depth, '
             'dropout, learning rate, batch size), which the gbt trainer does not have; use '
             'the keras or estimator trainer, or set tuning.trials: 0')
    if config.modules.trainer:
        fail('tuning', 'tuning builds the generic model (components/model.py); a custom '
             'modules.trainer builds its own: tune it in that module, or turn tuning off')
    if not tuning.max_minutes > 0:
        fail('tuning.max_minutes', f'expected a positive number of minutes, got {tuning.max_minutes:g}')
    if tuning.train_steps < 0:
        fail('tuning.train_steps', f'expected 0 (training.train_steps) or more, got {tuning.train_steps}')
    allowed = hyperparameters.objectives(config.data.task)
    if tuning.objective not in allowed:
        fail('tuning.objective', f'expected one of {", ".join(allowed)} (the model\'s loss and '
             f'metrics on the eval split, for a {config.data.task} task), got {tuning.objective!r}')
    try:
        hyperparameters.check_space(tuning.space)
    except ValueError as e:
        fail(*str(e).split(': ', 1))


def validate(config: PipelineConfig, check_data: bool = True, source: str = '') -> None:
    """Refuses a bad config before anything runs; each message names the key."""
    def fail(key: str, message: str) -> None:
        raise ConfigError(f'{source + ": " if source else ""}{key}: {message}')

    if not config.name or not config.name.replace('_', '').replace('-', '').isalnum():
        fail('name', f'expected letters, digits, "-" or "_", got {config.name!r}')
    if config.data.split[0] <= 0 or config.data.split[1] <= 0:
        fail('data.split', f'expected two positive bucket counts [train, eval], got {list(config.data.split)}')
    if config.data.spans < 1:
        fail('data.spans', f'expected a positive number of spans to train on, got {config.data.spans}')
    t = config.training
    for key in ('train_steps', 'eval_steps', 'batch_size', 'hidden_units', 'hidden_layers',
                'steps_per_epoch', 'checkpoint_steps', 'keep_checkpoint_max', 'save_summary_steps',
                'gbt_num_trees', 'gbt_max_depth', 'gbt_min_examples'):
        if getattr(t, key) <= 0:
            fail(f'training.{key}', f'expected a positive integer, got {getattr(t, key)}')
    if t.early_stopping_patience < 0:
        fail('training.early_stopping_patience', 'expected 0 (off) or more')
    if t.warm_start and t.trainer != 'estimator' and not config.modules.trainer:
        fail('training.warm_start', 'only the estimator trainer warm-starts '
             '(set training.trainer: estimator, or turn warm_start off)')
    if not 0 < t.learning_rate < 10:
        fail('training.learning_rate', f'expected a number in (0, 10), got {t.learning_rate}')
    if not 0 <= t.dropout < 1:
        fail('training.dropout', f'expected a number in [0, 1), got {t.dropout}')
    for key in ('workers', 'parameter_servers', 'cluster_timeout'):
        if getattr(t, key) <= 0:
            fail(f'training.{key}', f'expected a positive integer, got {getattr(t, key)}')
    if t.distribute == 'multi_worker' and t.workers < 2 and 'TF_CONFIG' not in os.environ:
        fail('training.workers', 'multi_worker trains on at least 2 worker processes (the '
             'chief and another); for one process, set training.distribute: mirrored')
    if t.trainer == 'gbt' and t.distribute != 'none':
        fail('training.distribute', 'the gbt trainer trains its trees in one process '
             '(TF-DF); set training.distribute: none, or use the keras or estimator trainer')
    check_tuning(config, fail)
    for col, n in config.features.bucketize.items():
        if n < 2:
            fail(f'features.bucketize.{col}', f'expected at least 2 buckets, got {n}')
    for col, fmt in config.features.datetime.items():
        if fmt != datetimes.UNIX_SECONDS and datetimes.format_error(fmt):
            fail(f'features.datetime.{col}', datetimes.format_error(fmt))
    for key, error in (('data.delimiter', csv_format.delimiter_error(config.data.delimiter)),
                       ('data.encoding', csv_format.encoding_error(config.data.encoding))):
        if error:
            fail(key, error)
    drift = config.validation.drift
    for key, value in ([('default_linf', drift.default_linf), ('default_js', drift.default_js)]
                       + [(f'per_feature.{k}', v) for k, v in drift.per_feature.items()]):
        if value is not None and not 0 <= value <= 1:
            fail(f'validation.drift.{key}', f'expected a number in [0, 1] or null, got {value}')
    infra = config.validation.infra
    if infra.examples < 1:
        fail('validation.infra.examples', f'expected a positive number of examples, got {infra.examples}')
    if infra.load_timeout_seconds <= 0:
        fail('validation.infra.load_timeout_seconds',
             f'expected a positive number of seconds, got {infra.load_timeout_seconds}')
    if (infra.enabled and infra.require_tf_serving and config.run.runner != 'kubeflow'
            and not shutil.which('tensorflow_model_server')):
        fail('validation.infra.require_tf_serving', 'tensorflow_model_server is not on PATH; '
             'install TF Serving\'s binary, or set require_tf_serving: false to validate with '
             'the product\'s model server alone')
    if config.export.tflite_gate and not config.export.tflite:
        fail('export.tflite_gate', 'needs export.tflite: true (the TFLite model it gates)')
    if config.export.tflite_examples < 1:
        fail('export.tflite_examples', f'expected a positive number, got {config.export.tflite_examples}')
    if config.export.tflite_tolerance is not None and config.export.tflite_tolerance < 0:
        fail('export.tflite_tolerance', f'expected 0 or more, got {config.export.tflite_tolerance}')
    for i, th in enumerate(config.evaluation.thresholds):
        if th.lower is None and th.upper is None:
            fail(f'evaluation.thresholds[{i}]', 'give a lower or an upper bound')
    for key, path in (('modules.transform', config.modules.transform),
                      ('modules.trainer', config.modules.trainer)):
        if path and not (path.endswith('.py') and os.path.isfile(path)):
            fail(key, f'expected an existing .py file, got {path}')
    if config.data.positive_class and config.data.task != 'binary':
        fail('data.positive_class', 'only applies to binary tasks')
    check_beam(config, fail)
    if config.run.runner == 'kubeflow':
        root = config.data.root
        if '://' not in root and os.path.relpath(root, config.base_dir).startswith('..'):
            fail('data.root', f'{root} is on this machine, not in the image; give a URI '
                 f'(gs://...) or a path inside the repository {config.base_dir}')
        for key in ('transform', 'trainer'):
            path = getattr(config.modules, key)
            if path and os.path.relpath(path, config.base_dir).startswith('..'):
                fail(f'modules.{key}', f'{path} is not in the image, which holds the repository '
                     f'{config.base_dir}; put the module there to run it on Kubeflow')
        if not config.run.image:
            fail('run.image', 'the kubeflow runner needs the container image the components '
                 'run in (build it with the Dockerfile), e.g. --image gcr.io/PROJECT/taxi:TAG')
        for key in ('pipeline_root', 'serving_dir'):
            if '://' not in getattr(config.paths, key):
                fail(f'paths.{key}', 'the kubeflow runner needs a URI the cluster can reach '
                     f'(gs://..., s3://...), got {getattr(config.paths, key)}')
    infer_dir = config.inference.infer_dir
    if check_data and infer_dir and '://' not in infer_dir and not (
            os.path.isdir(infer_dir) and any(n.lower().endswith('.csv') for n in os.listdir(infer_dir))):
        fail('inference.infer_dir', f'no *.csv files in {infer_dir}'
             + ('' if os.path.isdir(infer_dir) else ' (the directory does not exist)'))
    if not check_data or '://' in config.data.root:  # remote data is read by ExampleGen only
        return
    root = config.data.root
    if config.data.spans > 1 and os.path.isdir(root) and not spans.spans(root):
        fail('data.spans', f'{config.data.spans} spans asked for, but {config.data.root} has no '
             'span-<N>/ directories; expected span-1/, span-2/, ... of CSV files (or data.spans: 1)')
    files = csv_files(config.data.root)
    if not files:
        fail('data.root', f'no CSV files in {config.data.root}'
             + ('' if os.path.isdir(config.data.root) else ' (the directory does not exist)'))
    try:
        fmt = read_format(config, files[0])
        header = read_header(files[0], fmt)
    except csv_format.GZIP_ERRORS as e:
        fail('data.root', f'{files[0]}: {csv_format.gzip_error(e)}')
    if not header:
        fail('data.root', f'{files[0]} is empty: expected a header row of column names')
    if not decodes(files[0], fmt):
        # A header in another encoding reads with replaced bytes, and a column named in the
        # config would look absent: the preflight refuses the file instead, naming the line
        # and the data.encoding to set.
        return
    columns = set(header)
    split = (f'fields separated by {csv_format.describe_delimiter(fmt.delimiter)}'
             + (', detected: set data.delimiter if that is wrong' if fmt.detected else
                ' (data.delimiter)'))
    if config.data.label not in columns:
        fail('data.label', f'column {config.data.label!r} is not in {files[0]} '
             f'(columns: {", ".join(header)}; {split})')
    named = [('data.exclude', c) for c in config.data.exclude]
    named += [('features.categorical', c) for c in config.features.categorical]
    named += [('features.numeric', c) for c in config.features.numeric]
    named += [('features.bucketize', c) for c in config.features.bucketize]
    named += [('features.datetime', c) for c in config.features.datetime]
    named += [(f'evaluation.slices[{i}]', c) for i, s in enumerate(config.evaluation.slices) for c in s]
    for key, col in named:
        if col not in columns:
            fail(key, f'column {col!r} is not in {files[0]} (columns: {", ".join(header)}; '
                 f'{split})')
