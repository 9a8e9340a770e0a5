"""TFLiteExport's executor: ``model.tflite`` beside the SavedModel, checked in the interpreter.

Conversion: ``tf.lite.TFLiteConverter.from_saved_model`` on a SavedModel of the model's
``serving_json`` signature alone (with its variables and its lookup tables), so the TFLite model takes raw features (one [batch] tensor per
feature, as that signature does) with the TFT graph inside. TFLite's builtin ops plus select
TF ops (the TFT graph's bucketizing, hashing and bincounts have no builtin kernels; the
interpreter in the ``tensorflow`` package runs them, on a device the app must link the Flex
delegate, https://www.tensorflow.org/lite/guide/ops_select). ``quantization: dynamic_range``
stores the weights as int8 (``tf.lite.Optimize.DEFAULT``). The one signature is named
``serving_default``, so TFMA's TFLite extractor finds the inputs by feature name. Outputs: the
task's prediction (``probability``, ``probabilities`` or ``value``); a multi-class model's
class names, the same for every row, are in the JSON beside it (``classes``), not an output.

Lookup tables: TFLite's hashtable ops take a table filled from constants, not one read from a
file, which is how Transform stores the vocabularies it computes (``tft.apply_vocabulary``:
asset files read by a text-file initializer); the converter silently leaves such an
initializer out. So the tables are re-made: the SavedModel is loaded (which fills its tables),
each table the signature looks up is read back and saved, under the name the signature opens
it by, as a key-value table of constants (``constant_tables``). The TFLite model thus looks up
exactly the SavedModel's vocabularies, computed or from the schema. A one-row batch runs as
two rows inside the model (see ``convert``). TF-DF models (the ``gbt`` trainer) are out of
scope.

Check: the first ``num_examples`` examples of the eval split go through the SavedModel's
``serving_json`` and through the interpreter (inputs read off the examples, with "" or 0 for a
missing value: components/example_inputs.py); every output must agree within ``tolerance``
(1e-5 unquantized; absolute for values up to 1 in size, relative to the value above:
``largest_difference``), or the export fails, naming the example and both values.

Recorded, in ``assets.extra/model_tflite.json`` and as custom properties of the artifact: the
size of the SavedModel (saved_model.pb and variables/) and of the TFLite file, the latency per
example of each (one example per call, the median of ``LATENCY_CALLS`` calls, on this machine),
the largest difference found, the tolerance and the quantization.

The output artifact is the Trainer's model directory copied whole, plus those two files: it
is what the Pusher pushes, and the Trainer's artifact stays as it was. A second output,
``tflite_model``, is the same with the TFLite model also as ``tflite`` at the top (TFX's
TFLite layout, which TFMA's ``model_type='tf_lite'`` reads, with the SavedModel beside it for
the transformed label): what the Evaluator gates when asked (export.tflite_gate).
"""
import json
import os
import statistics
import tempfile
import time
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.example_inputs import read_examples, signature_inputs
from components.features import CLASSES_OUTPUT
from components.signatures import SERVING_JSON

TFLITE_FILE = 'model.tflite'
TFMA_TFLITE_FILE = 'tflite'  # the name TFX's rewriter gives it and TFMA's tf_lite reads
REPORT_FILE = 'model_tflite.json'
ASSETS_EXTRA = 'assets.extra'
QUANTIZATIONS = ('none', 'dynamic_range')
LATENCY_CALLS = 50
TFLITE_SIGNATURE = 'serving_default'


class TFLiteMismatch(RuntimeError):
    """The TFLite model does not predict what the SavedModel predicts."""


def convert(saved_model_dir: str, quantization: str = 'none') -> bytes:
    """The ``serving_json`` signature, less a constant ``classes`` output, as TFLite."""
    loaded = tf.saved_model.load(saved_model_dir)
    if SERVING_JSON not in loaded.signatures:
        raise ValueError(f'{saved_model_dir}: no {SERVING_JSON} signature to convert '
                         '(components/signatures.py exports it)')
    function = loaded.signatures[SERVING_JSON]
    specs = function.structured_input_signature[1]

    @tf.function(input_signature=[tf.TensorSpec([None], s.dtype, name=n)
                                  for n, s in sorted(specs.items())])
    def predict(*features):
        # One row more than asked (the first, again), cut off the outputs: TFLite's kernels
        # (TF 2.15) give a lookup table's result for a one-row batch the rank of a scalar,
        # and the layers after it then fail. The extra row costs one example's work.
        rows = tf.shape(features[0])[0]
        padded = [tf.concat([f, f[:1]], 0) for f in features]
        outputs = function(**dict(zip(sorted(specs), padded)))
        return {k: v[:rows] for k, v in outputs.items() if k != CLASSES_OUTPUT}

    # Through a SavedModel of that one signature, its variables and its lookup tables as
    # constants: the converter turns a table's key-value import into TFLite's, which a
    # concrete function alone leaves out.
    with tempfile.TemporaryDirectory(prefix='tflite-source-') as tmp:
        module = tf.Module()
        module.captured = captured_objects(loaded, function)
        module.tables = constant_tables(function)
        module.predict = predict
        tf.saved_model.save(module, tmp, signatures={TFLITE_SIGNATURE: predict})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, [TFLITE_SIGNATURE])
        return _convert(converter, quantization)


