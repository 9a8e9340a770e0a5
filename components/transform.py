"""Transform module: the generic ``preprocessing_fn``, driven by the feature plan.

Transform imports it by path (``components.transform.preprocessing_fn``) and calls
``preprocessing_fn(inputs, custom_config)`` with ``custom_config['features']`` holding the
plan built by ``components.features``.
"""
import tensorflow as tf
import tensorflow_transform as tft

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


def transform_label(plan: FeaturePlan, label):
    if plan.task == 'regression':
        return mean_filled(label)
    if plan.task == 'binary':
        if plan.label_dtype == STRING:
            return tf.cast(tf.equal(as_string(label), plan.positive_class), tf.int64)
        return tf.cast(dense(label, tf.zeros([], label.dtype)), tf.int64)
    # Multi-class: class ids from a vocabulary of the label values, most frequent first.
    return tft.compute_and_apply_vocabulary(as_string(label), vocab_filename=LABEL_VOCAB)


def apply_fixed_vocabulary(x, vocabulary, oov_buckets: int):
    """Ids of the strings ``x`` in ``vocabulary``; others hashed into ``oov_buckets`` ids
    after it (or -1 without any), as ``tft.apply_vocabulary`` does with a computed one."""
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(vocabulary), tf.range(len(vocabulary), dtype=tf.int64))
    if oov_buckets:
        return tf.lookup.StaticVocabularyTable(init, oov_buckets).lookup(x)
    return tf.lookup.StaticHashTable(init, default_value=-1).lookup(x)


def transform_features(plan: FeaturePlan, inputs):
    outputs = numeric_columns(plan, inputs)
    for f in plan.of_kind(CATEGORICAL):
        x = as_string(inputs[f.name])
        if f.vocabulary:  # the schema's closed domain: no analysis pass
            outputs[f.xf] = apply_fixed_vocabulary(x, f.vocabulary, plan.oov_buckets)
        else:
            outputs[f.xf] = tft.compute_and_apply_vocabulary(
                x, top_k=plan.vocab_size, num_oov_buckets=plan.oov_buckets,
                vocab_filename=f.name)
    if plan.label in inputs:
        outputs[plan.label_xf] = transform_label(plan, inputs[plan.label])
    return outputs


def preprocessing_fn(inputs, custom_config):
    return transform_features(FeaturePlan.from_dict(custom_config['features']), inputs)
