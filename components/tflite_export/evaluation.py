"""TFMA's TFLite extractor for the pipeline's eval examples: the Evaluator's module
(``module_path``) when it gates the TFLite model (components/fast_evaluator, tflite_gate).

TFMA 0.46's ``TFLitePredictionDoFn`` takes ``features[name][row]`` as a row's value, which
holds for a dense column only: without a schema, TFXIO reads every feature as a list column,
which TFMA hands over as a ``SparseTensorValue`` (indices, values, dense shape), and
``[row]`` then picks one of those three; a row without the feature (a missing value) has no
value at all. Here each column becomes one value per row first: the row's first value, or
"" / 0 where it has none, as the export's own check gives a missing value to the TFLite model
(components/example_inputs.py; a TFLite model takes one dense value per row).
"""
import copy

import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.extractors import tflite_predict_extractor


class OneValuePerRow(tflite_predict_extractor.TFLitePredictionDoFn):

    def _batch_reducible_process(self, element):
        element = copy.copy(element)
        element[tfma.FEATURES_KEY] = {name: one_value_per_row(column) for name, column
                                      in element[tfma.FEATURES_KEY].items()}
        return super()._batch_reducible_process(element)


def one_value_per_row(column):
    """A list column, sparse (indices, values, dense_shape) or one array per row, as one [1]
    array per row: the row's first value, or "" / 0 where it has none."""
    if all(hasattr(column, a) for a in ('indices', 'values', 'dense_shape')):
        values = np.asarray(column.values)
        rows = [values[:0]] * int(column.dense_shape[0])
        for i in reversed(range(len(values))):  # the row's first value last
            rows[int(column.indices[i][0])] = values[i:i + 1]
    elif isinstance(column, np.ndarray) and column.dtype != object and column.ndim == 1:
        return column  # a value per row already
    else:  # one array per row, or a dense [rows, values] array (no values: [rows, 0])
        rows = [np.asarray(v) for v in column]
    return [_first(v) for v in rows]


def _first(row: np.ndarray) -> np.ndarray:
    text = row.dtype == object or row.dtype.kind in 'SU'
    if row.size:
        return row.reshape(-1)[:1].astype(object if text else row.dtype)
    return np.array([b''], dtype=object) if text else np.zeros(1, row.dtype)


def custom_extractors(eval_shared_model, eval_config, tensor_adapter_config):
    """TFMA's default extractors for a TFLite model, with ``OneValuePerRow``."""
    return tfma.default_extractors(
        eval_shared_model=eval_shared_model, eval_config=eval_config,
        tensor_adapter_config=tensor_adapter_config,
        custom_predict_extractor=tflite_predict_extractor.TFLitePredictExtractor(
            eval_config=eval_config, eval_shared_model=eval_shared_model,
            do_fn=OneValuePerRow))
