"""Trainer module: ``run_fn`` coordinates; reading data, training and export are separate.

``fn_args.custom_config`` holds ``features`` (the feature plan) and ``training`` (the
``training`` section of the pipeline config). The Tuner's best hyperparameters, when the
Trainer has them (``fn_args.hyperparameters``), replace the section's values
(``components/hyperparameters.py``). ``training.distribute`` chooses where and how it
trains (``components/distribute.py``): in this process, or as the tasks of a cluster, each
running ``train_task``. TensorBoard logs go to the model run artifact; the exported model
records what it was trained with (``components/training_record.py``).
"""
import contextlib
import math
import os
import types
from typing import Dict, Optional, Tuple

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx_bsl.public import tfxio

from components import distribute, hyperparameters, training_record
from components.features import LABEL_VOCAB, FeaturePlan
from components.model import build_keras_model
from components.signatures import export_serving_model, transform_function

RAW_BATCH = 1024


def make_dataset(fn_args, files, plan: FeaturePlan, tft_output, batch_size: int, seed: int,
                 raw: bool = False, num_epochs: Optional[int] = None, transform=None,
                 shuffle: bool = True, shard: Optional[Tuple[int, int]] = None):
    """Shuffled (transformed features, label) batches: repeated forever, or, with
    ``num_epochs``, that many passes. ``shuffle=False``: in the files' order. ``shard``:
    (input pipelines, this one's index) of a distributed input; each keeps every n-th batch
    read, the same seed giving every pipeline the same order, so the shards are disjoint.

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
    if shard:
        dataset = dataset.shard(*shard)
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


def build_for_fit(model, dataset) -> None:
    """Creates, before ``fit``, the variables its first training step would: the optimizer's
    (Adam's moments and step) and the compiled loss' and metrics' (their totals and counts).

    A ``tf.function`` that creates variables on its first call is traced a second time for
    the later calls: one more trace of the whole training step (~20% of a 12k taxi fit,
    and of every tuner trial). Applying zero gradients creates the optimizer's without
    moving a weight (Adam's update of a zero gradient is zero; the step count goes back to
    0); one eager call of the loss and metrics on a batch of zeros shaped as
    ``dataset``'s elements builds theirs (two rows: Keras' CategoryEncoding reads a batch
    of one as one example), and ``reset_metrics`` clears what it counted.
    Only for a fresh optimizer, outside any distribution strategy (there these must run per
    replica), and dense inputs."""
    optimizer = model.optimizer
    if tf.distribute.has_strategy() or model.distribute_strategy is not tf.distribute.get_strategy() \
            or optimizer.variables():
        return
    features, label = dataset.element_spec[:2]
    specs = [*features.values(), label] if isinstance(features, dict) else []
    if not specs or not all(isinstance(s, tf.TensorSpec) for s in specs):
        return
    variables = model.trainable_variables
    optimizer.apply_gradients(zip([tf.zeros_like(v) for v in variables], variables))
    optimizer.iterations.assign(0)

    def zeros(spec):
        return tf.zeros([2, *spec.shape[1:]], spec.dtype)

    y_true, y_pred = zeros(label), model({n: zeros(s) for n, s in features.items()})
    model.compiled_loss(y_true, y_pred, regularization_losses=model.losses)
    model.compiled_metrics.update_state(y_true, y_pred)
    model.reset_metrics()


def count_records(file_patterns, limit: int) -> int:
    """How many examples the TFRecord files of ``file_patterns`` hold, counting at most
    ``limit`` (the records are counted, not parsed: ~10 ms per 10k rows)."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        return 0
    compression = 'GZIP' if all(f.endswith('.gz') for f in files) else ''
    records = tf.data.TFRecordDataset(files, compression_type=compression)
    return int(records.take(limit).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def schedule(train_steps: int, training, rows: Optional[int] = None,
             replicas: int = 1) -> Tuple[int, int]:
    """(steps between validations, early stopping's patience in validations).

    ``training.steps_per_epoch`` steps between validations, and ``early_stopping_patience``
    of them without a better eval loss stop the training. When one pass over the ``rows``
    training rows takes fewer steps (small data: 940 rows are 8 batches of 128, and 200
    steps would be 27 passes, by which time a network has long overfit them), a validation
    comes after every pass, and the patience counts as many whole passes as fit in the same
    steps (3 x 200 steps: 75 passes of 8; 6 passes of 94 for 12k taxi rows), so small data
    is not stopped sooner nor trained longer, only watched more closely, and the weights
    restored are those of its best pass. ``rows`` None: not counted
    (as many as a stretch or more). Only with ``training.validate_every_pass``."""
    steps = min(training.steps_per_epoch, train_steps)
    patience = training.early_stopping_patience
    if rows and getattr(training, 'validate_every_pass', False):
        per_pass = max(1, math.ceil(rows / (training.batch_size * replicas)))
        if per_pass < steps:
            patience = max(1, patience * steps // per_pass) if patience else 0
            steps = per_pass
    return steps, patience


def train_keras(model, train_ds, eval_ds, train_steps, training, log_dir: str = '',
                callbacks=(), epochs: Optional[int] = None, initial_epoch: int = 0,
                validation_steps: Optional[int] = None, class_weight=None,
                rows: Optional[int] = None, replicas: int = 1):
    """``eval_ds`` is finite (or, with ``validation_steps``, that many batches of it are one
    validation). ``epochs``: the tuner's (Hyperband's rounds); default, ``train_steps``.
    ``class_weight``: the training loss's weight of each class id (the validation loss is
    unweighted). ``rows``: the training rows, when fewer than a stretch of
    ``steps_per_epoch`` batches (``schedule``: then a validation after every pass)."""
    steps_per_epoch, patience = schedule(train_steps, training, rows, replicas)
    callbacks = list(callbacks)
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq='epoch'))
    if patience:
        callbacks.append(tf.keras.callbacks.EarlyStopping(
            monitor='val_loss', patience=patience, restore_best_weights=True))
    build_for_fit(model, train_ds)
    return model.fit(train_ds, epochs=epochs or math.ceil(train_steps / steps_per_epoch),
                     initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                     validation_data=eval_ds, validation_steps=validation_steps,
                     callbacks=callbacks, class_weight=class_weight, verbose=2)


