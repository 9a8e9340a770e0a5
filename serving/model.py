"""One loaded version of a model: its signatures, how to call them, and the classify/regress
views derived from `serving_default`.

The pipeline's contract (`components.signatures`): `serving_default` takes serialized
tf.Examples (`examples`, tf.string [None]) and returns `probability` (binary),
`probabilities` + `classes` (multi-class) or `value` (regression); `serving_json` takes one
[None] tensor per raw feature, a missing value being "", NaN or `MISSING_INT64`. Real TF
Serving would want dedicated classify/regress method signatures; this server derives them
from those outputs instead, so the pipeline need export only the signatures above.
"""

import asyncio
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from components.features import CLASSES_OUTPUT, OUTPUT_KEYS
from components.signatures import SERVING_DEFAULT, SERVING_JSON, load_saved_model
from serving.errors import ServingError, invalid, precondition, without_paths
from serving.tensors import TensorSpec, feature_kinds, missing_fills

PROBABILITY, PROBABILITIES, VALUE = OUTPUT_KEYS["binary"], OUTPUT_KEYS["multiclass"], OUTPUT_KEYS["regression"]

# TensorFlow's canonical error codes (tf.errors.*.error_code) -> our code names.
_TF_CODES = {
    3: "INVALID_ARGUMENT",
    5: "NOT_FOUND",
    9: "FAILED_PRECONDITION",
    11: "OUT_OF_RANGE",
    8: "RESOURCE_EXHAUSTED",
}


class Signature:
    """The inputs and outputs of one callable signature."""

    def __init__(self, name: str, signature_def):
        self.name = name
        self.inputs = {k: TensorSpec.from_tensor_info(k, v) for k, v in signature_def.inputs.items()}
        self.outputs = {k: TensorSpec.from_tensor_info(k, v) for k, v in signature_def.outputs.items()}
        # Requests can share a model call only when every input is batched along dimension 0.
        self.batchable = bool(self.inputs) and all(spec.batched for spec in self.inputs.values())
        self._batched = [name for name, spec in self.inputs.items() if spec.batched]
        # The pipeline's serving_json takes missing values (null, or an input left out).
        self.fills = missing_fills(self.inputs) if name == SERVING_JSON else None

    def batch_size(self, arrays: dict[str, np.ndarray]) -> int:
        """The number of rows in a request; every batched input must agree on it."""
        sizes = {arrays[name].shape[0] for name in self._batched}
        if not sizes:
            return 1
        if len(sizes) > 1:
            raise invalid("inputs disagree on the batch size (dimension 0): "
                          f"{ {name: arrays[name].shape[0] for name in self._batched} }")
        return sizes.pop()


def _error_message(error: tf.errors.OpError) -> str:
    """The line of a TF runtime error that tells the client what was wrong, without the
    graph-construction traceback TF puts in front of it, and without server paths."""
    lines = [ln.strip() for ln in error.message.splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("[[", "File ", "Detected at node", "Graph execution error")):
            return without_paths(line.split("\t [[")[0].strip())
    return without_paths(lines[-1]) if lines else type(error).__name__


def read_signature_defs(path: str) -> dict:
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    if not saved_model.meta_graphs:
        raise ValueError("saved_model.pb holds no MetaGraph")
    return dict(saved_model.meta_graphs[0].signature_def)


class VersionBase:
    """What the server knows of a loaded version, wherever its model runs: its signatures,
    the raw features' kinds, and its batchers. Requests that resolved it keep it alive
    while they run, so unloading it (dropping the registry's reference) never fails them."""

    def __init__(self, model_name: str, version: int, path: str, signature_defs: dict, callable_names):
        self.model_name = model_name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs  # all of them, as metadata shows them
        self.signatures = {name: Signature(name, signature_defs[name]) for name in callable_names}
        raw = self.signatures.get(SERVING_JSON)
        # Raw feature name -> kind, used to check classify/regress examples before the model sees them.
        self.feature_kinds = feature_kinds(raw.inputs) if raw else None
        self.batchers: dict = {}  # signature name -> Batcher, made by the server's event loop
        self.warmup_requests = 0  # how many requests of its warmup file ran before it served

    def signature(self, name: str) -> Signature:
        name = name or SERVING_DEFAULT
        if name not in self.signatures:
            raise precondition(
                f'Serving signature key "{name}" not found; this model has {sorted(self.signatures)}'
            )
        return self.signatures[name]

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls a signature, blocking."""
        raise NotImplementedError

    async def call(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls a signature from the event loop (here in a thread; a model process answers
        on the loop itself: serving/worker.py)."""
        return await asyncio.to_thread(self.run, signature_name, inputs)