def captured_objects(loaded, function) -> list:
    """The objects of ``loaded`` (its variables) whose handles ``function`` captures: saved
    with it, and nothing else of the model (not its table initializers, which read files)."""
    from tensorflow.python.checkpoint import graph_view, util  # TF's own object walk
    captured = {id(t) for t in function.captured_inputs}
    return [o for o in util.list_objects(graph_view.ObjectGraphView(loaded))
            if id(getattr(o, 'handle', None) if isinstance(o, tf.Variable)
                  else getattr(o, 'resource_handle', None)) in captured]


class _ConstantTable(tf.saved_model.experimental.TrackableResource):
    """A hash table that a function creates by ``shared_name`` (as Transform's do), filled
    from constants: the form TFLite's hashtable ops take."""

    def __init__(self, shared_name: bytes, keys: np.ndarray, values: np.ndarray):
        super().__init__()
        self._shared_name, self._keys, self._values = shared_name, keys, values

    def _create_resource(self):
        return tf.raw_ops.HashTableV2(key_dtype=tf.as_dtype(self._keys.dtype)
                                      if self._keys.dtype != object else tf.string,
                                      value_dtype=tf.as_dtype(self._values.dtype)
                                      if self._values.dtype != object else tf.string,
                                      shared_name=self._shared_name, use_node_name_sharing=True)

    def _initialize(self):
        return tf.raw_ops.LookupTableImportV2(table_handle=self.resource_handle,
                                              keys=tf.constant(self._keys),
                                              values=tf.constant(self._values))


def constant_tables(function) -> List[_ConstantTable]:
    """The contents of every hash table ``function`` looks up, as constant tables.

    Transform's computed vocabularies are files (assets) that the SavedModel's initializer
    reads into its tables, and TFLite has no kernel that reads a file. The model is loaded
    here, so its tables hold those vocabularies: each is read back (by its shared name, the
    handle the function opens) and re-made from constants. The contents are the SavedModel's
    own, so the TFLite model looks up exactly what the SavedModel does."""
    graph = function.graph.as_graph_def()
    nodes = [n for n in graph.node] + [n for f in graph.library.function for n in f.node_def]
    tables = {}
    for node in nodes:
        if node.op != 'HashTableV2':
            continue
        name = node.attr['shared_name'].s
        if not name or name in tables:
            continue
        key_dtype, value_dtype = node.attr['key_dtype'].type, node.attr['value_dtype'].type
        handle = tf.raw_ops.HashTableV2(key_dtype=key_dtype, value_dtype=value_dtype,
                                        shared_name=name, use_node_name_sharing=True)
        keys, values = tf.raw_ops.LookupTableExportV2(table_handle=handle, Tkeys=key_dtype,
                                                      Tvalues=value_dtype)
        tables[name] = _ConstantTable(name, keys.numpy(), values.numpy())
    return list(tables.values())


def _convert(converter, quantization: str) -> bytes:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    if quantization == 'dynamic_range':
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def interpret(content: bytes, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Runs the TFLite model's signature on a batch of inputs."""
    interpreter = tf.lite.Interpreter(model_content=content)
    runner = interpreter.get_signature_runner(TFLITE_SIGNATURE)
    return {k: np.asarray(v) for k, v in runner(**{
        name: (value.astype(bytes) if value.dtype == object else value)
        for name, value in inputs.items()}).items()}


def largest_difference(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray]):
    """(difference, output, example index) of the largest disagreement, each difference on
    the scale of the SavedModel's value: absolute where the value is at most 1 in size
    (probabilities, z-scores), relative above (a regression's prices, where float32 itself
    differs by more than 1e-5 between two runtimes: 2692.9624 against 2692.961)."""
    worst = (0.0, '', 0)
    for key, expected in want.items():
        expected = expected.astype(np.float64)
        diff = (np.abs(np.asarray(got[key], np.float64) - expected)
                / np.maximum(1.0, np.abs(expected)))
        diff = diff.reshape(len(diff), -1).max(axis=1)
        if diff.size and diff.max() >= worst[0]:
            worst = (float(diff.max()), key, int(diff.argmax()))
    return worst


