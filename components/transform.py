"""Transform module: the generic ``preprocessing_fn``, driven by the feature plan.

Transform imports it by path (``components.transform.preprocessing_fn``) and calls
``preprocessing_fn(inputs, custom_config)`` with ``custom_config['features']`` holding the
plan built by ``components.features``.
"""
import collections
import os
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.beam.experimental import PTransformAnalyzer

from components.features import (BUCKETIZED, CATEGORICAL, DATE_ERA_BUCKETS, DATE_PARTS,
                                 DATE_PERIODS, DATETIME, FORMATTED_NUMBER, FORMATTING_CHARS,
                                 LABEL_VOCAB, NUMERIC, STRING, UNIX_FORMATS, FeaturePlan,
                                 date_era_name, date_regex, has_time, transformed_name)


def dense(x, default):
    """A [batch] dense tensor; missing values (empty sparse rows) become ``default``."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default)
    return tf.reshape(x, [-1])


def mean_filled(x):
    """Numeric column as float32 with missing values replaced by the column's mean."""
    values = present_values(x)
    if not isinstance(x, tf.SparseTensor):
        return values
    return dense(tf.SparseTensor(x.indices, values, x.dense_shape), tft.mean(values))


def present_values(x):
    """The values a numeric column has (missing ones left out), as float32."""
    return tf.cast(x.values if isinstance(x, tf.SparseTensor) else tf.reshape(x, [-1]),
                   tf.float32)


def nan_filled(x):
    """Numeric column as a [batch] float32 tensor, NaN where the value is missing."""
    return dense(tf.cast(x, tf.float32) if x.dtype != tf.float32 else x, float('nan'))


def formatted_numbers(x, na_values: Sequence[str] = (), decimal_mark: str = '.'):
    """A string column of formatted numbers ("1,234", "$5.00", "12.5%", "22,5" with a decimal
    comma) as a [batch] float32 tensor, NaN where a value is missing or does not read as one
    (as the profile read them: ``features.FORMATTED_NUMBER``)."""
    text = as_string(x, na_values)
    ok = tf.strings.regex_full_match(text, FORMATTED_NUMBER[decimal_mark])
    digits = tf.strings.regex_replace(text, FORMATTING_CHARS[decimal_mark], '')
    if decimal_mark == ',':
        digits = tf.strings.regex_replace(digits, ',', '.')
    number = tf.strings.to_number(tf.where(ok, digits, '0'), tf.float32)
    return tf.where(ok, number, tf.fill(tf.shape(number), float('nan')))


def numeric_columns(plan: FeaturePlan, inputs, strings=None):
    """z-scores of the numeric columns and of the date parts, the date parts' sin and cos,
    and quantile buckets of the bucketized columns.

    All of them go through a few analyzers over a [batch, columns] matrix (NaN where a value
    is missing, which TFT's mean, variance and quantiles ignore) instead of a few per
    column: one analysis pass over the data, and a Beam graph whose size does not grow with
    the number of columns (Transform's fixed cost on small data). A missing value becomes
    the column's mean: z-score 0, and the mean's bucket. Bucket boundaries are quantiles of
    the present values (filled values would pile up at the mean and shift them).
    ``strings``: the date columns' values as strings (NA tokens already blanked).
    """
    columns, names, outputs = [], [], {}
    buckets = []  # (column, output, bucket count) of the columns cut into quantile buckets
    for f in plan.of_kind(NUMERIC) + plan.of_kind(BUCKETIZED):
        x = (formatted_numbers(inputs[f.name], plan.na_values, f.decimal_mark or '.')
             if f.dtype == STRING
             else nan_filled(inputs[f.name]))
        if f.kind == BUCKETIZED:
            buckets.append((len(columns), f.xf, f.buckets))
        # log1p of a negative value (never in the data profiled) is that of 0.
        columns.append(tf.math.log1p(tf.maximum(x, 0.0)) if f.log_scale else x)
        names.append(f.xf if f.kind == NUMERIC else None)
    for f in plan.of_kind(DATETIME):
        raw = strings[f.name] if f.dtype == STRING else inputs[f.name]
        parts = date_parts(raw, f.time_format)
        buckets.append((len(columns), date_era_name(f.name), DATE_ERA_BUCKETS))
        columns.append(parts.pop('era'))
        names.append(None)
        for part, value in parts.items():
            columns.append(value)
            names.append(transformed_name(f'{f.name}_{part}'))
            if part in DATE_PERIODS:
                outputs.update(cyclic(value, f'{f.name}_{part}', DATE_PERIODS[part],
                                      0 if part in ('weekday', 'hour') else 1))
    if not columns:
        return outputs
    matrix = tf.stack(columns, axis=1)
    missing = tf.math.is_nan(matrix)
    mean = tft.mean(matrix, reduce_instance_dims=False)
    mean = tf.where(tf.math.is_nan(mean), tf.zeros_like(mean), mean)  # a column with no values
    # The variance of the mean-filled column, from the present values' variance and the
    # share of values present (a filled value adds no deviation): the same z-scores as
    # tft.scale_to_z_score of the filled column, without a second pass.
    var = (tft.var(matrix, reduce_instance_dims=False)
           * tft.mean(1.0 - tf.cast(missing, tf.float32), reduce_instance_dims=False))
    filled = tf.where(missing, tf.broadcast_to(mean, tf.shape(matrix)), matrix)
    scale = tf.where(var > 0, tf.math.rsqrt(var), tf.ones_like(var))
    z_scores = (filled - mean) * scale
    for i, name in enumerate(names):
        if name:
            outputs[name] = z_scores[:, i]
    # Quantile boundaries: one analyzer per distinct bucket count (usually one).
    for n in sorted({count for _, _, count in buckets}):
        index, xfs = zip(*[(i, xf) for i, xf, count in buckets if count == n])
        boundaries = tft.quantiles(  # TFT.bucketize's default error tolerance
            tf.gather(matrix, list(index), axis=1), n, epsilon=min(1.0 / n, 0.01),
            reduce_instance_dims=False)
        for row, (i, xf) in enumerate(zip(index, xfs)):
            outputs[xf] = tft.apply_buckets(filled[:, i], boundaries[row:row + 1])
    return outputs


