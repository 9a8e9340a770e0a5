"""The Tuner's module: ``tuner_fn``, a KerasTuner search over the generic model.

Generic like the trainer: every trial builds ``components.model.build_keras_model`` from the
feature plan with the trial's hyperparameters in place of the ``training`` section's
(``components.hyperparameters``), reads the data as the Keras trainer does
(``components.trainer.make_dataset``: raw examples through the TFT graph, or Transform's
materialized ones) and trains with the trainer's own ``train_keras`` (its early stopping on
the eval loss, ``steps_per_epoch`` steps between validations). So the winner's values mean
the same thing to the Trainer, which then builds the same model with them.

``fn_args.custom_config``: ``features`` (the plan), ``training`` (only the settings the
trials read and do not search, ``hyperparameters.SEARCH_READS``: seed, validation batch,
steps per epoch, early stopping, trainer kind), ``tuning`` (the ``tuning`` section:
algorithm, trials, space, objective, max_minutes), ``materialized``.

The wall-time cap (``tuning.max_minutes``) is enforced, not hoped for: once it passes, the
oracle is told it has run its last trial (no new one starts), and the running trial stops at
its next training step (``Deadline``), then validates once and reports what it reached.
"""
import time
from typing import Any, Dict

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.tuner.component import TunerFnResult

from components import hyperparameters
from components.model import build_keras_model
from components.signatures import transform_function
from components.trainer import make_dataset, parse_custom_config, train_keras, validation_dataset

PROJECT = 'search'


class Deadline(tf.keras.callbacks.Callback):
    """Stops training at the first step that ends after ``deadline`` (a ``time.time()``)."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch, logs=None):
        if time.time() >= self.deadline:
            self.model.stop_training = True


class TimedSearch:
    """A KerasTuner tuner that keeps to a wall-time cap and times every trial.

    After the search, ``trial_log`` holds ``{trial_id: {'seconds', 'cut'}}`` and
    ``search_log`` the search's length and why it stopped ('trials': the budget of
    trials ran; 'time': the cap; 'space': the algorithm had nothing left to try).
    """

    def limit(self, max_minutes: float, algorithm: str, max_trials: int) -> 'TimedSearch':
        self.max_seconds, self.algorithm, self.max_trials = max_minutes * 60, algorithm, max_trials
        # Hyperband's oracle has no trial budget of its own: this one stops it.
        self.oracle.max_trials = max_trials
        return self

    def on_search_begin(self):
        super().on_search_begin()
        self.started = time.time()
        self.deadline = self.started + self.max_seconds
        self.trial_log: Dict[str, Dict[str, Any]] = {}
        self.stopped_by = ''

    def pre_create_trial(self):
        super().pre_create_trial()
        if time.time() >= self.deadline and not self.stopped_by:
            self.stopped_by = 'time'
            self.oracle.max_trials = max(1, len(self.oracle.trials))  # the oracle says STOPPED

    def run_trial(self, trial, *args, **kwargs):
        kwargs['callbacks'] = list(kwargs.get('callbacks', ())) + [Deadline(self.deadline)]
        return super().run_trial(trial, *args, **kwargs)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._trial_started = time.time()

    def on_trial_end(self, trial):
        now = time.time()
        self.trial_log[trial.trial_id] = {'seconds': round(now - self._trial_started, 1),
                                          'cut': now >= self.deadline}
        super().on_trial_end(trial)

    def on_search_end(self):
        super().on_search_end()
        if not self.stopped_by:
            self.stopped_by = 'trials' if len(self.oracle.trials) >= self.max_trials else 'space'
        self.search_log = {'algorithm': self.algorithm, 'max_trials': self.max_trials,
                           'max_minutes': self.max_seconds / 60, 'stopped_by': self.stopped_by,
                           'seconds': round(time.time() - self.started, 1)}


class RandomSearch(TimedSearch, keras_tuner.RandomSearch):
    pass


class BayesianOptimization(TimedSearch, keras_tuner.BayesianOptimization):
    pass


class Hyperband(TimedSearch, keras_tuner.Hyperband):
    pass


class WideAndDeep(keras_tuner.HyperModel):
    """The generic model with a trial's hyperparameters, trained as the Keras trainer does."""

    def __init__(self, fn_args, plan, tft_output, training, raw: bool):
        super().__init__()
        self.fn_args, self.plan, self.tft_output, self.training = fn_args, plan, tft_output, training
        self.raw = raw
        # Traced once for every trial's input (signatures.transform_function).
        self.transform = transform_function(tft_output)
        # The same eval rows for every trial, whatever its batch size.
        self.eval_ds = validation_dataset(fn_args, plan, tft_output, training, raw, self.transform)
        self._train = {}

    def trial_training(self, hp):
        return hyperparameters.apply(self.training, {'values': hp.values})

    def build(self, hp):
        return build_keras_model(self.plan, self.tft_output, self.trial_training(hp))

    def train_dataset(self, batch_size: int):
        if batch_size not in self._train:
            self._train[batch_size] = make_dataset(
                self.fn_args, self.fn_args.train_files, self.plan, self.tft_output, batch_size,
                self.training.seed, raw=self.raw, transform=self.transform)
        return self._train[batch_size]

    def fit(self, hp, model, *args, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        # Hyperband passes the trial's epochs; the other algorithms train the full budget.
        training = self.trial_training(hp)
        return train_keras(model, self.train_dataset(training.batch_size), self.eval_ds,
                           self.fn_args.train_steps, training, callbacks=callbacks,
                           epochs=epochs, initial_epoch=initial_epoch)


def make_tuner(hypermodel, tuning: Dict[str, Any], seed: int, directory: str,
               epochs: int) -> TimedSearch:
    objective = keras_tuner.Objective(tuning['objective'],
                                      hyperparameters.direction(tuning['objective']))
    common = dict(hypermodel=hypermodel, objective=objective, seed=seed,
                  hyperparameters=hyperparameters.search_space(tuning['space']),
                  allow_new_entries=False, tune_new_entries=False,
                  directory=directory, project_name=PROJECT, overwrite=True)
    trials, algorithm = tuning['trials'], tuning['algorithm']
    if algorithm == 'hyperband':
        # Successive halving over the Trainer's epochs; ``trials`` caps the trials run.
        tuner = Hyperband(max_epochs=max(2, epochs), factor=3, **common)
    elif algorithm == 'bayesian':
        # A few random trials first, then the Gaussian process proposes the rest.
        tuner = BayesianOptimization(max_trials=trials, num_initial_points=max(1, trials // 3),
                                     **common)
    else:
        tuner = RandomSearch(max_trials=trials, **common)
    return tuner.limit(tuning['max_minutes'], algorithm, trials)


def tuner_fn(fn_args) -> TunerFnResult:
    plan, training = parse_custom_config(fn_args.custom_config)
    tuning = fn_args.custom_config['tuning']
    tf.keras.utils.set_random_seed(training.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    raw = not fn_args.custom_config.get('materialized', True)
    hypermodel = WideAndDeep(fn_args, plan, tft_output, training, raw)
    tuner = make_tuner(hypermodel, tuning, training.seed, fn_args.working_dir,
                       hyperparameters.epochs(fn_args.train_steps, training.steps_per_epoch))
    return TunerFnResult(tuner=tuner, fit_kwargs={})
