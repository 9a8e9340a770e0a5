"""The Keras wide-and-deep model, built from the feature plan and the Transform output.

Wide part: one-hot of every categorical and bucketized feature and of a date's era bucket,
straight to the output.
Deep part: scaled numeric features and date parts, plus categoricals and a date's era
(one-hot when small, embedded when large), through ``hidden_layers`` dense layers, each
half as wide as the one before. The two parts' logits are summed; the head depends on the task. A regression model
learns the label's z-score (the plan's ``label_mean`` and ``label_std``): its loss is the
z-scores' squared error, and its last layer (``output``, a fixed ``Rescaling``) returns
``z * std + mean``, so the model, its signatures and the Evaluator speak the label's scale.
A skewed non-negative label (the plan's ``label_log``: prices) is learnt on its log1p
scale: ``label_mean`` / ``label_std`` are those of log1p(label), the loss is the squared
error of the logs (Keras's ``mean_squared_logarithmic_error``, divided by their variance),
and the last layers return ``exp(z * std + mean) - 1``, the label's scale again.
"""
import tensorflow as tf

from components.features import (BUCKETIZED, CATEGORICAL, DATE_ERA_BUCKETS, LABEL_VOCAB,
                                 FeaturePlan, date_era_name)


def category_count(plan: FeaturePlan, tft_output, feature) -> int:
    """How many distinct ids a transformed categorical / bucketized feature can take."""
    if feature.kind == BUCKETIZED:
        return feature.buckets
    if feature.vocabulary:
        return len(feature.vocabulary) + plan.oov_buckets
    return tft_output.vocabulary_size_by_name(feature.name) + plan.oov_buckets


def num_classes(plan: FeaturePlan, tft_output) -> int:
    if plan.task == 'multiclass':
        return tft_output.vocabulary_size_by_name(LABEL_VOCAB)
    return 1


def build_keras_model(plan: FeaturePlan, tft_output, training) -> tf.keras.Model:
    """``training`` is a ``pipeline.config.TrainingConfig`` (or anything with its fields)."""
    transformed_spec = tft_output.transformed_feature_spec()
    inputs, deep, wide = {}, [], []
    planned = {name for f in plan.features for name in f.outputs}

    def ids(name, n):
        x = inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.int64)
        one_hot = tf.keras.layers.CategoryEncoding(n, output_mode='one_hot')(x)
        wide.append(one_hot)
        if n <= plan.one_hot_max:
            deep.append(one_hot)
        else:
            deep.append(tf.keras.layers.Embedding(n, plan.embedding_dim)(x))

    for f in plan.features:
        if f.kind in (CATEGORICAL, BUCKETIZED):
            ids(f.xf, category_count(plan, tft_output, f))
            continue
        for name in f.outputs:  # numbers, date parts, a date's era
            if name == date_era_name(f.name):
                ids(name, DATE_ERA_BUCKETS)
                continue
            x = inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.float32)
            deep.append(tf.keras.layers.Reshape((1,))(x))
    # Extra float features a custom preprocessing_fn added go into the deep part as they are.
    for name, spec in sorted(transformed_spec.items()):
        if name not in planned and name != plan.label_xf and spec.dtype == tf.float32:
            x = inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.float32)
            deep.append(tf.keras.layers.Reshape((1,))(x))

    units = num_classes(plan, tft_output)
    h = tf.keras.layers.concatenate(deep) if len(deep) > 1 else deep[0]
    for i in range(training.hidden_layers):
        h = tf.keras.layers.Dense(max(1, training.hidden_units // (2 ** i)), activation='relu')(h)
        if training.dropout:
            h = tf.keras.layers.Dropout(training.dropout, seed=training.seed)(h)
    logits = tf.keras.layers.Dense(units, name='deep_logits')(h)
    if wide:
        w = tf.keras.layers.concatenate(wide) if len(wide) > 1 else wide[0]
        logits = tf.keras.layers.add([logits, tf.keras.layers.Dense(units, name='wide_logits')(w)])

    # Keras's legacy Adam: the same algorithm, but one fused update op per variable, which
    # traces and runs faster than the v2 optimizer's per-variable functions (a 12k fit's first
    # epoch ~0.9 s less, later ones ~20% faster: docs/performance.md). model_to_estimator
    # converts to it anyway.
    optimizer = tf.keras.optimizers.legacy.Adam(learning_rate=training.learning_rate)
    loss_weights = None
    if plan.task == 'binary':
        output = tf.keras.layers.Activation('sigmoid', name='output')(logits)
        loss, metrics = 'binary_crossentropy', [tf.keras.metrics.AUC(name='auc'), 'binary_accuracy']
    elif plan.task == 'multiclass':
        output = tf.keras.layers.Activation('softmax', name='output')(logits)
        loss, metrics = 'sparse_categorical_crossentropy', ['sparse_categorical_accuracy']
    elif plan.label_log:
        # exp(z * std + mean) - 1: built-in layers only, so the model reloads from its config.
        logs = tf.keras.layers.Rescaling(plan.label_std, offset=plan.label_mean)(logits)
        output = tf.keras.layers.Rescaling(1.0, offset=-1.0, name='output')(
            tf.keras.layers.Activation('exponential')(logs))
        # Keras's squared error of log1p(prediction) and log1p(label): that of the logs'
        # z-scores once divided by their variance.
        loss, metrics = 'mean_squared_logarithmic_error', ['mae']
        loss_weights = [1.0 / plan.label_std ** 2]
    else:
        output = tf.keras.layers.Rescaling(plan.label_std, offset=plan.label_mean,
                                           name='output')(logits)
        # The squared error of the z-scores: that of the label, divided by its variance.
        loss, metrics, loss_weights = 'mse', ['mae'], [1.0 / plan.label_std ** 2]
    model = tf.keras.Model(inputs=inputs, outputs=output)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights)
    return model
