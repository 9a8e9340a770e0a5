"""The feature plan: the one place that knows feature names, kinds, the label and transformed names.

It is decided once per pipeline, before the graph is built, from the curated schema, the
config and a profile of the data (:func:`plan_from_schema`; the profile is a few facts per
column, :class:`ColumnProfile`, computed by ``pipeline/profile.py``), and handed to
Transform and Trainer as ``custom_config['features']`` (a plain dict, with the reason for
every decision in it), so the preprocessing, the model, the signatures, the evaluation and
the run's summary all read the same names. Nothing here is specific to one dataset.

Kinds:
  numeric      float or integer column: missing values filled with the mean, z-score scaled;
               a heavy-tailed non-negative one is log-scaled (``log1p``) first.
  categorical  string column, or integer column the schema marks categorical (hour, day,
               month...): ids from a vocabulary, plus out-of-vocabulary buckets. When the
               schema closes the column's domain (an ``int_domain`` with min and max, or a
               string domain) with at most ``vocab_size`` values, the vocabulary is that
               domain, in the schema's order (``Feature.vocabulary``); otherwise Transform
               computes it from the data, most frequent first.
  bucketized   numeric column cut into quantile buckets (coordinates, for instance).
  datetime     date or time column (the schema's ``time_domain``, or ``features.datetime``):
               parsed in the graph and expanded into year, month, day of month, day of week,
               day of year and, when the format has a time, hour (``DATE_PARTS``); each part
               is z-scored, and those that wrap also get their sin and cos. The absolute
               time (days since 1970) is also cut into ``DATE_ERA_BUCKETS`` quantile buckets,
               one-hot in the model (``<name>_era_xf``): a period's own level, as a tree
               takes it by splitting on the year or the date (data whose labels were
               recorded differently from one year to the next; a date after the training
               data falls into the last bucket). Clients still send the raw string (or the
               integer, for Unix times).

Columns that are not features are listed with the reason (``FeaturePlan.dropped``): the
config's ``data.exclude``, near-unique strings (IDs, names, free text), unique integers
that span at most twice their count (row numbers, IDs) and constant columns. Every
automatic rule can be turned off in ``features.roles`` (``pipeline/config.py``); a column
named in ``features.categorical`` / ``numeric`` / ``bucketize`` / ``datetime`` is taken as
configured, whatever the rules say.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

NUMERIC, CATEGORICAL, BUCKETIZED, DATETIME = 'numeric', 'categorical', 'bucketized', 'datetime'
FLOAT, INT, STRING = 'float', 'int', 'string'

# Names of the model's outputs in every serving signature, by task.
OUTPUT_KEYS = {'binary': 'probability', 'multiclass': 'probabilities', 'regression': 'value'}
CLASSES_OUTPUT = 'classes'
LABEL_VOCAB = 'label'

_TENSOR_NAME = re.compile(r'[A-Za-z0-9.][A-Za-z0-9_.\-]*')


def json_input_name(feature: str) -> str:
    """The ``serving_json`` input that takes the raw feature ``feature``.

    A signature's inputs are named as TensorFlow names tensors (letters, digits, ``_ . -``,
    starting with a letter, digit or dot), and a JSON client sends those names. A column
    named otherwise, as spreadsheets export them (``Body Mass (g)``), has every other
    character replaced by ``_`` (``Body_Mass__g_``), and ``f_`` in front when it starts with
    ``_`` or ``-``. The ``serving_default`` signature takes tf.Examples under the column's own
    name."""
    if _TENSOR_NAME.fullmatch(feature):
        return feature
    name = re.sub(r'[^A-Za-z0-9_.\-]', '_', feature)
    return name if _TENSOR_NAME.match(name) else 'f_' + name


def json_inputs(features) -> Dict[str, str]:
    """{``serving_json`` input: raw feature} of ``features``; two features whose input would
    be one name are refused, naming both."""
    inputs: Dict[str, str] = {}
    for feature in sorted(features):
        name = json_input_name(feature)
        if name in inputs:
            raise ValueError(f'columns {inputs[name]!r} and {feature!r} would both be the JSON '
                             f'input {name!r} of the serving_json signature; rename one '
                             '(components/features.json_input_name)')
        inputs[name] = feature
    return inputs

# The key metric of each task (as TFMA names it), the metrics that compare it with a trivial
# model's on the eval split (components/metrics.py, GainOverTrivial), and what that trivial
# model is.
KEY_METRICS = {'binary': 'auc', 'multiclass': 'sparse_categorical_accuracy',
               'regression': 'mean_squared_error'}


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of the key metric ``metric`` is the better one (an error,
    regression's), rather than a higher one."""
    return metric == KEY_METRICS['regression']


