"""TF Serving's warmup file for a SavedModel, made from a few examples.

A model server replays `<SavedModel>/assets.extra/tf_serving_warmup_requests` (a TFRecord
file of `tensorflow.serving.PredictionLog`s, at most 1,000) before a version takes traffic,
so that no client pays for TensorFlow's lazy set-up of a new version. The real TF Serving
does, and so does this project's server (`serving/warmup.py`).

`warmup_logs` makes, from serialized raw tf.Examples, one PredictRequest per example for each
signature a client calls: `serving_default` (the example itself) and `serving_json` (its
features as one [1] tensor each, a missing feature as the signature's missing value; a
feature with several values gives its first). `write_warmup_file` writes them into a
SavedModel directory; `read_examples` takes the first N examples of a split of an Examples
artifact, through TFX's own request builder (what TFX's InfraValidator uses for its warmup
requests). The Pusher writes the file into the copy it is about to publish; an infra
validator can call the same functions.
"""
import os
from typing import List, Sequence

DIRECTORY = 'assets.extra'
FILE_NAME = 'tf_serving_warmup_requests'
MAX_RECORDS = 1000  # TF Serving refuses a longer file
DEFAULT_EXAMPLES = 16


def warmup_path(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, DIRECTORY, FILE_NAME)


def _json_inputs(example, inputs) -> dict:
    """One example's raw features as serving_json's [1] tensors (missing: the fill value)."""
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    from components.signatures import MISSING_INT64

    features = example.features.feature
    tensors = {}
    for name, info in inputs.items():
        feature = features.get(name) if name in features else None
        if info.dtype == types_pb2.DT_STRING:
            values = feature.bytes_list.value if feature is not None else []
            tensors[name] = tf.make_tensor_proto([values[0] if values else b''], tf.string)
        elif info.dtype == types_pb2.DT_INT64:
            values = feature.int64_list.value if feature is not None else []
            tensors[name] = tf.make_tensor_proto([values[0] if values else MISSING_INT64], tf.int64)
        else:
            values = feature.float_list.value if feature is not None else []
            tensors[name] = tf.make_tensor_proto(
                [values[0] if values else float('nan')], tf.as_dtype(info.dtype))
    return tensors


def warmup_logs(signature_defs, serialized_examples: Sequence[bytes], model_name: str = '') -> list:
    """PredictionLogs for `serving_default` and `serving_json` (those of the two the model
    has), one request per example and signature."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from components.signatures import SERVING_DEFAULT, SERVING_JSON

    logs = []
    for signature_name in (SERVING_DEFAULT, SERVING_JSON):
        if signature_name not in signature_defs:
            continue
        inputs = signature_defs[signature_name].inputs
        for serialized in serialized_examples:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            if signature_name == SERVING_DEFAULT:
                [key] = inputs
                request.inputs[key].CopyFrom(tf.make_tensor_proto([serialized], tf.string))
            else:
                example = tf.train.Example.FromString(serialized)
                for key, tensor in _json_inputs(example, inputs).items():
                    request.inputs[key].CopyFrom(tensor)
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs[:MAX_RECORDS]


def write_warmup_file(saved_model_dir: str, serialized_examples: Sequence[bytes],
                      model_name: str = '') -> str:
    """Writes the warmup file into `saved_model_dir` (a copy not yet published); returns its
    path. Nothing is written when there are no examples."""
    import tensorflow as tf
    from tensorflow.python.saved_model import loader_impl  # as TFX's request builder reads it

    signature_defs = loader_impl.parse_saved_model(saved_model_dir).meta_graphs[0].signature_def
    logs = warmup_logs(signature_defs, serialized_examples, model_name)
    path = warmup_path(saved_model_dir)
    if not logs:
        return ''
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read_examples(model, examples, split: str = 'eval', count: int = DEFAULT_EXAMPLES) -> List[bytes]:
    """The first `count` serialized examples of `split` in an Examples artifact, read by TFX's
    request builder (`model`: the Model artifact whose serving_default it builds for)."""
    import tensorflow as tf
    from tfx.components.infra_validator import request_builder
    from tfx.proto import infra_validator_pb2

    spec = infra_validator_pb2.RequestSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(),
        split_name=split, num_examples=count)
    requests = request_builder.build_requests('', model, examples, spec)
    return [tf.make_ndarray(next(iter(r.inputs.values())))[0] for r in requests]


def writer(input_dict):
    """For the Pusher: a function that writes the warmup file into the copy it publishes, from
    the first examples of the eval split of its `examples` input (None without that input).
    A failure to make the file is logged, and the version is published without it."""
    from absl import logging
    from tfx.types import artifact_utils, standard_component_specs

    examples = input_dict.get('examples')
    if not examples:
        return None
    model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])

    def write(saved_model_dir: str) -> None:
        try:
            path = write_warmup_file(saved_model_dir, read_examples(model, examples[0]))
            logging.info('Warmup requests written to %s', path)
        except Exception as e:  # noqa: BLE001 - a version without warmup still serves
            logging.warning('No warmup file: %s: %s', type(e).__name__, e)

    return write
