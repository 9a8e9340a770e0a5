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
- ``distribute`` sets ``RunConfig.train_distribute`` (TensorFlow 2.15's Estimator
  distribution): ``mirrored``, ``tf.distribute.MirroredStrategy`` (all local GPUs; with one
  device it runs single-device); ``multi_worker``, ``tf.distribute.MultiWorkerMirroredStrategy``
  (synchronous, between-graph: every task takes every step); ``parameter_server``,
  ``tf.compat.v1.distribute.experimental.ParameterServerStrategy`` (the Estimator's is the
  TF1 one: the chief and every worker train asynchronously, the variables live on the
  parameter servers). Each task of the cluster runs ``train_task``: ``train_and_evaluate``
  under the ``TF_CONFIG`` of its process, on the cluster ``components/distribute.py`` starts
  and supervises (or the one that sets ``TF_CONFIG``); a parameter server only serves. Each
  training task reads its own shard of the input (the ``input_context`` the Estimator
  passes). Only the chief exports, from its checkpoint, as without distribution. With no
  ``evaluator`` task in the cluster, the eval split is not evaluated during a cluster's
  training (TensorBoard has no ``eval/``); the Evaluator evaluates the export as always.
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
import os
import time
import types
from typing import Optional

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from components import distribute, training_record
from components.model import build_keras_model
from components.signatures import export_serving_model
from components.trainer import make_dataset, training_of

TRAINER_NAME = 'estimator'


def train_strategy(training, task):
    """``RunConfig.train_distribute``: TensorFlow 2.15's Estimator distribution. A cluster
    strategy reads this process's place from ``TF_CONFIG`` (set by the local cluster, or
    by the cluster running the job), as ``RunConfig`` does."""
    if training.distribute == distribute.PARAMETER_SERVER:
        # The Estimator's is the TF1 (between-graph) parameter-server strategy: every
        # worker, the chief included, runs the training graph; the variables live on
        # the parameter servers.
        return tf.compat.v1.distribute.experimental.ParameterServerStrategy(task.resolver())
    return distribute.make_strategy(training, task)


def run_config(training, model_dir: str, strategy=None) -> tf.estimator.RunConfig:
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


