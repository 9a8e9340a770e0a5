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

from components.features import (BUCKETIZED, CATEGORICAL, LABEL_VOCAB, NUMERIC, STRING,
                                 FeaturePlan)


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


def numeric_columns(plan: FeaturePlan, inputs):
    """z-scores of the numeric columns and quantile buckets of the bucketized ones.

    All of them go through a few analyzers over a [batch, columns] matrix (NaN where a value
    is missing, which TFT's mean, variance and quantiles ignore) instead of a few per
    column: one analysis pass over the data, and a Beam graph whose size does not grow with
    the number of columns (Transform's fixed cost on small data). A missing value becomes
    the column's mean: z-score 0, and the mean's bucket. Bucket boundaries are quantiles of
    the present values (filled values would pile up at the mean and shift them).
    """
    columns = plan.of_kind(NUMERIC) + plan.of_kind(BUCKETIZED)
    if not columns:
        return {}
    matrix = tf.stack([nan_filled(inputs[f.name]) for f in columns], axis=1)
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
    outputs = {}
    for i, f in enumerate(columns):
        if f.kind == NUMERIC:
            outputs[f.xf] = z_scores[:, i]
    # Quantile boundaries: one analyzer per distinct bucket count (usually one).
    for n in sorted({f.buckets for f in columns if f.kind == BUCKETIZED}):
        index = [i for i, f in enumerate(columns) if f.kind == BUCKETIZED and f.buckets == n]
        boundaries = tft.quantiles(  # TFT.bucketize's default error tolerance
            tf.gather(matrix, index, axis=1), n, epsilon=min(1.0 / n, 0.01),
            reduce_instance_dims=False)
        for row, i in enumerate(index):
            outputs[columns[i].xf] = tft.apply_buckets(filled[:, i], boundaries[row:row + 1])
    return outputs


def as_string(x):
    """Categorical column as strings; missing values become the empty string."""
    if isinstance(x, tf.SparseTensor):
        if x.dtype != tf.string:
            x = tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
        return dense(x, '')
    return tf.reshape(x if x.dtype == tf.string else tf.strings.as_string(x), [-1])


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
    outputs = numeric_columns(plan, inputs)
    strings = {f.name: as_string(inputs[f.name]) for f in plan.of_kind(CATEGORICAL)}
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
