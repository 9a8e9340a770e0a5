"""Trainer module: ``run_fn`` coordinates; reading data, training and export are separate.

``fn_args.custom_config`` holds ``features`` (the feature plan) and ``training`` (the
``training`` section of the pipeline config). TensorBoard logs go to the model run artifact.
"""
import math
import os
import types
from typing import Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from components.features import LABEL_VOCAB, FeaturePlan
from components.model import build_keras_model
from components.signatures import export_serving_model, transform_function

RAW_BATCH = 1024


def make_dataset(fn_args, files, plan: FeaturePlan, tft_output, batch_size: int, seed: int,
                 raw: bool = False, num_epochs: Optional[int] = None, transform=None,
                 shuffle: bool = True):
    """Shuffled (transformed features, label) batches: repeated forever, or, with
    ``num_epochs``, that many passes. ``shuffle=False``: in the files' order.

    ``raw``: ``files`` hold the raw examples (Transform ran with ``materialize=False``) and
    the TFT graph is applied here, batch by batch, in parallel with training. Otherwise they
    hold Transform's transformed examples. ``transform`` applies the TFT graph (default: the
    TFT layer); the Keras trainer passes the ``transform_function`` its export reuses.
    """
    schema = (tft_output.raw_metadata if raw else tft_output.transformed_metadata).schema
    # Raw: the TFT graph has a fixed cost per call, so it runs on RAW_BATCH rows at a time and
    # the result is cut into training batches (rebatch keeps every row, in order).
    dataset = fn_args.data_accessor.tf_dataset_factory(files, tfxio.TensorFlowDatasetOptions(
        batch_size=max(batch_size, RAW_BATCH) if raw else batch_size, shuffle_seed=seed,
        num_epochs=num_epochs, shuffle=shuffle,
        label_key=None if raw else plan.label_xf), schema)
    if raw:
        apply = transform or tft_output.transform_features_layer()

        @tf.autograph.experimental.do_not_convert  # no tensor-dependent Python control flow
        def transformed(raw_features):
            features = dict(apply(raw_features))
            return features, features.pop(plan.label_xf)

        dataset = dataset.map(transformed, num_parallel_calls=tf.data.AUTOTUNE).rebatch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)


def validation_dataset(fn_args, plan: FeaturePlan, tft_output, training, raw: bool,
                       transform=None):
    """Early stopping's signal: the same rows at every epoch, read and transformed once, then
    served from memory. Up to ``eval_steps`` batches: a seeded shuffled sample of the eval
    split when it is larger than that, all of it, once, otherwise."""
    return make_dataset(fn_args, fn_args.eval_files, plan, tft_output, training.batch_size,
                        training.seed, raw=raw, num_epochs=1,
                        transform=transform).take(fn_args.eval_steps).cache()


def class_weights(plan: FeaturePlan, tft_output) -> Optional[Dict[int, float]]:
    """The plan's class weights by class id, for ``fit(class_weight=...)`` (None: unweighted).
    Binary ids are the plan's keys; multi-class ids are the positions in the label's
    vocabulary (a class the plan has no weight for weighs 1)."""
    if not plan.class_weights:
        return None
    if plan.task == 'binary':
        return {int(c): w for c, w in plan.class_weights.items()}
    classes = [c.decode() for c in tft_output.vocabulary_by_name(LABEL_VOCAB)]
    return {i: plan.class_weights.get(c, 1.0) for i, c in enumerate(classes)}


def train_keras(model, train_ds, eval_ds, train_steps, training, log_dir, class_weight=None):
    """``eval_ds`` is finite: each validation is one pass over it. ``class_weight``: the
    training loss's weight of each class id (the validation loss is unweighted)."""
    steps_per_epoch = min(training.steps_per_epoch, train_steps)
    callbacks = [tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq='epoch')]
    if training.early_stopping_patience:
        callbacks.append(tf.keras.callbacks.EarlyStopping(
            monitor='val_loss', patience=training.early_stopping_patience,
            restore_best_weights=True))
    return model.fit(train_ds, epochs=math.ceil(train_steps / steps_per_epoch),
                     steps_per_epoch=steps_per_epoch, validation_data=eval_ds,
                     callbacks=callbacks, class_weight=class_weight, verbose=2)


def parse_custom_config(custom_config):
    """(the feature plan, the ``training`` settings as attributes: the config's
    ``training`` section as the pipeline recorded it). Components never import ``pipeline/``:
    what they need arrives in ``custom_config``."""
    return (FeaturePlan.from_dict(custom_config['features']),
            types.SimpleNamespace(**custom_config['training']))


def run_fn(fn_args):
    plan, training = parse_custom_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(training.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    # Raw examples when Transform did not materialize (pipeline.materialize_transform).
    raw = not fn_args.custom_config.get('materialized', True)
    # The TFT graph, traced once for both inputs and the export (signatures.transform_function).
    # The validation input first: its batches' size is unknown, so the training input's
    # (fixed-size, as it repeats forever) reuse its trace.
    transform = transform_function(tft_output)
    eval_ds = validation_dataset(fn_args, plan, tft_output, training, raw, transform)
    train_ds = make_dataset(fn_args, fn_args.train_files, plan, tft_output,
                            training.batch_size, training.seed, raw=raw, transform=transform)
    model = build_keras_model(plan, tft_output, training)
    train_keras(model, train_ds, eval_ds, fn_args.train_steps, training,
                log_dir=os.path.join(fn_args.model_run_dir, 'tensorboard'),
                class_weight=class_weights(plan, tft_output))
    export_serving_model(model, tft_output, plan, fn_args.serving_model_dir,
                         transform=transform)
