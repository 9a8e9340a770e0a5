"""The tuned hyperparameters: the search space, the objective, and training with the winner.

One place for the names the Tuner searches and the Trainer applies, so that both build the
same model (``components/model.py``'s builder takes them as ``training`` fields):

``hidden_units``   width of the first deep layer (each next is half)   choices
``hidden_layers``  depth of the deep part                             integer range
``dropout``        dropout after each deep layer                      range
``learning_rate``  Adam's learning rate                               log-uniform range
``batch_size``     examples per replica and step                      choices

A tuned value wins over the ``training`` section's; a name the search did not cover keeps
the configured value. Imports neither TensorFlow nor KerasTuner at module level: the config
check reads the names and objectives here, before anything heavy loads, and KerasTuner is
imported only by :func:`search_space`, when tuning is on.
"""
import dataclasses
import json
import math
import types
from typing import Any, Dict, Mapping, Optional, Tuple

# (name, is an integer) of every searched hyperparameter, in the order the summary shows.
SEARCHED = (('hidden_units', True), ('hidden_layers', True), ('dropout', False),
            ('learning_rate', False), ('batch_size', True))
NAMES = tuple(name for name, _ in SEARCHED)
INTEGER = {name for name, integer in SEARCHED if integer}

# The ``training`` settings a search reads besides the searched ones (every searched name is
# always a hyperparameter of the trial, so its configured value is never read): the seed, the
# validation's batches (``batch_size`` rows each, as the Trainer's), the steps between
# validations and early stopping; and the trainer kind, whose model the search tunes. The
# Tuner gets only these (``pipeline/pipeline.py``), so they and its other inputs (the data,
# the schema, the transform graph, the ``tuning`` section, the trial and eval steps) are its
# cache key: editing another training setting (the Trainer's steps, ``distribute``, the
# estimator's checkpoints) trains again without searching again.
SEARCH_READS = ('trainer', 'seed', 'batch_size', 'steps_per_epoch', 'early_stopping_patience')

# What the model's compile() reports for each task (components/model.py), besides 'loss'.
# The objective is one of these on the eval split: 'val_' + name.
MODEL_METRICS = {'binary': ('auc', 'binary_accuracy'),
                 'multiclass': ('sparse_categorical_accuracy',),
                 'regression': ('mae',)}
MINIMIZED = ('loss', 'mae')
ALGORITHMS = ('random', 'bayesian', 'hyperband')
DEFAULT_OBJECTIVE = 'val_loss'


def objectives(task: str) -> Tuple[str, ...]:
    return tuple('val_' + m for m in ('loss',) + MODEL_METRICS[task])


def direction(objective: str) -> str:
    """'min' for a loss or an error, 'max' for the rest (AUC, accuracy)."""
    return 'min' if objective[len('val_'):] in MINIMIZED else 'max'


def check_space(space, key: str = 'tuning.space') -> None:
    """Raises ``ValueError`` naming ``<key>.<name>`` for a parameter that cannot be searched.

    ``space`` has one entry per name, each with ``choices`` or ``min``/``max`` (and
    ``log``), as ``pipeline.config.SearchParam``."""
    bounds = {'hidden_units': (1, None), 'hidden_layers': (1, None), 'batch_size': (1, None),
              'dropout': (0.0, 1.0), 'learning_rate': (0.0, 10.0)}
    for name in NAMES:
        p = getattr(space, name)
        where = f'{key}.{name}'
        if bool(p.choices) == (p.min is not None or p.max is not None):
            raise ValueError(f'{where}: expected either choices: [...] or min: and max:, '
                             f'got {_describe(p)}')
        if not p.choices and (p.min is None or p.max is None):
            raise ValueError(f'{where}: a range needs both min and max, got {_describe(p)}')
        values = list(p.choices) or [p.min, p.max]
        if name in INTEGER and any(v != int(v) for v in values):
            raise ValueError(f'{where}: expected whole numbers, got {_describe(p)}')
        low, high = bounds[name]
        for v in values:
            if v < low or (high is not None and v >= high) or (name in INTEGER and v < 1) or (
                    name == 'learning_rate' and v <= 0):
                raise ValueError(f'{where}: {v:g} is out of range (expected '
                                 + ('a positive whole number' if name in INTEGER else
                                    f'a number in {"(" if name == "learning_rate" else "["}'
                                    f'{low:g}, {high:g})') + ')')
        if not p.choices and p.min > p.max:
            raise ValueError(f'{where}: min {p.min:g} is above max {p.max:g}')
        if p.log and (p.choices or p.min <= 0):
            raise ValueError(f'{where}: log sampling needs a range with min > 0')


def _describe(p) -> str:
    return json.dumps({k: v for k, v in dataclasses.asdict(p).items() if v not in ((), None, False)})


def search_space(space: Mapping[str, Mapping[str, Any]]):
    """The KerasTuner ``HyperParameters`` of ``space`` (``dataclasses.asdict`` of the
    config's ``tuning.space``). A range of one value, or one choice, is fixed."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for name in NAMES:
        p = space[name]
        cast = int if name in INTEGER else float
        if p['choices']:
            choices = sorted({cast(v) for v in p['choices']})
            if len(choices) == 1:
                hp.Fixed(name, choices[0])
            else:
                hp.Choice(name, choices)
        elif p['min'] == p['max']:
            hp.Fixed(name, cast(p['min']))
        elif name in INTEGER:
            hp.Int(name, int(p['min']), int(p['max']), sampling='log' if p['log'] else 'linear')
        else:
            hp.Float(name, float(p['min']), float(p['max']),
                     sampling='log' if p['log'] else 'linear')
    return hp


def values_of(hyperparameters: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The searched values in a Tuner's ``best_hyperparameters`` (KerasTuner's
    ``HyperParameters.get_config()``, as TFX hands it to the Trainer), or in its ``values``.
    KerasTuner's own entries (``tuner/epochs``...) and unknown names are left out."""
    if not hyperparameters:
        return {}
    values = hyperparameters.get('values', hyperparameters)
    return {name: (int(values[name]) if name in INTEGER else float(values[name]))
            for name in NAMES if name in values}


def apply(training, hyperparameters: Optional[Mapping[str, Any]]):
    """``training`` (the training settings as attributes, ``types.SimpleNamespace``) with
    the tuned values in place of its own."""
    values = values_of(hyperparameters)
    return types.SimpleNamespace(**{**vars(training), **values}) if values else training


def epochs(train_steps: int, steps_per_epoch: int) -> int:
    """Keras epochs of ``train_steps`` steps, one validation every ``steps_per_epoch``."""
    return math.ceil(train_steps / min(steps_per_epoch, train_steps))
