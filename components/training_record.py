"""What a model was trained with, kept inside its export: ``assets.extra/training.json``.

Written by both trainers beside the SavedModel (TF Serving ignores ``assets.extra``, and
the Pusher copies it with the model): the values the model was built and trained with
(tuned or configured), where they came from, and how the training was distributed. The
run summary reads it back (``pipeline/report.py``).
"""
import json
import os
from typing import Any, Dict, Mapping, Optional

RECORD = os.path.join('assets.extra', 'training.json')


def describe(trainer: str, training, tuned: Optional[Mapping[str, Any]], task,
             replicas: int) -> Dict[str, Any]:
    """The record of a training: ``training`` as built and trained (tuned values in place,
    the learning rate scaled if asked), ``tuned`` (the Trainer's ``hyperparameters``
    input, or None), ``task`` (its ``components.distribute.Task``, or None) and the
    replicas in sync (a step's global batch is the per-replica batch times these)."""
    from components import hyperparameters
    return {
        'trainer': trainer,
        'hyperparameters': {name: getattr(training, name) for name in hyperparameters.NAMES},
        'hyperparameters_from': 'tuning' if tuned else 'config',
        'tuned': hyperparameters.values_of(tuned),
        'seed': training.seed,
        'distribute': training.distribute,
        'workers': task.workers if task else 1,
        'replicas_in_sync': replicas,
        'global_batch_size': training.batch_size * replicas,
        'scale_lr': training.scale_lr,
    }


def write(serving_model_dir: str, record: Dict[str, Any]) -> None:
    import tensorflow as tf
    path = os.path.join(serving_model_dir, RECORD)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, 'w') as f:
        f.write(json.dumps(record, indent=1, sort_keys=True))


def read(serving_model_dir: str) -> Dict[str, Any]:
    """The record of an exported model ({} for a model that has none)."""
    import tensorflow as tf
    path = os.path.join(serving_model_dir, RECORD)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())
