"""The report's Training section: loss and metric curves from the TensorBoard event files,
the early-stopping point, the hyperparameters, and the model's layers with their parameters.

Curves: every scalar in the event files under the Trainer's ``model_run`` artifact, read
with TensorBoard's own event-file loader. Keras writes ``epoch_<metric>`` per epoch in
``train/`` and ``validation/`` (its step is the epoch, converted here to training steps
with ``steps_per_epoch``); the Estimator writes its scalars per global step. The early
stopping point is the validation loss's minimum, the weights Keras restores.

Layers: the SavedModel's ``keras_metadata.pb`` (class, name, settings of every layer) and
the shapes of its variables (``variables/``), so nothing is rebuilt or loaded.
"""
import glob
import json
import math
import os
from typing import Any, Dict, List, Optional

# Settings worth a column in the layers table, where a layer has them.
LAYER_SETTINGS = ('units', 'activation', 'num_tokens', 'output_mode', 'input_dim',
                  'output_dim', 'rate', 'axis', 'target_shape')


def _scalar(value) -> Optional[float]:
    if value.HasField('tensor'):
        t = value.tensor
        if t.float_val:
            return float(t.float_val[0])
        if t.double_val:
            return float(t.double_val[0])
        if t.tensor_content:
            import numpy as np
            dtype = {1: np.float32, 2: np.float64}.get(t.dtype)
            return float(np.frombuffer(t.tensor_content, dtype=dtype)[0]) if dtype else None
        return None
    if value.HasField('simple_value'):
        return float(value.simple_value)
    return None


def read_curves(model_run_uri: str, steps_per_epoch: int) -> List[Dict[str, Any]]:
    """[{metric, split, step, value}] from every event file under ``model_run_uri``."""
    from tensorboard.backend.event_processing import event_file_loader

    points = []
    files = sorted(glob.glob(os.path.join(model_run_uri, '**', 'events.out.tfevents.*'),
                             recursive=True))
    for path in files:
        split = os.path.basename(os.path.dirname(path))
        if split in ('tensorboard', os.path.basename(model_run_uri)):
            split = 'train'
        elif split.startswith('eval'):
            split = 'validation'
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                tag = value.tag
                if value.metadata.plugin_data.plugin_name not in ('scalars', ''):
                    continue
                number = _scalar(value)
                if number is None or not math.isfinite(number):
                    continue
                if tag.startswith('epoch_'):
                    metric, step = tag[len('epoch_'):], (event.step + 1) * steps_per_epoch
                elif tag.startswith('evaluation_') and tag.endswith('_vs_iterations'):
                    continue  # Keras's per-iteration copy of the validation's epoch_ values
                else:
                    metric, step = tag.split('/')[-1], event.step
                points.append({'metric': metric, 'split': split, 'step': int(step),
                               'value': number})
    return points


def early_stopping(points: List[Dict[str, Any]], planned_steps: int) -> Optional[Dict[str, Any]]:
    """The step with the lowest validation loss, and the step training stopped at."""
    loss = [p for p in points if p['metric'] == 'loss' and p['split'] == 'validation']
    if not loss:
        return None
    best = min(loss, key=lambda p: p['value'])
    last = max(p['step'] for p in loss)
    return {'best_step': best['step'], 'best_loss': best['value'], 'last_step': last,
            'stopped_early': bool(planned_steps) and last < planned_steps}


def _plain(value: Any) -> Any:
    """Keras's JSON for a tuple ({'class_name': '__tuple__', 'items': [...]}) as a tuple."""
    if isinstance(value, dict) and value.get('class_name') == '__tuple__':
        return tuple(_plain(v) for v in value.get('items', []))
    return value


def _saved_metadata(path: str):
    try:
        from keras.src.protobuf import saved_metadata_pb2
    except ImportError:  # other Keras 2 layouts
        from tensorflow.python.keras.protobuf import saved_metadata_pb2
    with open(path, 'rb') as f:
        return saved_metadata_pb2.SavedMetadata.FromString(f.read())


def model_layers(model_uri: str) -> Optional[Dict[str, Any]]:
    """{layers: [{name, class, settings, params}], params} of a Keras SavedModel."""
    import tensorflow as tf

    saved = os.path.join(model_uri, 'Format-Serving')
    metadata_path = os.path.join(saved, 'keras_metadata.pb')
    if not os.path.exists(metadata_path):
        return None
    shapes = tf.train.load_checkpoint(os.path.join(saved, 'variables', 'variables')
                                      ).get_variable_to_shape_map()
    params: Dict[str, int] = {}
    for name, shape in shapes.items():
        prefix = name.split('/', 1)[0]
        params[prefix] = params.get(prefix, 0) + int(math.prod(shape) if shape else 1)
    layers = []
    for node in _saved_metadata(metadata_path).nodes:
        path = node.node_path.split('.')
        if len(path) != 2 or not path[1].startswith('layer'):
            continue  # the model itself, or something inside a layer
        info = json.loads(node.metadata)
        config = info.get('config') or {}
        layers.append({'name': info.get('name', path[1]), 'class': info.get('class_name', ''),
                       'settings': {k: _plain(config[k]) for k in LAYER_SETTINGS if k in config},
                       'params': params.get(path[1], 0)})
    return {'layers': layers, 'params': sum(l['params'] for l in layers)}


def gather_training(nodes, summary: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    from pipeline.html_report.data import output

    trainer = nodes.get('Trainer')
    if trainer is None:
        return None
    custom = trainer.prop('custom_config', {}) or {}
    training = custom.get('training', {}) or {}
    train_steps = (trainer.prop('train_args', {}) or {}).get('num_steps') or training.get('train_steps', 0)
    steps_per_epoch = min(training.get('steps_per_epoch') or train_steps or 1, train_steps or 1)
    run = output(nodes, 'Trainer', 'model_run')
    model = output(nodes, 'Trainer', 'model')
    points = read_curves(run.uri, steps_per_epoch) if run else []
    # What the model was trained with (tuned values in place; components/training_record.py).
    record = summary.get('training_record') or {}
    training = dict(training, **record.get('hyperparameters', {}))
    return {
        'tuning': summary.get('tuning'),
        'hyperparameters_from': record.get('hyperparameters_from', 'config'),
        'trainer': summary.get('trainer'),
        'state': trainer.state,
        'module': trainer.prop('run_fn') or trainer.prop('module_file') or trainer.prop('module_path'),
        'hyperparameters': dict(training, train_steps=train_steps,
                                eval_steps=(trainer.prop('eval_args', {}) or {}).get('num_steps')),
        'curves': points,
        'early_stopping': early_stopping(points, train_steps),
        'model': model_layers(model.uri) if model else None,
        'model_uri': model.uri if model else None,
        'tensorboard': run.uri if run else None,
    }