GAIN_OVER_TRIVIAL, TRIVIAL_BASELINE = 'gain_over_trivial', 'trivial_baseline'
TRIVIAL_MODELS = {'binary': 'a constant score', 'multiclass': 'always the most frequent class',
                  'regression': 'always the mean of the labels'}

# The parts a date/time column becomes, and the period of those that wrap (their sin and
# cos are features too). Day of week: Monday is 0, as Python's ``date.weekday()``.
DATE_PARTS = ('year', 'month', 'day', 'weekday', 'yearday', 'hour')
DATE_PERIODS = {'month': 12, 'day': 31, 'weekday': 7, 'yearday': 366, 'hour': 24}
DATE_ERA_BUCKETS = 10  # quantile buckets of a date/time column's absolute time (its era)
# Integer time formats (the schema's ``time_domain.integer_format``) and their seconds.
UNIX_FORMATS = {'UNIX_DAYS': 86400.0, 'UNIX_SECONDS': 1.0, 'UNIX_MILLISECONDS': 1e-3,
                'UNIX_MICROSECONDS': 1e-6, 'UNIX_NANOSECONDS': 1e-9}
# strptime directives the graph parses (components/transform.py), with what each matches.
# %z is matched and ignored: the parts are the wall-clock time as written.
DATE_DIRECTIVES = {'Y': r'([0-9]{4})', 'y': r'([0-9]{2})', 'm': r'([0-9]{1,2})',
                   'd': r'([0-9]{1,2})', 'H': r'([0-9]{1,2})', 'M': r'([0-9]{1,2})',
                   'S': r'([0-9]{1,2})', 'f': r'[0-9]{1,9}', 'z': r'(?:Z|[+-][0-9]{2}:?[0-9]{2})',
                   '%': '%'}

# The rules' thresholds (features.roles turns each rule off).
ID_DISTINCT_RATIO = 0.9     # a string column this unique (distinct / present values) ...
ID_MIN_DISTINCT = 20        # ... with at least this many distinct values is an ID / name / text
LOG_SCALE_SKEW = 2.0        # a non-negative numeric column skewed more than this is log-scaled
                            # (unless it has two values: a rare 0/1 flag is skewed, not a tail)
LOG_LABEL_SKEW = 1.0        # a non-negative regression label skewed more than this is learnt
                            # on its log1p scale
CLASS_WEIGHT_SHARE = 0.10   # a label whose rarest class is under this share gets class weights


def transformed_name(name: str) -> str:
    return f'{name}_xf'


def date_part_names(name: str, time_format: str) -> Tuple[str, ...]:
    """The transformed names of a date/time column's parts: ``<name>_<part>_xf`` for each
    part, and ``<name>_<part>_sin_xf`` / ``_cos_xf`` for those that wrap."""
    parts = DATE_PARTS if has_time(time_format) else DATE_PARTS[:-1]
    names = []
    for part in parts:
        names.append(transformed_name(f'{name}_{part}'))
        if part in DATE_PERIODS:
            names += [transformed_name(f'{name}_{part}_sin'), transformed_name(f'{name}_{part}_cos')]
    return tuple(names)


def date_era_name(name: str) -> str:
    """The transformed name of a date/time column's era: the bucket of its absolute time."""
    return transformed_name(f'{name}_era')


def has_time(time_format: str) -> bool:
    """Whether values in this format carry a time of day (so an hour)."""
    return time_format in UNIX_FORMATS and time_format != 'UNIX_DAYS' or '%H' in time_format