def cyclic(value, name: str, period: int, first: int):
    """sin and cos of a part that wraps (``first``: its smallest value); 0 and 0 where it is
    missing (NaN), the centre of the circle."""
    angle = (value - first) * (2 * np.pi / period)
    missing = tf.math.is_nan(value)
    zero = tf.zeros_like(value)
    return {transformed_name(f'{name}_sin'): tf.where(missing, zero, tf.sin(angle)),
            transformed_name(f'{name}_cos'): tf.where(missing, zero, tf.cos(angle))}


def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (int64 tensors; H. Hinnant's
    algorithm, exact for every year)."""
    y = year - tf.cast(month <= 2, tf.int64)
    era = tf.math.floordiv(y, 400)
    yoe = y - era * 400
    doy = (153 * tf.math.floormod(month + 9, 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days):
    """(year, month, day) of days since 1970-01-01 (the inverse of ``days_from_civil``)."""
    z = days + 719468
    era = tf.math.floordiv(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = tf.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + tf.cast(month <= 2, tf.int64), month, day


def parse_date_strings(x, time_format: str):
    """(valid, year, month, day, hour) of [batch] strings in a strptime ``time_format``, as
    int64; a value that does not match (or is missing: '') is not valid."""
    pattern, groups = date_regex(time_format)
    valid = tf.strings.regex_full_match(x, pattern)

    def group(directive, default):
        if directive not in groups:
            return tf.fill(tf.shape(x), tf.constant(default, tf.int64))
        text = tf.strings.regex_replace(x, f'^{pattern}$', f'\\{groups.index(directive) + 1}')
        # Only digits when valid; '0' stands in where not (to_number refuses other text).
        return tf.strings.to_number(tf.where(valid, text, '0'), tf.int64)

    if 'Y' in groups:
        year = group('Y', 1970)
    else:  # %y: 69-99 are 1969-1999, 00-68 2000-2068, as Python's strptime
        short = group('y', 70)
        year = short + tf.where(short < 69, tf.constant(2000, tf.int64), 1900)
    month, day, hour = group('m', 1), group('d', 1), group('H', 0)
    valid &= ((month >= 1) & (month <= 12) & (day >= 1) & (day <= 31) & (hour <= 23)
              & (day <= days_in_month(year, month)))
    return valid, year, month, day, hour


def days_in_month(year, month):
    next_month = tf.where(month == 12, days_from_civil(year + 1, tf.ones_like(month), 1),
                          days_from_civil(year, month + 1, 1))
    return next_month - days_from_civil(year, month, 1)


def date_parts(x, time_format: str) -> Dict[str, tf.Tensor]:
    """A date/time column's parts (``features.DATE_PARTS``) and its absolute time (``'era'``:
    days since 1970-01-01, the hour as a fraction) as [batch] float32, NaN where the value is
    missing or not in ``time_format``: strings in a strptime format, or integers in one of
    ``features.UNIX_FORMATS`` (UTC)."""
    if time_format in UNIX_FORMATS:
        present = ~tf.math.is_nan(nan_filled(x))
        seconds = tf.cast(dense(x, tf.zeros([], x.dtype)), tf.float64) * UNIX_FORMATS[time_format]
        whole = tf.cast(tf.math.floor(seconds), tf.int64)
        days = tf.math.floordiv(whole, 86400)
        hour = tf.math.floormod(whole, 86400) // 3600
        year, month, day = civil_from_days(days)
    else:
        present, year, month, day, hour = parse_date_strings(x, time_format)
        days = days_from_civil(year, month, day)
    parts = {'year': year, 'month': month, 'day': day,
             'weekday': tf.math.floormod(days + 3, 7),  # 1970-01-01 was a Thursday (3)
             'yearday': days - days_from_civil(year, tf.ones_like(month), 1) + 1,
             'hour': hour}
    nan = tf.constant(float('nan'), tf.float32)
    values = {part: tf.where(present, tf.cast(parts[part], tf.float32), nan)
              for part in (DATE_PARTS if has_time(time_format) else DATE_PARTS[:-1])}
    era = tf.cast(days, tf.float32) + tf.cast(hour, tf.float32) / 24.0
    return {**values, 'era': tf.where(present, era, nan)}


def unreadable_date_checks(plan: FeaturePlan, raw_features) -> List[tf.Operation]:
    """For the serving signatures: an assertion per string date/time column that every value
    a client sent reads in the column's format (empty and NA tokens are missing, as in
    training). Training data is held to that by the preflight; a client's '2013-01-01
    10:00:00' for '%Y-%m-%dT%H:%M:%S%z' would otherwise count as missing, and the model
    answer for a row without the date: a skew nobody sees."""
    checks = []
    for f in plan.of_kind(DATETIME):
        if f.dtype != STRING:
            continue
        text = as_string(raw_features[f.name], plan.na_values)
        bad = tf.logical_and(tf.not_equal(text, ''),
                             tf.logical_not(parse_date_strings(text, f.time_format)[0]))
        checks.append(tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(bad)),
            [f'{f.name}: expected a date/time in the format {f.time_format} (as in '
             'training), got', tf.boolean_mask(text, bad)], summarize=1))
    return checks


def as_string(x, na_values: Sequence[str] = ()):
    """Categorical column as strings; missing values, and strings in ``na_values`` (the
    data's NA tokens, for a client that sends "NA" as the CSV had it), become the empty
    string."""
    if isinstance(x, tf.SparseTensor):
        if x.dtype != tf.string:
            x = tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
        x = dense(x, '')
    else:
        x = tf.reshape(x if x.dtype == tf.string else tf.strings.as_string(x), [-1])
    tokens = [t for t in na_values if t]
    if not tokens:
        return x
    is_na = tf.reduce_any(tf.equal(x[:, tf.newaxis], tf.constant(tokens)[tf.newaxis, :]), axis=1)
    return tf.where(is_na, tf.constant('', tf.string), x)


def transform_label(plan: FeaturePlan, label, vocabulary=None):
    """``vocabulary``: multi-class only, the label values' vocabulary file."""
    if plan.task == 'regression':
        return mean_filled(label)
    if plan.task == 'binary':
        if plan.label_dtype == STRING:
            return tf.cast(tf.equal(as_string(label), plan.positive_class), tf.int64)
        return tf.cast(dense(label, tf.zeros([], label.dtype)), tf.int64)
    # Multi-class: class ids from a vocabulary of the label values, most frequent first.
    return tft.apply_vocabulary(as_string(label), vocabulary)


def apply_fixed_vocabulary(x, vocabulary, oov_buckets: int):
    """Ids of the strings ``x`` in ``vocabulary``; others hashed into ``oov_buckets`` ids
    after it (or -1 without any), as ``tft.apply_vocabulary`` does with a computed one."""
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(vocabulary), tf.range(len(vocabulary), dtype=tf.int64))
    if oov_buckets:
        return tf.lookup.StaticVocabularyTable(init, oov_buckets).lookup(x)
    return tf.lookup.StaticHashTable(init, default_value=-1).lookup(x)


