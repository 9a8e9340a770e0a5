"""Estimator trainer module: the Keras model of ``components.model``, trained as a tf.estimator.

For teams that run tf.estimator in production (checkpoints, ``RunConfig``, distribution
settings, ``train_and_evaluate``). What is the same as the Keras trainer
(``components/trainer.py``), on purpose:

- the model: ``build_keras_model`` from the same feature plan and the same TFT graph,
  converted with ``tf.keras.estimator.model_to_estimator``;
- the data: the input_fns call the Keras trainer's ``make_dataset``;
- the export: after training, a fresh Keras model gets the estimator's latest checkpoint and
  goes through ``components.signatures.export_serving_model``. The SavedModel has the same
  signatures and outputs, so the Evaluator compares it with a Keras-trained baseline (and
  the reverse) and the Pusher pushes it unchanged. Only its metadata tells the two apart:
  ``assets/trainer.txt`` holds ``estimator`` (``keras`` for the Keras trainer).

Estimator-only settings (``training`` section of the config):

- checkpoints and summaries go to the model run artifact (``fn_args.model_run_dir``), so
  TensorBoard pointed at it shows the training loss and the eval metrics (``eval/``);
  ``checkpoint_steps``, ``keep_checkpoint_max``, ``save_summary_steps`` and ``seed`` go to
  ``tf.estimator.RunConfig``; the eval split is evaluated after each checkpoint.
- ``distribute: mirrored`` sets ``train_distribute`` to ``tf.distribute.MirroredStrategy``
  (all local GPUs; with one device it runs single-device). The cluster strategies
  (``multi_worker``, ``parameter_server``) are the Keras trainer's; the config check refuses
  them here (docs/distributed.md).
- Tuned hyperparameters (the Trainer's ``hyperparameters`` input, docs/tuning.md) replace
  the ``training`` section's: the tuned Keras model goes through ``model_to_estimator``.
  The export records what it was trained with (``components/training_record.py``).
- ``warm_start: true`` starts from the weights of the last blessed model (the Trainer's
  ``base_model`` input, see ``pipeline/pipeline.py``), whichever trainer made it.

Why checkpoints are matched by structure, not by name: ``model_to_estimator`` writes
object-based checkpoints (``layer_with_weights-3/kernel``...), the same layout a Keras model
and its SavedModel's ``variables/`` use. Variable *names* (``dense_4/kernel``) depend on how
many Keras models the process built before, so name-based ``tf.estimator.WarmStartSettings``
would silently skip variables. Loading with ``model.load_weights`` matches layers by
position and refuses a checkpoint whose shapes do not fit. A warm start loads the base
model's weights into the Keras model before ``model_to_estimator``, which writes them as the
estimator's first checkpoint (``<model_run>/keras/``) and warm-starts from it.

Not carried over from the Keras trainer: early stopping (``early_stopping_patience``) and
dropout seeds being fixed across the estimator's graph rebuilds.
"""
import functools
import os

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from components import training_record
from components.model import build_keras_model
from components.signatures import export_serving_model
from components.trainer import make_dataset, training_of

TRAINER_NAME = 'estimator'


def run_config(training, model_dir: str) -> tf.estimator.RunConfig:
    strategy = tf.distribute.MirroredStrategy() if training.distribute == 'mirrored' else None
    return tf.estimator.RunConfig(
        model_dir=model_dir,
        tf_random_seed=training.seed,
        save_checkpoints_steps=training.checkpoint_steps,
        keep_checkpoint_max=training.keep_checkpoint_max,
        save_summary_steps=training.save_summary_steps,
        log_step_count_steps=training.save_summary_steps,
        train_distribute=strategy)


def load_weights(model: tf.keras.Model, checkpoint: str, what: str) -> tf.keras.Model:
    """Loads the layer weights of an object-based checkpoint (an estimator's, or a
    SavedModel's ``variables``) into ``model``, and refuses one that does not fit.

    The optimizer's state is left out: the estimator trains with Keras's legacy optimizer
    (``model_to_estimator`` converts it), which does not restore into a v2 optimizer. An
    uncompiled view of the same layers has no optimizer to restore into.
    """
    layers_only = tf.keras.Model(model.inputs, model.outputs)
    try:
        layers_only.load_weights(checkpoint).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ValueError(f'{what} {checkpoint}: its weights do not fit the model built from '
                         f'the current feature plan and training settings ({e})') from e
    return model