def date_regex(time_format: str) -> Tuple[str, Tuple[str, ...]]:
    """The RE2 pattern a strptime ``time_format`` matches, and the directive of each of its
    capture groups, in order. Raises ValueError for a directive the graph cannot parse."""
    pattern, groups, i = [], [], 0
    while i < len(time_format):
        c = time_format[i]
        if c != '%':
            pattern.append(re.escape(c))
            i += 1
            continue
        d = time_format[i + 1:i + 2]
        if d not in DATE_DIRECTIVES:
            raise ValueError(f'%{d} is not supported (supported: '
                             f'{" ".join("%" + k for k in DATE_DIRECTIVES)} and literal text)')
        pattern.append(DATE_DIRECTIVES[d])
        if DATE_DIRECTIVES[d].startswith('(') and not DATE_DIRECTIVES[d].startswith('(?:'):
            groups.append(d)  # a capture group
        i += 2
    if not {'Y', 'y'} & set(groups) or 'm' not in groups or 'd' not in groups:
        raise ValueError('expected a year (%Y or %y), a month (%m) and a day (%d)')
    return ''.join(pattern), tuple(groups)


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    dtype: str
    buckets: int = 0
    # Categorical only: the fixed vocabulary, from the schema's closed domain (see above).
    # Empty: Transform computes it from the data. A vocabulary from the data costs a Beam
    # analysis of its own (~2 s of Transform's fixed cost each, most of it at small data);
    # the domain is also the contract validation enforces, so values outside it are
    # anomalies, and at serving they fall into the out-of-vocabulary buckets.
    vocabulary: Tuple[str, ...] = ()
    # Numeric only: log1p before the z-score (heavy-tailed, non-negative).
    log_scale: bool = False
    # Datetime only: a strptime format, or one of UNIX_FORMATS for an integer column.
    time_format: str = ''
    # Numeric from a string column of formatted numbers only: their decimal mark ('.' or
    # ','; empty for every other feature).
    decimal_mark: str = ''
    # Why the plan made the column this (printed in the run's summary).
    reason: str = ''

    @property
    def xf(self) -> str:
        return transformed_name(self.name)

    @property
    def outputs(self) -> Tuple[str, ...]:
        """Its transformed names: one, or a date's parts (float) and its era (a bucket id)."""
        if self.kind == DATETIME:
            return date_part_names(self.name, self.time_format) + (date_era_name(self.name),)
        return (self.xf,)


@dataclass(frozen=True)
class Dropped:
    """A column of the data that is not a feature, and why."""
    name: str
    reason: str


@dataclass(frozen=True)
class ColumnProfile:
    """Facts about one column of the data that the plan's rules need (pipeline/profile.py)."""
    rows: int                        # rows profiled
    present: int                     # of them, with a value (not empty, not an NA token)
    distinct: int                    # distinct values among the present ones
    min: Optional[float] = None      # numeric columns only
    max: Optional[float] = None
    mean: Optional[float] = None
    std: Optional[float] = None      # population standard deviation
    skew: Optional[float] = None     # Fisher's skewness (0 for a symmetric distribution)
    # Non-negative numeric columns only: the mean and population standard deviation of
    # log1p of the values (a skewed regression label is learnt on that scale).
    log_mean: Optional[float] = None
    log_std: Optional[float] = None
    # The most frequent values (as text, as the transform writes them) and their counts:
    # every value of a column with few of them (the label's classes), else the top few.
    top: Tuple[Tuple[str, int], ...] = ()
    # A string column whose every value is a number as spreadsheets write them ("1,234",
    # "$5.00", "12.5%", "-€3", "22,5"; FORMATTED_NUMBER): its decimal mark ('' otherwise).
    # The numeric facts above are those of the numbers, and ``top`` keeps the values as
    # written.
    formatted: str = ''
    # A string column of numbers but for a few values ("Total", "ERR"): those values and
    # their counts (pipeline/profile.stray_text).
    stray: Tuple[Tuple[str, int], ...] = ()


# A number as a spreadsheet or a report formats it: an optional sign and currency sign,
# digits with or without thousands separators, an optional fraction, an optional percent or
# trailing currency sign. Its decimal mark is a point (thousands: commas, "1,234.5") or, as
# most of Europe exports, a comma (thousands: points, "1.234,5"). Stripping the formatting
# characters and writing the decimal mark as a point leaves a number tf.strings.to_number
# and float() read. Shared by the profile (pyarrow) and the transform (TF):
# both are RE2. A column that reads both ways ("1,234" or "0.5" alone) reads with the point.
def _formatted_number(thousands: str, decimal: str) -> str:
    return (r'^\s*(?:[-+]?\s*[$€£¥]?|[$€£¥]\s*[-+]?)\s*'
            rf'(?:\d{{1,3}}(?:\{thousands}\d{{3}}){{1,4}}|\d{{1,15}})(?:\{decimal}\d{{1,15}})?'
            r'\s*[%$€£¥]?\s*$')