class _CountValues(beam.CombineFn):
    """How often each value occurs, per column, over batches of columns."""

    def __init__(self, columns: int):
        self.columns = columns

    def create_accumulator(self):
        return [collections.Counter() for _ in range(self.columns)]

    def add_input(self, counters, batch):
        for counter, values in zip(counters, batch):
            tokens, counts = np.unique(np.asarray(values).reshape(-1), return_counts=True)
            counter.update(dict(zip(tokens.tolist(), counts.tolist())))
        return counters

    def merge_accumulators(self, accumulators):
        merged, *others = list(accumulators)
        for counters in others:
            for total, counter in zip(merged, counters):
                total.update(counter)
        return merged

    def extract_output(self, counters):
        return counters


def write_vocabularies(counters, directory: str, names: Sequence[str],
                       top_ks: Sequence[Optional[int]]) -> List[np.ndarray]:
    """One vocabulary file per column, by ``tft.vocabulary``'s rules (text format): the most
    frequent values first, ties in reverse lexicographic order, at most ``top_k`` of them;
    the empty value and values with a line break are left out (they map to the
    out-of-vocabulary ids), and an empty vocabulary holds TFT's placeholder value."""
    tf.io.gfile.makedirs(directory)
    paths = []
    for counter, name, top_k in zip(counters, names, top_ks):
        ranked = sorted(((count, token) for token, count in counter.items()
                         if token and b'\n' not in token and b'\r' not in token), reverse=True)
        tokens = [token for _, token in ranked[:top_k]] or [
            tft.analyzers.get_empy_vocabulary_dummy_value(tf.string)[1]]
        path = os.path.join(directory, tft.analyzers.sanitized_vocab_filename(name))
        with tf.io.gfile.GFile(path, 'wb') as f:
            f.write(b''.join(token + b'\n' for token in tokens))
        paths.append(np.array(path.encode()))
    return paths