def make_estimator(plan, tft_output, training, model_dir: str, warm_start_from: str = '',
                   strategy=None):
    model = build_keras_model(plan, tft_output, training)
    if warm_start_from:
        load_weights(model, base_model_checkpoint(warm_start_from),
                     'training.warm_start: the base model')
        logging.info('Warm start from %s', warm_start_from)
    estimator = tf.keras.estimator.model_to_estimator(
        keras_model=model, config=run_config(training, model_dir, strategy))
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
                    eval_steps: int, hooks=()):
    """Trains to ``train_steps``, evaluating ``eval_steps`` batches at every checkpoint
    (on a cluster, in every task: the Estimator's distribute coordinator trains on the
    chief and the workers and evaluates only in an ``evaluator`` task, if there is one)."""
    return tf.estimator.train_and_evaluate(
        estimator,
        tf.estimator.TrainSpec(train_input_fn, max_steps=train_steps, hooks=list(hooks)),
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
    _, training = training_of(fn_args)
    # Under parameter_server the Estimator's workers train and finish by themselves.
    distribute.train(fn_args, training, train_task, workers_serve=False,
                     entry='components.estimator_trainer.train_task')


def train_task(fn_args, task: Optional[distribute.Task] = None):
    """Trains (and, on the chief, exports) in this process: the whole training, or this
    process's task of a cluster (``components/distribute.py``)."""
    plan, training = training_of(fn_args)
    if task is not None and task.type == distribute.PS:
        return distribute.serve(task)   # what train_and_evaluate does in a ps task
    hooks = distribute.heartbeat_hooks() + ([TaskSteps(task)] if task else [])
    if task is not None and distribute.PS in task.cluster and distribute.HEARTBEAT_ENV in os.environ:
        # A local cluster (its supervisor's heartbeat is set): the marks go to the chief's
        # model run, which every task of this machine sees.
        hooks.append(StartTogether(task, os.path.join(fn_args.model_run_dir,
                                                      distribute.CLUSTER_DIR)))
    fn_args = distribute.task_dirs(fn_args, task)
    # First: a multi-worker strategy configures TensorFlow's runtime, before anything runs.
    strategy = train_strategy(training, task)
    tf.keras.utils.set_random_seed(training.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)

    def input_fn(files, input_context=None):
        # On a cluster the Estimator passes each worker's input context: its own shard,
        # in per-replica batches (a step's global batch: batch_size x replicas in sync).
        shard = (input_context and (input_context.num_input_pipelines,
                                    input_context.input_pipeline_id))
        if task is not None:
            print(f'{task.name}: reads input shard {shard[1] + 1} of {shard[0]}'
                  if shard else f'{task.name}: reads all the input', flush=True)
        return make_dataset(fn_args, files, plan=plan, tft_output=tft_output,
                            batch_size=training.batch_size, seed=training.seed,
                            shard=shard if shard and shard[0] > 1 else None)

    warm_start_from = fn_args.base_model if training.warm_start else ''
    if training.warm_start and not warm_start_from:
        logging.info('training.warm_start: no blessed model yet, starting from scratch')
    estimator = make_estimator(plan, tft_output, training, fn_args.model_run_dir,
                               warm_start_from=warm_start_from, strategy=strategy)
    train_estimator(estimator,
                    train_input_fn=lambda input_context=None: input_fn(
                        fn_args.train_files, input_context),
                    eval_input_fn=lambda: input_fn(fn_args.eval_files),
                    train_steps=fn_args.train_steps, eval_steps=fn_args.eval_steps,
                    hooks=hooks)
    if not fn_args.serving_model_dir:  # a task of a cluster other than the chief
        return
    model = keras_model_from_checkpoint(plan, tft_output, training, fn_args.model_run_dir)
    export_serving_model(model, tft_output, plan, fn_args.serving_model_dir,
                         trainer=TRAINER_NAME)
    training_record.write(fn_args.serving_model_dir, training_record.describe(
        TRAINER_NAME, training, fn_args.hyperparameters, task and estimator_workers(task),
        strategy.num_replicas_in_sync if strategy else 1))


class TaskSteps(tf.estimator.SessionRunHook):
    """Prints, in a task's log, how many training steps the task took itself and the
    global step it ended at (each worker's share of an asynchronous training)."""

    def __init__(self, task: distribute.Task):
        self.task, self.steps = task, 0

    def begin(self):
        self.global_step = tf.compat.v1.train.get_global_step()

    def after_run(self, run_context, run_values):
        self.steps += 1

    def end(self, session):
        print(f'{self.task.name}: trained {self.steps} step(s) of its own, to global step '
              f'{session.run(self.global_step)}', flush=True)


class StartTogether(tf.estimator.SessionRunHook):
    """Under ``parameter_server`` on a local cluster, the tasks that train take their first
    step together. Without it a worker that asks for its session before the chief has
    initialized the variables sleeps 30 s (TF1's ``SessionManager`` recovery wait), and a
    short training is the chief's alone. The chief marks, once its session has initialized
    the variables, that it is up, then waits for every worker's session; a worker waits for
    the chief's mark before asking for its session. Each wait gives up after ``seconds``
    (training goes on, as TensorFlow's own waits would have it)."""

    def __init__(self, task: distribute.Task, directory: str, seconds: float = 60.0):
        self.task, self.directory, self.seconds = task, directory, seconds

    def _mark(self, name: str) -> str:
        return os.path.join(self.directory, f'{name}.started')

    def _wait_for(self, names) -> None:
        deadline = time.time() + self.seconds
        while (not all(os.path.exists(self._mark(n)) for n in names)
               and time.time() < deadline):
            time.sleep(0.05)

    def _trainers(self):
        return [distribute.Task(self.task.cluster, kind, i)
                for kind in (distribute.CHIEF, distribute.WORKER)
                for i in range(len(self.task.cluster.get(kind, ())))]

    def begin(self):
        if not self.task.is_chief:
            self._wait_for([t.name for t in self._trainers() if t.is_chief])

    def after_create_session(self, session, coord):
        open(self._mark(self.task.name), 'w').close()
        if self.task.is_chief:
            self._wait_for([t.name for t in self._trainers() if not t.is_chief])


def estimator_workers(task: distribute.Task):
    """The cluster as the training record counts it: the Estimator's parameter-server
    chief trains too (Keras's only coordinates)."""
    if distribute.PS not in task.cluster:
        return task
    return types.SimpleNamespace(workers=task.workers + len(task.cluster.get(distribute.CHIEF, ())))