DECIMAL_MARKS = ('.', ',')  # in the order a column is tried
FORMATTED_NUMBER = {'.': _formatted_number(',', '.'), ',': _formatted_number('.', ',')}
FORMATTING_CHARS = {'.': r'[\s$€£¥,%]', ',': r'[\s$€£¥.%]'}


@dataclass(frozen=True)
class FeaturePlan:
    features: Tuple[Feature, ...]
    label: str
    label_dtype: str
    task: str
    positive_class: str = ''
    vocab_size: int = 1000
    oov_buckets: int = 10
    one_hot_max: int = 64
    embedding_dim: int = 8
    # Raw columns that are read but not features (besides the label), e.g. leaks
    # (data.exclude): clients do not send them.
    excluded: Tuple[str, ...] = field(default_factory=tuple)
    # Every column that is not a feature, with the reason (data.exclude, IDs, constants).
    # Those the rules dropped stay in the serving signatures: the contract with clients is
    # the schema, not what this data's profile decided.
    dropped: Tuple[Dropped, ...] = field(default_factory=tuple)
    # Regression: the label's mean and standard deviation. The model learns the z-score
    # and its last layer turns it back into the label's scale (components/model.py), so
    # every signature and the Evaluator see values on the label's own scale.
    # ``label_log``: a skewed non-negative label (prices) is learnt on its log1p scale, and
    # ``label_mean`` / ``label_std`` are those of log1p(label); the last layers return
    # expm1 of the de-standardized value.
    label_mean: float = 0.0
    label_std: float = 1.0
    label_log: bool = False
    # Classification: the weight of each class in the training loss, by the label value
    # as the transform writes it (binary: '0' and '1'; multi-class: the class), when the
    # rarest class is under CLASS_WEIGHT_SHARE: binary labels, and multi-class ones when
    # features.roles.class_weights is 'all'. Empty: unweighted.
    class_weights: Mapping[str, float] = field(default_factory=dict)
    label_reason: str = ''
    # Strings that mean "missing" (data.na_values): a string column sent with one of them
    # at serving is treated as missing, as the same cell was in training.
    na_values: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def label_xf(self) -> str:
        return transformed_name(self.label)

    @property
    def output_key(self) -> str:
        return OUTPUT_KEYS[self.task]

    def of_kind(self, kind: str) -> List[Feature]:
        return [f for f in self.features if f.kind == kind]

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'FeaturePlan':
        d = dict(d)
        d['features'] = tuple(Feature(**dict(f, vocabulary=tuple(f.get('vocabulary', ()))))
                              for f in d['features'])
        d['excluded'] = tuple(d.get('excluded', ()))
        d['dropped'] = tuple(Dropped(**x) for x in d.get('dropped', ()))
        d['na_values'] = tuple(d.get('na_values', ()))
        d['class_weights'] = dict(d.get('class_weights', {}))
        return cls(**d)


def schema_dtype(feature) -> str:
    from tensorflow_metadata.proto.v0 import schema_pb2
    return {schema_pb2.FLOAT: FLOAT, schema_pb2.INT: INT, schema_pb2.BYTES: STRING}[feature.type]


def closed_domain(schema, feature, limit: int) -> Tuple[str, ...]:
    """The values the schema allows a column, as strings, when it lists at most ``limit``
    of them: an ``int_domain``'s min..max, or a string domain (inline or named). Empty when
    the domain is open or larger."""
    if feature.HasField('int_domain'):
        d = feature.int_domain
        if d.HasField('min') and d.HasField('max') and 0 < d.max - d.min + 1 <= limit:
            return tuple(str(v) for v in range(d.min, d.max + 1))
        return ()
    if feature.HasField('string_domain'):
        values = feature.string_domain.value
    elif feature.HasField('domain'):
        values = next((d.value for d in schema.string_domain if d.name == feature.domain), [])
    else:
        return ()
    return tuple(values) if 0 < len(values) <= limit else ()