class ColumnVocabularies(PTransformAnalyzer):
    """Every computed vocabulary in one pass over the data.

    ``tft.vocabulary`` per column adds ~5 Beam stages per column to Transform, whose fixed
    cost dominates on small data (three vocabularies were ~2.7 s of a 12k-row Transform;
    docs/performance.md). This counts all the columns in one combine and writes one file
    per column, named as ``tft.vocabulary(vocab_filename=name)`` would name it.
    """

    def __init__(self, names: Sequence[str], top_ks: Sequence[Optional[int]]):
        super().__init__()
        self.names, self.top_ks = list(names), list(top_ks)

    def expand(self, batches):
        paths = (batches
                 | 'Count' >> beam.CombineGlobally(_CountValues(len(self.names)))
                 | 'Write' >> beam.Map(write_vocabularies, self.base_temp_dir, self.names,
                                       self.top_ks))
        return tuple(paths | f'Path{i}' >> beam.Map(lambda p, i=i: p[i])
                     for i in range(len(self.names)))


def vocabularies(columns: Dict[str, tf.Tensor],
                 top_ks: Dict[str, Optional[int]]) -> Dict[str, tf.Tensor]:
    """The vocabulary file of each [batch] string column, for ``tft.apply_vocabulary``."""
    if not columns:
        return {}
    names = sorted(columns)
    paths = tft.experimental.ptransform_analyzer(
        [columns[n] for n in names], ColumnVocabularies(names, [top_ks[n] for n in names]),
        output_dtypes=[tf.string] * len(names), output_shapes=[[]] * len(names),
        # A placeholder vocabulary while TFT traces, as tft.vocabulary's.
        output_asset_default_values=[b'TEMPORARY_ASSET_VALUE'] * len(names), name='vocabularies')
    return dict(zip(names, paths))


def transform_features(plan: FeaturePlan, inputs):
    # NA tokens count as missing in string columns only: a number column's are not numbers.
    strings = {f.name: as_string(inputs[f.name], plan.na_values if f.dtype == STRING else ())
               for f in plan.of_kind(CATEGORICAL) + plan.of_kind(DATETIME)
               if f.kind == CATEGORICAL or f.dtype == STRING}
    outputs = numeric_columns(plan, inputs, strings)
    computed = {f.name: strings[f.name] for f in plan.of_kind(CATEGORICAL) if not f.vocabulary}
    top_ks = dict.fromkeys(computed, plan.vocab_size)
    if plan.task == 'multiclass' and plan.label in inputs:  # every class, no top-k
        computed[LABEL_VOCAB], top_ks[LABEL_VOCAB] = as_string(inputs[plan.label]), None
    files = vocabularies(computed, top_ks)
    for f in plan.of_kind(CATEGORICAL):
        if f.vocabulary:  # the schema's closed domain: no analysis pass
            outputs[f.xf] = apply_fixed_vocabulary(strings[f.name], f.vocabulary,
                                                   plan.oov_buckets)
        else:
            outputs[f.xf] = tft.apply_vocabulary(strings[f.name], files[f.name],
                                                 num_oov_buckets=plan.oov_buckets)
    if plan.label in inputs:
        outputs[plan.label_xf] = transform_label(plan, inputs[plan.label],
                                                 files.get(LABEL_VOCAB))
    return outputs


def preprocessing_fn(inputs, custom_config):
    return transform_features(FeaturePlan.from_dict(custom_config['features']), inputs)