def base_model_checkpoint(base_model: str) -> str:
    """The weights of a pushed SavedModel (``base_model`` is its directory)."""
    path = os.path.join(base_model, 'variables', 'variables')
    if not tf.io.gfile.exists(path + '.index'):
        raise ValueError(f'training.warm_start: the base model {base_model} has no '
                         f'variables/variables checkpoint to start from')
    return path


def make_estimator(plan, tft_output, training, model_dir: str, warm_start_from: str = ''):
    model = build_keras_model(plan, tft_output, training)
    if warm_start_from:
        load_weights(model, base_model_checkpoint(warm_start_from),
                     'training.warm_start: the base model')
        logging.info('Warm start from %s', warm_start_from)
    estimator = tf.keras.estimator.model_to_estimator(
        keras_model=model, config=run_config(training, model_dir))
    # The same estimator, but keeping ``keep_checkpoint_max`` checkpoints, and warm-started
    # from the first checkpoint model_to_estimator wrote, as it does itself.
    return tf.estimator.Estimator(
        keep_checkpoints(estimator.model_fn, training.keep_checkpoint_max),
        config=estimator.config,
        warm_start_from=os.path.join(model_dir, 'keras', 'keras_model.ckpt'))


def keep_checkpoints(model_fn, keep: int):
    """``model_to_estimator``'s model_fn brings a Saver of its own (for object-based
    checkpoints), so the Estimator does not make one from ``RunConfig.keep_checkpoint_max``
    and TF's default of 5 would apply. Set it on that Saver."""
    def fn(features, labels, mode, config):
        spec = model_fn(features, labels, mode, config)
        if spec.scaffold is not None and spec.scaffold.saver is not None:
            spec.scaffold.saver.saver_def.max_to_keep = keep
        return spec
    return fn


def train_estimator(estimator, train_input_fn, eval_input_fn, train_steps: int,
                    eval_steps: int):
    """Trains to ``train_steps``, evaluating ``eval_steps`` batches at every checkpoint."""
    return tf.estimator.train_and_evaluate(
        estimator,
        tf.estimator.TrainSpec(train_input_fn, max_steps=train_steps),
        tf.estimator.EvalSpec(eval_input_fn, steps=eval_steps, start_delay_secs=0,
                              throttle_secs=0))


def keras_model_from_checkpoint(plan, tft_output, training, model_dir: str) -> tf.keras.Model:
    """A fresh Keras model holding the estimator's latest checkpoint."""
    checkpoint = tf.train.latest_checkpoint(model_dir)
    if not checkpoint:
        raise ValueError(f'{model_dir}: the estimator wrote no checkpoint')
    return load_weights(build_keras_model(plan, tft_output, training), checkpoint,
                        'the estimator checkpoint')


def run_fn(fn_args):
    plan, training = training_of(fn_args)
    tf.keras.utils.set_random_seed(training.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    input_fn = functools.partial(make_dataset, fn_args, plan=plan, tft_output=tft_output,
                                 batch_size=training.batch_size, seed=training.seed)
    warm_start_from = fn_args.base_model if training.warm_start else ''
    if training.warm_start and not warm_start_from:
        logging.info('training.warm_start: no blessed model yet, starting from scratch')
    estimator = make_estimator(plan, tft_output, training, fn_args.model_run_dir,
                               warm_start_from=warm_start_from)
    train_estimator(estimator,
                    train_input_fn=lambda: input_fn(files=fn_args.train_files),
                    eval_input_fn=lambda: input_fn(files=fn_args.eval_files),
                    train_steps=fn_args.train_steps, eval_steps=fn_args.eval_steps)
    model = keras_model_from_checkpoint(plan, tft_output, training, fn_args.model_run_dir)
    export_serving_model(model, tft_output, plan, fn_args.serving_model_dir,
                         trainer=TRAINER_NAME)
    strategy = estimator.config.train_distribute
    training_record.write(fn_args.serving_model_dir, training_record.describe(
        TRAINER_NAME, training, fn_args.hyperparameters, None,
        strategy.num_replicas_in_sync if strategy else 1))