def schema_time_format(feature) -> str:
    """The schema's ``time_domain`` of a column as a plan format ('' when it has none)."""
    if not feature.HasField('time_domain'):
        return ''
    domain = feature.time_domain
    if domain.HasField('string_format'):
        return domain.string_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    name = schema_pb2.TimeDomain.IntegerTimeFormat.Name(domain.integer_format)
    return name if name in UNIX_FORMATS else ''


def _g(x: float) -> str:
    """A figure for a reason: a whole number as it is ('60,011', not '6e+04'), else 3 digits."""
    return f'{int(x):,}' if float(x).is_integer() and abs(x) < 1e15 else f'{x:.3g}'


def dropped_by_rules(name: str, dtype: str, p: Optional[ColumnProfile], roles) -> str:
    """Why the rules drop a column ('' when they keep it)."""
    if p is None or not p.rows:
        return ''
    if roles.constant and (p.present == 0 or p.distinct <= 1 and p.present == p.rows):
        what = f'the value {p.top[0][0]!r}' if p.present else 'no value'
        return f'constant: {what} in every one of the {p.rows:,} rows profiled'
    if not roles.id:
        return ''
    if (dtype == STRING and p.distinct >= ID_MIN_DISTINCT
            and p.distinct >= ID_DISTINCT_RATIO * p.present):
        return (f'near-unique strings ({p.distinct} distinct in {p.present} values): an ID, a '
                f'name or free text, which a model cannot generalize from')
    if (dtype == INT and p.distinct >= ID_MIN_DISTINCT and p.distinct == p.present
            and p.min is not None and p.max - p.min + 1 <= 2 * p.present):
        return (f'unique integers ({_g(p.min)}..{_g(p.max)}, {p.present:,} distinct '
                f'in the {p.rows:,} rows profiled): a row number or an ID')
    return ''


def stray_note(stray) -> str:
    """What the draft and the plan say of a text column's few values that are not numbers."""
    return (', '.join(f'{v!r} ({n})' for v, n in stray) + '; if they mean missing, list them '
            "in data.na_values (with the data's other missing-value tokens: it replaces "
            "pandas' list) and draft the schema again, to read the column as numbers")


def numeric_feature(name: str, dtype: str, p: Optional[ColumnProfile], roles,
                    why: str, decimal_mark: str = '') -> Feature:
    if (roles.log_scale and p is not None and p.min is not None and p.min >= 0
            and p.skew is not None and p.skew > LOG_SCALE_SKEW and p.distinct > 2):
        return Feature(name, NUMERIC, dtype, log_scale=True, decimal_mark=decimal_mark, reason=(
            f'{why}; heavy-tailed (skew {_g(p.skew)}, min {_g(p.min)}): log1p, then z-score'))
    return Feature(name, NUMERIC, dtype, decimal_mark=decimal_mark,
                   reason=f'{why}: mean-filled, z-score')


