"""Transform module: the generic ``preprocessing_fn``, driven by the feature plan.

TFX packages this directory and calls ``preprocessing_fn(inputs, custom_config)`` with
``custom_config['features']`` holding the plan built by ``components.features``.
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
    values = x.values if isinstance(x, tf.SparseTensor) else x
    values = tf.cast(values, tf.float32)
    if isinstance(x, tf.SparseTensor):
        x = tf.SparseTensor(x.indices, values, x.dense_shape)
        mean = tft.mean(values)
        return dense(x, mean)
    return tf.reshape(values, [-1])


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


def transform_features(plan: FeaturePlan, inputs):
    outputs = {}
    for f in plan.of_kind(NUMERIC):
        outputs[f.xf] = tft.scale_to_z_score(mean_filled(inputs[f.name]))
    for f in plan.of_kind(BUCKETIZED):
        outputs[f.xf] = tft.bucketize(mean_filled(inputs[f.name]), f.buckets)
    for f in plan.of_kind(CATEGORICAL):
        outputs[f.xf] = tft.compute_and_apply_vocabulary(
            as_string(inputs[f.name]), top_k=plan.vocab_size,
            num_oov_buckets=plan.oov_buckets, vocab_filename=f.name)
    if plan.label in inputs:
        outputs[plan.label_xf] = transform_label(plan, inputs[plan.label])
    return outputs


def preprocessing_fn(inputs, custom_config):
    return transform_features(FeaturePlan.from_dict(custom_config['features']), inputs)