def parse_custom_config(custom_config):
    """(the feature plan, the ``training`` settings as attributes: the config's
    ``training`` section as the pipeline recorded it). Components never import ``pipeline/``:
    what they need arrives in ``custom_config``."""
    return (FeaturePlan.from_dict(custom_config['features']),
            types.SimpleNamespace(**custom_config['training']))


def training_of(fn_args):
    """(plan, training): the config's training section, with the tuned hyperparameters
    (the Trainer's ``hyperparameters`` input) in place of its values."""
    plan, training = parse_custom_config(fn_args.custom_config)
    return plan, hyperparameters.apply(training, fn_args.hyperparameters)


def run_fn(fn_args):
    _, training = training_of(fn_args)
    distribute.train(fn_args, training, train_task, entry='components.trainer.train_task')


def distributed_inputs(strategy, fn_args, plan, tft_output, training, raw, transform, eval_ds):
    """(training input, validation input, validation steps) for ``model.fit`` under a
    strategy. The training input is a ``DatasetCreator``: each input pipeline (worker)
    reads its own shard, in per-replica batches of ``batch_size``, so a step's global
    batch is ``batch_size`` times the replicas in sync. Validation: under multi_worker each
    worker validates its share of the eval batches (the metrics are all-reduced); a
    parameter-server cluster's workers read the same batches, repeated, for as many steps
    as there are batches."""
    global_batch = training.batch_size * strategy.num_replicas_in_sync

    def dataset_fn(context: tf.distribute.InputContext):
        return make_dataset(fn_args, fn_args.train_files, plan, tft_output,
                            context.get_per_replica_batch_size(global_batch), training.seed,
                            raw=raw, transform=transform,
                            shard=(context.num_input_pipelines, context.input_pipeline_id))

    train_input = tf.keras.utils.experimental.DatasetCreator(dataset_fn)
    if isinstance(strategy, tf.distribute.ParameterServerStrategy):
        steps = int(eval_ds.reduce(0, lambda n, _: n + 1))
        return train_input, eval_ds.repeat(), steps
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return train_input, eval_ds.with_options(options), None


def train_task(fn_args, task: Optional[distribute.Task] = None):
    """Trains (and, on the chief, exports) in this process: the whole training, or this
    process's task of a cluster (``components/distribute.py``)."""
    plan, training = training_of(fn_args)
    if task is not None and training.distribute == distribute.PARAMETER_SERVER and not task.is_chief:
        return distribute.serve(task)
    fn_args = distribute.task_dirs(fn_args, task)
    # First: a multi-worker strategy configures TensorFlow's runtime, before anything runs.
    strategy = distribute.make_strategy(training, task)
    tf.keras.utils.set_random_seed(training.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    # Raw examples when Transform did not materialize (pipeline.materialize_transform).
    raw = not fn_args.custom_config.get('materialized', True)
    # The TFT graph, traced once for both inputs and the export (signatures.transform_function).
    # The validation input first: its batches' size is unknown, so the training input's
    # (fixed-size, as it repeats forever) reuse its trace.
    transform = transform_function(tft_output)
    eval_ds = validation_dataset(fn_args, plan, tft_output, training, raw, transform)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    training = distribute.scaled(training, replicas)
    record = training_record.describe('keras', training, fn_args.hyperparameters, task, replicas)
    # validate_every_pass: the training rows, counted up to one stretch of steps_per_epoch
    # global batches (fewer are validated after every pass: ``schedule``).
    rows = count_records(fn_args.train_files,
                         training.steps_per_epoch * training.batch_size * replicas) \
        if getattr(training, 'validate_every_pass', False) else None
    record['validation_every_steps'], record['early_stopping_patience'] = schedule(
        fn_args.train_steps, training, rows, replicas)
    logging.info('Training with %s', record)
    if strategy is None:
        train_ds, validation_steps = make_dataset(
            fn_args, fn_args.train_files, plan, tft_output, training.batch_size, training.seed,
            raw=raw, transform=transform), None
    else:
        train_ds, eval_ds, validation_steps = distributed_inputs(
            strategy, fn_args, plan, tft_output, training, raw, transform, eval_ds)
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = build_keras_model(plan, tft_output, training)
    train_keras(model, train_ds, eval_ds, fn_args.train_steps, training,
                log_dir=os.path.join(fn_args.model_run_dir, 'tensorboard'),
                callbacks=distribute.heartbeat_callbacks(training), validation_steps=validation_steps,
                class_weight=class_weights(plan, tft_output), rows=rows, replicas=replicas)
    if not fn_args.serving_model_dir:  # a task of a cluster other than the chief
        return
    if strategy is not None:
        # The trained weights in a model of no strategy: the export is the same as
        # without distribution (and needs no collective or parameter server).
        trained, model = model, build_keras_model(plan, tft_output, training)
        model.set_weights(trained.get_weights())
    export_serving_model(model, tft_output, plan, fn_args.serving_model_dir,
                         transform=transform)
    training_record.write(fn_args.serving_model_dir, record)