def label_decisions(config, task: str, p: Optional[ColumnProfile]) -> Dict[str, Any]:
    """The label's standardization (regression) or class weights (classification)."""
    roles = config.features.roles
    if p is None or not p.present:
        return {}
    if task == 'regression':
        if not roles.standardize_label or not p.std:
            return {}
        if (roles.log_label and p.log_std and p.skew is not None
                and p.skew > LOG_LABEL_SKEW):
            return {'label_mean': p.log_mean, 'label_std': p.log_std, 'label_log': True,
                    'label_reason': f'skewed (skew {_g(p.skew)}, min {_g(p.min)}): learnt as '
                                    f'the z-score of log1p(label) (mean {_g(p.log_mean)}, std '
                                    f'{_g(p.log_std)}), a squared error of the logs; the model '
                                    f'outputs the label\'s scale'}
        return {'label_mean': p.mean, 'label_std': p.std,
                'label_reason': f'standardized for training (mean {_g(p.mean)}, std '
                                f'{_g(p.std)}); the model outputs the label\'s scale'}
    counts = dict(p.top)
    shown = {c: repr(c) for c in counts}  # a class as the summary names it
    if task == 'binary':
        positive = config.data.positive_class or '1'
        ones = counts.get(positive, 0)
        counts = {'1': ones, '0': p.present - ones}
        shown = ({'1': repr(positive), '0': f'not {positive!r}'} if config.data.positive_class
                 else {'1': "'1'", '0': "'0'"})
    total = sum(counts.values())
    if len(counts) < 2 or not total:
        return {}
    rarest = min(counts, key=counts.get)
    share = counts[rarest] / total
    if not roles.class_weights or share >= CLASS_WEIGHT_SHARE:
        return {'label_reason': f'rarest class {shown[rarest]} is {share:.1%} of the rows: '
                                'unweighted'}
    if task == 'multiclass' and roles.class_weights != 'all':
        # Accuracy, the key metric the Evaluator gates on, is what balanced weights trade
        # for the rare classes' recall (seattle_weather: 0.77 unweighted, 0.73 balanced on
        # the eval split; benchmarks/RESULTS_generality.md). AUC, binary's, ranks and loses
        # little to them.
        return {'label_reason': f'rarest class {shown[rarest]} is {share:.1%} of the rows: '
                                f'unweighted (multi-class: weights would cost accuracy; '
                                f'features.roles.class_weights: all weights it too)'}
    # Keras's and scikit-learn's "balanced": n / (classes * n_c).
    weights = {c: total / (len(counts) * n) for c, n in counts.items() if n}
    return {'class_weights': weights,
            'label_reason': f'rarest class {shown[rarest]} is {share:.1%} of the rows (under '
                            f'{CLASS_WEIGHT_SHARE:.0%}): balanced class weights '
                            + ', '.join(f'{shown[c]}: {_g(w)}' for c, w in sorted(weights.items()))}


