"""Inputs for a serving signature, read off serialized tf.Examples.

A signature that takes serialized examples gets them as they are; one that takes a tensor per
raw feature (``serving_json``, inputs named by ``features.json_input_name``) gets each
example's first value of the feature, or ``""`` / 0
where the example has none. Used where two runs of one model are compared on the same inputs
(infra validation: a server against the process; TFLite: the interpreter against the
SavedModel), so any valid value serves for a missing one.
"""
import os
from typing import Dict, List

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.types import artifact_utils

from components.features import json_inputs

EVAL_SPLIT = 'eval'


def read_examples(examples: types.Artifact, count: int, split: str = EVAL_SPLIT) -> List[bytes]:
    """The first ``count`` serialized examples of ``split`` (fewer if it holds fewer)."""
    uri = artifact_utils.get_split_uri([examples], split)
    files = sorted(tf.io.gfile.glob(os.path.join(uri, '*')))
    return [record.numpy() for record in
            tf.data.TFRecordDataset(files, compression_type='GZIP').take(count)]


def _feature_value(example: tf.train.Example, name: str, dtype: tf.DType):
    """The example's first value of ``name`` as ``dtype``; "" or 0 when it has none."""
    feature = example.features.feature.get(name)
    values = []
    if feature is not None:
        kind = feature.WhichOneof('kind')
        values = list(getattr(feature, kind).value) if kind else []
    if dtype == tf.string:
        return values[0] if values else b''
    return dtype.as_numpy_dtype(values[0] if values else 0)


def signature_inputs(function, examples: List[bytes]) -> Dict[str, np.ndarray]:
    """A request for a signature: the serialized examples for a signature with one string
    input, else one array per input, read off the examples."""
    specs = function.structured_input_signature[1]
    if len(specs) == 1 and next(iter(specs.values())).dtype == tf.string:
        return {next(iter(specs)): np.array(examples, dtype=object)}
    parsed = [tf.train.Example.FromString(e) for e in examples]
    features = json_inputs({name for p in parsed for name in p.features.feature})
    inputs = {}
    for name, spec in specs.items():
        values = [_feature_value(p, features.get(name, name), spec.dtype) for p in parsed]
        inputs[name] = np.array(values, dtype=object if spec.dtype == tf.string
                                else spec.dtype.as_numpy_dtype)
    return inputs
