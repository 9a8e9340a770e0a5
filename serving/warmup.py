"""Warming a version up before it takes traffic, as TF Serving does.

A SavedModel that carries TF Serving's warmup file (`assets.extra/tf_serving_warmup_requests`,
a TFRecord of PredictionLogs; the pipeline's Pusher writes one, see `components/warmup.py`)
has each of its Predict, Classify and Regress requests run once on the new version, in the
loading thread, before the version is swapped in. As in TF Serving, a request that fails, an
unreadable record or more than 1,000 records fail the load (the version is reported END with
the reason, and the previous one keeps serving). MultiInference and SessionRun records,
which this server does not serve, are skipped with a warning.

A SavedModel without the file gets one call of each batchable signature on a one-row batch
of empty values, failures ignored (an empty tf.Example may well not parse).
"""

import logging
import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from components.warmup import MAX_RECORDS, warmup_path
from serving.model import LoadedVersion, examples_input_name, require_classifier, require_regressor
from serving.tensors import examples_from_input, numpy_dtype, protos_to_arrays

log = logging.getLogger("serving")


class WarmupError(Exception):
    """The warmup file could not be replayed: the version must not serve."""


def warm_up(version: LoadedVersion) -> int:
    """Replays the version's warmup file, or makes a synthetic call per signature; returns
    how many warmup requests ran."""
    path = warmup_path(version.path)
    if not os.path.exists(path):
        _synthetic(version)
        return 0
    count = skipped = 0
    try:
        for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            if index >= MAX_RECORDS:
                raise WarmupError(f"the warmup file has more than {MAX_RECORDS} records")
            try:
                ran = _replay(version, prediction_log_pb2.PredictionLog.FromString(record))
            except Exception as e:  # noqa: BLE001 - any failure fails the load, with its reason
                raise WarmupError(f"warmup record {index} failed: {e}") from None
            count += ran
            skipped += not ran
    except tf.errors.OpError as e:
        raise WarmupError(f"the warmup file cannot be read: {e.message}") from None
    if skipped:
        log.warning("model %s version %d: skipped %d warmup records of a kind this server does not serve",
                    version.model_name, version.version, skipped)
    log.info("model %s version %d: replayed %d warmup requests", version.model_name, version.version, count)
    return count


def _replay(version: LoadedVersion, record) -> bool:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        request = record.predict_log.request
        sig = version.signature(request.model_spec.signature_name)
        version.run(sig.name, protos_to_arrays(request.inputs, sig.inputs, sig.fills, sig.name))
        return True
    if kind in ("classify_log", "regress_log"):
        request = getattr(record, kind).request
        sig = version.signature(request.model_spec.signature_name)
        (require_classifier if kind == "classify_log" else require_regressor)(sig)
        examples = examples_from_input(request.input, version.feature_kinds)
        column = np.empty(len(examples), dtype=object)
        column[:] = examples
        version.run(sig.name, {examples_input_name(sig): column})
        return True
    return False


def _synthetic(version: LoadedVersion) -> None:
    for sig in version.signatures.values():
        if not sig.batchable:
            continue
        inputs = {}
        for name, spec in sig.inputs.items():
            shape = (1,) + tuple(max(d, 1) for d in spec.shape[1:])
            dtype = numpy_dtype(spec.dtype)
            inputs[name] = np.full(shape, b"", dtype=object) if dtype is object else np.zeros(shape, dtype)
        try:
            version.run(sig.name, inputs)
        except Exception:  # noqa: BLE001 - warm-up is best effort
            pass