def _median_seconds(call, calls: int = LATENCY_CALLS) -> float:
    call()  # the first call pays for set-up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latencies(saved_model_dir: str, content: bytes, one: Dict[str, np.ndarray]):
    """Seconds per example, one example per call: (SavedModel, TFLite)."""
    function = tf.saved_model.load(saved_model_dir).signatures[SERVING_JSON]
    tensors = {k: tf.constant(v) for k, v in one.items()}
    interpreter = tf.lite.Interpreter(model_content=content)
    runner = interpreter.get_signature_runner(TFLITE_SIGNATURE)
    feed = {k: (v.astype(bytes) if v.dtype == object else v) for k, v in one.items()}
    return (_median_seconds(lambda: function(**tensors)), _median_seconds(lambda: runner(**feed)))


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def export(saved_model_dir: str, examples: List[bytes], quantization: str, tolerance: float,
           destination: str) -> Dict[str, Any]:
    """Converts, checks and writes ``<destination>/assets.extra/``; returns the report."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f'export.tflite_quantization: expected one of {QUANTIZATIONS}, '
                         f'got {quantization!r}')
    content = convert(saved_model_dir, quantization)
    loaded = tf.saved_model.load(saved_model_dir)
    function = loaded.signatures[SERVING_JSON]
    inputs = signature_inputs(function, examples)
    want = {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in inputs.items()})
            .items() if k != CLASSES_OUTPUT}
    try:
        got = interpret(content, inputs)
    except RuntimeError as e:
        if 'hashtable need to be initialized' not in str(e):
            raise
        raise TFLiteMismatch(
            'a lookup table of the model is not initialized in the TFLite model: the export '
            're-makes the tables the serving_json signature creates by name (as Transform\'s '
            'are), not one it takes from outside (a Keras lookup layer\'s, say). Set '
            'export.tflite: false for this model') from None
    difference, output, index = largest_difference(got, want)
    if not difference <= tolerance:
        raise TFLiteMismatch(
            f'the TFLite model ({quantization} quantization) predicts {output} '
            f'{got[output][index]!r} for eval example {index}, the SavedModel '
            f'{want[output][index]!r}: a difference of {difference:.3g} (relative to values '
            f'above 1 in size), above the tolerance '
            f'{tolerance:g} (export.tflite_tolerance)')
    saved_seconds, tflite_seconds = latencies(
        saved_model_dir, content, {k: v[:1] for k, v in inputs.items()})
    outputs = function.structured_outputs
    classes = None
    if CLASSES_OUTPUT in outputs:
        classes = [c.decode() for c in function(**{k: tf.constant(v[:1]) for k, v in
                                                   inputs.items()})[CLASSES_OUTPUT].numpy()[0]]
    report = {
        'file': f'{ASSETS_EXTRA}/{TFLITE_FILE}', 'signature': TFLITE_SIGNATURE,
        'inputs': sorted(inputs), 'outputs': sorted(want), 'classes': classes,
        'quantization': quantization, 'tolerance': tolerance,
        'examples_checked': len(examples), 'max_difference': difference,
        'tflite_bytes': len(content),
        'saved_model_bytes': (os.path.getsize(os.path.join(saved_model_dir, 'saved_model.pb'))
                              + directory_bytes(os.path.join(saved_model_dir, 'variables'))),
        'tflite_seconds_per_example': tflite_seconds,
        'saved_model_seconds_per_example': saved_seconds,
    }
    extra = os.path.join(destination, ASSETS_EXTRA)
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, TFLITE_FILE), 'wb') as f:
        f.write(content)
    with open(os.path.join(extra, REPORT_FILE), 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=2)
    return report


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        model = artifact_utils.get_single_instance(input_dict['model'])
        exported = artifact_utils.get_single_instance(output_dict['exported_model'])
        source = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        destination = path_utils.serving_model_path(exported.uri)
        examples = read_examples(artifact_utils.get_single_instance(input_dict['examples']),
                                 int(exec_properties['num_examples']))
        if not examples:
            raise ValueError('the eval split holds no examples to check the TFLite model on')
        with tempfile.TemporaryDirectory(prefix='tflite-export-') as tmp:
            staged = os.path.join(tmp, 'model')
            io_utils.copy_dir(source, staged)
            report = export(source, examples, exec_properties['quantization'],
                            float(exec_properties['tolerance']), staged)
            io_utils.copy_dir(staged, destination)
            if output_dict.get('tflite_model'):  # TFX's TFLite layout, for TFMA
                tfma_layout = path_utils.serving_model_path(
                    artifact_utils.get_single_uri(output_dict['tflite_model']))
                io_utils.copy_dir(staged, tfma_layout)
                io_utils.copy_file(os.path.join(staged, ASSETS_EXTRA, TFLITE_FILE),
                                   os.path.join(tfma_layout, TFMA_TFLITE_FILE))
        for key in ('tflite_bytes', 'saved_model_bytes'):
            exported.set_int_custom_property(key, report[key])
        for key in ('tflite_seconds_per_example', 'saved_model_seconds_per_example',
                    'max_difference'):
            exported.set_float_custom_property(key, report[key])
        exported.set_string_custom_property('quantization', report['quantization'])
        logging.info('TFLite model: %d bytes, max difference %.3g', report['tflite_bytes'],
                     report['max_difference'])


def read_report(artifact: types.Artifact) -> Dict[str, Any]:
    path = os.path.join(path_utils.serving_model_path(artifact.uri), ASSETS_EXTRA, REPORT_FILE)
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)