def _flat_call(function, input_names):
    """`function(**inputs)` without TensorFlow's binding of keyword arguments to the signature
    on every call (a third of the CPU of a one-row call of the taxi model, measured in
    RESULTS_serving.md): the inputs go straight to the graph, in the order it takes them, found
    once here. The server's codecs (serving/tensors.py) have already checked each input's
    shape, and convert_to_tensor its dtype. TensorFlow's own API for this is private
    (`_call_flat`, TF 2.15); if it is not there, the plain call is used.

    `input_names`: the SignatureDef's, which requests use. The function's own argument names
    are Python identifiers (an input `yrs.service` is its argument `yrs_service`); each
    argument's TensorSpec keeps the SignatureDef's name."""
    try:
        from tensorflow.python.eager.polymorphic_function import function_type_utils

        _, specs = function.structured_input_signature
        probes = {name: tf.zeros([d or 0 for d in spec.shape.as_list()], spec.dtype) for name, spec in specs.items()}
        bound = function_type_utils.canonicalize_function_inputs((), probes, function.function_type)
        flat = function.function_type.unpack_inputs(bound)
        names = {id(tensor): name for name, tensor in probes.items()}
        order = [(specs[names[id(tensor)]].name, specs[names[id(tensor)]].dtype) for tensor in flat]
        captured = function.captured_inputs
        call_flat = function._call_flat  # pylint: disable=protected-access
    except Exception:  # noqa: BLE001 - another TF version, or a signature this does not cover
        return lambda inputs: function(**inputs)
    if len(order) != len(specs) or {name for name, _ in order} != set(input_names):
        return lambda inputs: function(**inputs)

    def call(inputs):
        return call_flat([tf.convert_to_tensor(inputs[name], dtype) for name, dtype in order], captured)

    return call


class LoadedVersion(VersionBase):
    """A SavedModel version in this process's memory (in a model process: serving/worker.py)."""

    def __init__(self, model_name: str, version: int, path: str):
        module = load_saved_model(path)
        self._module = module
        signature_defs = read_signature_defs(path)
        self._functions = {name: _flat_call(function, signature_defs[name].inputs if name in signature_defs else ())
                           for name, function in module.signatures.items()}
        super().__init__(model_name, version, path, signature_defs, list(self._functions))

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls a signature (blocking)."""
        function = self._functions[signature_name]
        try:
            outputs = function(inputs)
        except tf.errors.OpError as e:
            code = _TF_CODES.get(e.error_code, "INTERNAL")
            raise ServingError(code, _error_message(e)) from None
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def examples_input_name(sig: Signature) -> str:
    """Classify and regress feed serialized tf.Examples to a signature with one string input."""
    if len(sig.inputs) != 1 or next(iter(sig.inputs.values())).dtype != tf.string.as_datatype_enum:
        raise precondition(
            f"signature '{sig.name}' cannot classify or regress: it must take one string input of "
            f"serialized tf.Examples, but takes {sorted(sig.inputs)}"
        )
    return next(iter(sig.inputs))


def require_classifier(sig: Signature) -> None:
    if PROBABILITY not in sig.outputs and not {CLASSES_OUTPUT, PROBABILITIES} <= set(sig.outputs):
        raise precondition(
            f"signature '{sig.name}' is not a classifier: it outputs {sorted(sig.outputs)}, "
            f"not '{PROBABILITY}' (binary) or '{CLASSES_OUTPUT}' + '{PROBABILITIES}' (multi-class)"
        )


def require_regressor(sig: Signature) -> None:
    if VALUE not in sig.outputs:
        raise precondition(
            f"signature '{sig.name}' is not a regressor: it outputs {sorted(sig.outputs)}, not '{VALUE}'"
        )


def classification_results(outputs: dict[str, np.ndarray]) -> list[list[tuple[str, np.float32]]]:
    """Per example, (label, score) pairs: binary models give classes "0" and "1" with scores
    1-p and p; multi-class models give their `classes` and `probabilities` outputs. Scores
    stay float32, so that JSON writes them as the model computed them."""
    if PROBABILITY in outputs:
        p = outputs[PROBABILITY].reshape(-1).astype(np.float32)
        return [[("0", 1 - x), ("1", x)] for x in p]
    labels = outputs[CLASSES_OUTPUT]
    scores = outputs[PROBABILITIES].astype(np.float32)
    return [
        [(label.decode("utf-8", "replace"), score) for label, score in zip(row_labels, row_scores)]
        for row_labels, row_scores in zip(labels, scores)
    ]


def regression_results(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return outputs[VALUE].reshape(-1).astype(np.float32)