def plan_from_schema(schema, config,
                     profile: Optional[Mapping[str, ColumnProfile]] = None) -> FeaturePlan:
    """Decides each column's role from the schema, the config's explicit choices, then the
    rules on the data's ``profile`` (none: only the schema and the config decide)."""
    fc = config.features
    roles = fc.roles
    datetimes = dict(getattr(fc, 'datetime', {}) or {})  # features.datetime: {column: format}
    profile = profile or {}
    by_name = {f.name: f for f in schema.feature}
    if config.data.label not in by_name:
        raise ValueError(f'{config.data.schema}: the label {config.data.label!r} is not a feature '
                         f'of the schema')
    features, dropped = [], []
    for f in schema.feature:
        if f.name == config.data.label:
            continue
        if f.name in config.data.exclude:
            dropped.append(Dropped(f.name, 'data.exclude'))
            continue
        dtype, p = schema_dtype(f), profile.get(f.name)
        time_format = datetimes.get(f.name) or (schema_time_format(f) if roles.datetime else '')
        explicit = (f.name in fc.bucketize or f.name in fc.categorical or f.name in fc.numeric
                    or f.name in datetimes)
        if f.name in fc.bucketize:
            if dtype == STRING:
                raise ValueError(f'features.bucketize.{f.name}: column is a string, expected numeric')
            features.append(Feature(f.name, BUCKETIZED, dtype, fc.bucketize[f.name], reason=(
                f'features.bucketize: {fc.bucketize[f.name]} quantile buckets')))
            continue
        if time_format and f.name not in fc.categorical and f.name not in fc.numeric:
            key = (f'features.datetime.{f.name}' if f.name in datetimes
                   else f'{config.data.schema}: {f.name}: time_domain')
            if time_format in UNIX_FORMATS:
                if dtype != INT:
                    raise ValueError(f'{key}: {time_format} needs an integer column, '
                                     f'{f.name!r} holds {dtype}s')
            else:
                if dtype != STRING:
                    raise ValueError(f'{key}: the format {time_format!r} parses strings, '
                                     f'{f.name!r} holds {dtype}s (integers: UNIX_SECONDS)')
                try:
                    date_regex(time_format)
                except ValueError as e:
                    raise ValueError(f'{key}: the format {time_format!r}: {e}') from None
            features.append(Feature(f.name, DATETIME, dtype, time_format=time_format, reason=(
                f'date/time ({time_format}'
                + (', features.datetime' if f.name in datetimes else ', from the schema')
                + '): ' + ', '.join(DATE_PARTS if has_time(time_format) else DATE_PARTS[:-1])
                + f'; sin/cos of those that wrap; {DATE_ERA_BUCKETS} era buckets')))
            continue
        if (dtype == STRING and p is not None and p.formatted and roles.formatted_numbers
                and f.name not in fc.categorical):
            why = dropped_by_rules(f.name, FLOAT, p, roles)  # the numbers' rules: constant
            if why:
                dropped.append(Dropped(f.name, why))
                continue
            mark = 'with a decimal comma, ' if p.formatted == ',' else ''
            features.append(numeric_feature(f.name, dtype, p, roles, (
                f'numeric (numbers written as text, e.g. {p.top[0][0]!r}: read {mark}'
                'without their currency, thousands separators and percent signs)'),
                decimal_mark=p.formatted))
            continue
        why = '' if explicit else dropped_by_rules(f.name, dtype, p, roles)
        if why:
            dropped.append(Dropped(f.name, why))
        elif f.name in fc.categorical or f.name not in fc.numeric and (
                dtype == STRING or (f.HasField('int_domain') and f.int_domain.is_categorical)):
            vocabulary = closed_domain(schema, f, fc.vocab_size)
            source = ('features.categorical' if f.name in fc.categorical else
                      'strings' if dtype == STRING else 'integers the schema marks categorical')
            features.append(Feature(f.name, CATEGORICAL, dtype, vocabulary=vocabulary, reason=(
                f'categorical ({source}): '
                + (f'the schema\'s {len(vocabulary)} values' if vocabulary else
                   f'vocabulary of the top {fc.vocab_size}')
                + f' + {fc.oov_buckets} out-of-vocabulary buckets'
                + (f'; numbers but for {stray_note(p.stray)}'
                   if p is not None and p.stray and source == 'strings' else ''))))
        else:
            if f.name in fc.numeric and dtype == STRING:
                raise ValueError(f'features.numeric: column {f.name!r} is a string, expected numeric')
            features.append(numeric_feature(f.name, dtype, p, roles, 'features.numeric' if
                                            f.name in fc.numeric else f'numeric ({dtype})'))
    if not features and dropped:
        raise ValueError(f'features: no column is left to be a feature: besides the label '
                         f'{config.data.label!r}, every column was dropped ('
                         + '; '.join(f'{d.name}: {d.reason}' for d in dropped)
                         + '); name one in features.categorical or features.numeric, or turn '
                         'a rule off in features.roles')
    if not features:
        raise ValueError(f'features: no column to be a feature: the data has only the label '
                         f'{config.data.label!r}; expected at least one column beside it')
    label_dtype = schema_dtype(by_name[config.data.label])
    task = config.data.task
    if task == 'binary' and label_dtype == STRING and not config.data.positive_class:
        raise ValueError(f'data.positive_class: the label {config.data.label!r} holds strings; '
                         f'name the value that counts as the positive class')
    if task == 'regression' and label_dtype == STRING:
        raise ValueError(f'data.task: regression needs a numeric label, {config.data.label!r} '
                         f'holds strings')
    return FeaturePlan(features=tuple(features), label=config.data.label,
                       label_dtype=label_dtype, task=task,
                       positive_class=config.data.positive_class,
                       vocab_size=fc.vocab_size, oov_buckets=fc.oov_buckets,
                       one_hot_max=fc.one_hot_max, embedding_dim=fc.embedding_dim,
                       excluded=tuple(config.data.exclude), dropped=tuple(dropped),
                       na_values=tuple(getattr(config.data, 'na_values', ()) or ()),
                       **label_decisions(config, task, profile.get(config.data.label)))


def describe(plan: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(column, what it became and why) for every column of a plan dict (``to_dict``), the
    label first: what the run's summary prints."""
    rows = [(plan['label'], f'label ({plan["task"]})'
             + (f': {plan["label_reason"]}' if plan.get('label_reason') else ''))]
    # A plan recorded before reasons were has none: its kind stands in.
    rows += [(f['name'], f.get('reason') or f['kind']) for f in plan['features']]
    rows += [(d['name'], f'not a feature: {d["reason"]}') for d in plan.get('dropped', ())]
    return rows
