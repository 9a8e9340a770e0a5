"""TFMA's evaluation of an eval config, in this process: TFMA's own steps, without Beam.

``ExtractEvaluateAndWriteResults`` builds a Beam pipeline of TFMA's extractors, its
``MetricsPlotsAndValidationsEvaluator`` and its writers. Each of those stages is a thin Beam
wrapper around a function or DoFn of TFMA's; here the same functions and DoFns are called
directly, in the same order, on batches of the eval split:

  features          ``features_extractor``: the record batch's columns and the serialized
                    examples (``ARROW_INPUT_COLUMN``)
  transformed       ``ModelSignaturesDoFn`` calling each model's preprocessing functions
  labels, weights   ``get_feature_values_for_model_spec_field``
  predictions       ``ModelSignaturesDoFn`` calling each model's signature, every model on
                    the same batch
  unbatch           ``unbatch_extractor`` (one extract per example)
  slice keys        ``ExtractSliceKeysFn``
  metrics           the metric specs' computations (``metric_specs.to_computations``),
                    ``_PreprocessorDoFn``, then ``_FanoutSlicesDoFn`` and one accumulator
                    per slice of ``_ComputationsCombineFn`` (create_accumulator / add_input /
                    extract_output), then the derived, diff and CI-derived metrics
  validation        ``metrics_validator.validate_metrics`` per slice, ``CombineValidations``
  output            ``convert_slice_{metrics,plots,attributions}_to_proto`` into the files
                    TFMA's writers write, and ``eval_config.json``

Several of these are private to TFMA (a leading underscore): they are the pinned version's
(TFMA 0.46.0), and the tests compare this module's output with the Beam path's.

Only the combination of options :func:`unsupported` returns nothing for is handled here;
the executor gives everything else to TFX's Beam executor.
"""
import copy
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

import tensorflow as tf
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.api import model_eval_lib
from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator as mpv
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.extractors import (features_extractor,
                                                  transformed_features_extractor,
                                                  unbatch_extractor)
from tensorflow_model_analysis.extractors.slice_key_extractor import ExtractSliceKeysFn
from tensorflow_model_analysis.metrics import (calibration_histogram, example_count, metric_specs,
                                               metric_types)
from tensorflow_model_analysis.proto import config_pb2, validation_result_pb2
from tensorflow_model_analysis.slicer import slicer_lib as slicer
from tensorflow_model_analysis.utils import model_util, util
from tensorflow_model_analysis.writers import eval_config_writer
from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as writer

# Model types whose predictions come from calling the SavedModel's signatures (TFMA's
# default extractors: features, transformed features, labels, weights, predictions).
SIGNATURE_MODEL_TYPES = (constants.TF_GENERIC, constants.TF_KERAS, constants.TF_ESTIMATOR)


def unsupported(eval_config: config_pb2.EvalConfig,
                eval_shared_models: List[Any]) -> Optional[str]:
    """Why this eval config needs TFMA's Beam pipeline, or None when it does not."""
    options = eval_config.options
    if any(s.slice_keys_sql for s in eval_config.slicing_specs):
        return 'SQL slices'
    if eval_config.cross_slicing_specs:
        return 'cross slices'
    if any(spec.query_key for spec in eval_config.metrics_specs):
        return 'query-based metrics'
    if options.compute_confidence_intervals.value:
        return 'confidence intervals'
    if options.min_slice_size.value > 1:
        return 'a minimum slice size'
    if options.disabled_outputs.values:
        return 'disabled outputs'
    types = {m.model_type for m in eval_shared_models}
    if not types or not types <= set(SIGNATURE_MODEL_TYPES):
        return f'model types {sorted(types)}'
    if include_default_metrics(eval_config) and constants.TF_KERAS in types:
        return "the Keras model's compiled metrics (include_default_metrics)"
    if any(m.add_metrics_callbacks for m in eval_shared_models):
        return 'metrics callbacks'
    return None


def include_default_metrics(eval_config: config_pb2.EvalConfig) -> bool:
    options = eval_config.options
    return not options.HasField('include_default_metrics') or options.include_default_metrics.value


def batchable(computation: metric_types.MetricComputation) -> bool:
    """Whether TFMA's combiner of ``computation`` gives the same result when it is given one
    slice's rows of a batch as one input as when it is given each row.

    TFMA's calibration histogram (``AUC``, the calibration and confusion-matrix plots and
    the histogram metrics of ``components/metrics.py``) turns its input into
    (label, prediction, weight) triples with ``to_label_prediction_example_weight(...,
    flatten=True)``, which yields a batch's rows one after another, and adds each to its
    buckets in that order: the same sums, in the same order, as row by row, unless a sub
    key, an aggregation or class weights rearrange the values (those stay row by row).
    ``ExampleCount`` counts its inputs (a weighted count sums the weights): see
    ``add_rows``. Every other combiner gets one input per row, as in TFMA.
    """
    combiner = computation.combiner
    if isinstance(combiner, calibration_histogram._CalibrationHistogramCombiner):  # pylint: disable=protected-access
        return (combiner._key.sub_key is None and combiner._aggregation_type is None  # pylint: disable=protected-access
                and not combiner._class_weights and not computation.preprocessors)  # pylint: disable=protected-access
    return isinstance(combiner, example_count._ExampleCountCombiner)  # pylint: disable=protected-access


def add_rows(combiner, accumulator, inputs: metric_types.StandardMetricInputs, rows: int):
    """``combiner.add_input`` for ``rows`` rows given as one input (``batchable``)."""
    if (isinstance(combiner, example_count._ExampleCountCombiner)  # pylint: disable=protected-access
            and not (combiner._example_weighted and inputs.example_weight is not None)):  # pylint: disable=protected-access
        for _ in range(rows):  # an unweighted count adds one per input
            accumulator = combiner.add_input(accumulator, inputs)
        return accumulator
    return combiner.add_input(accumulator, inputs)


STANDARD_KEYS = (constants.LABELS_KEY, constants.PREDICTIONS_KEY, constants.EXAMPLE_WEIGHTS_KEY)


def leaves(value) -> Iterable[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    else:
        yield value


def hashable(value):
    """A dict of arrays as a hashable value (TypeError for anything else)."""
    if isinstance(value, dict):
        return tuple((k, hashable(v)) for k, v in sorted(value.items()))
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return value.shape, tuple(value.ravel().tolist())
        return value.dtype.str, value.shape, value.tobytes()
    raise TypeError(type(value))


def take(value, rows: np.ndarray):
    """``value`` (an array, or a dict of them per model or output) at ``rows``."""
    if isinstance(value, dict):
        return {k: take(v, rows) for k, v in value.items()}
    return None if value is None else value[rows]


class Evaluation:
    """One evaluation: ``add(record_batch)`` for each batch of the eval split, then
    ``sliced_results()``. The record batches are TFXIO's, with the serialized examples in
    ``tfma.ARROW_INPUT_COLUMN``, as TFX's Evaluator reads them."""

    def __init__(self, eval_config: config_pb2.EvalConfig, eval_shared_models: List[Any]):
        self.eval_config = eval_config
        self.models = eval_shared_models
        specs = list(eval_config.model_specs)
        by_name = {m.model_name: m for m in eval_shared_models}
        single = len(specs) == 1
        self.transform = model_util.ModelSignaturesDoFn(
            model_specs=specs, eval_shared_models=by_name,
            output_keypath=(constants.TRANSFORMED_FEATURES_KEY,),
            signature_names={'' if single else s.name: list(s.preprocessing_function_names)
                             for s in specs},
            default_signature_names=list(transformed_features_extractor._DEFAULT_SIGNATURE_NAMES),  # pylint: disable=protected-access
            prefer_dict_outputs=True)
        self.predict = model_util.ModelSignaturesDoFn(
            model_specs=specs, eval_shared_models=by_name,
            output_keypath=(constants.PREDICTIONS_KEY,),
            signature_names={'' if single else s.name: [s.signature_name] for s in specs},
            prefer_dict_outputs=False)
        self.slice_key_fn = ExtractSliceKeysFn(eval_config, materialize=False)
        self.slice_specs = [slicer.SingleSliceSpec(spec=s) for s in eval_config.slicing_specs
                            ] or [slicer.SingleSliceSpec()]
        self.slice_columns = sorted({k for s in eval_config.slicing_specs
                                     for k in list(s.feature_keys) + list(s.feature_values)})
        self.slice_keys_of: Dict[Any, np.ndarray] = {}

        computations = mpv._filter_and_separate_computations(  # pylint: disable=protected-access
            metric_specs.to_computations(list(eval_config.metrics_specs),
                                         eval_config=eval_config))
        self.derived = computations.derived_computations
        self.ci_derived = computations.ci_derived_computations
        batched = [c for c in computations.non_derived_computations if batchable(c)]
        per_row = [c for c in computations.non_derived_computations if not batchable(c)]
        # Two tuple combiners of TFMA's, for the batched computations and the others; a
        # slice's accumulator is the pair.
        self.combines = [mpv._ComputationsCombineFn(cs) for cs in (batched, per_row)]  # pylint: disable=protected-access
        self.preprocess = mpv._PreprocessorDoFn(per_row)  # pylint: disable=protected-access
        self.fanout = slicer._FanoutSlicesDoFn(  # pylint: disable=protected-access
            lambda k: k not in (constants.SLICE_KEY_TYPES_KEY, constants.SLICE_KEYS_KEY))
        self.accumulators: Dict[Any, List[Any]] = {}
        self.examples = 0
        for fn in (self.transform, self.predict, self.preprocess):
            fn.setup()
        for combine in self.combines:
            combine.setup()
        self.preprocess.start_bundle()

    def batched_extracts(self, record_batch) -> Dict[str, Any]:
        """The batched extract TFMA's default extractors make of one record batch, up to
        the predictions (features, transformed features, labels, weights, predictions)."""
        columns, serialized = (features_extractor.  # pylint: disable=protected-access
                               _drop_unsupported_columns_and_fetch_raw_data_column(record_batch))
        batch = {constants.FEATURES_KEY: util.record_batch_to_tensor_values(columns, {}),
                 constants.INPUT_KEY: serialized}
        batch = self.transform.process(batch)[0]
        specs = list(self.eval_config.model_specs)
        batch[constants.LABELS_KEY] = model_util.get_feature_values_for_model_spec_field(
            specs, 'label_key', 'label_keys', batch, True)
        weights = model_util.get_feature_values_for_model_spec_field(
            specs, 'example_weight_key', 'example_weight_keys', batch)
        if weights is not None:
            batch[constants.EXAMPLE_WEIGHTS_KEY] = weights
        return self.predict.process(batch)[0]

    def row_slice_keys(self, batch: Dict[str, Any], rows: int) -> List[np.ndarray]:
        """Each row's slice keys, by TFMA's ``ExtractSliceKeysFn``, computed once per
        distinct value of the slicing columns (on a one-row extract of those columns)."""
        def slicing_columns(features):
            return {k: v for k, v in (features or {}).items() if k in self.slice_columns}

        transformed = batch.get(constants.TRANSFORMED_FEATURES_KEY)
        if transformed and len(self.eval_config.model_specs) > 1:
            transformed = {name: slicing_columns(t) for name, t in transformed.items()}
        else:
            transformed = slicing_columns(transformed)
        reduced = {constants.FEATURES_KEY: slicing_columns(batch[constants.FEATURES_KEY]),
                   constants.TRANSFORMED_FEATURES_KEY: transformed}
        if any(True for _ in leaves(reduced)):
            split = util.split_extracts(reduced)
        else:  # no slicing column in the data: every row has the same (overall) slice
            split = [reduced] * rows
        if len(split) != rows:
            raise ValueError(f'slicing columns {self.slice_columns}: {len(split)} values '
                             f'for {rows} rows')
        result = []
        for row in split:
            try:
                value = hashable(row)
            except TypeError:  # not arrays (a sparse value): no cache
                value = None
            keys = self.slice_keys_of.get(value) if value is not None else None
            if keys is None:
                keys = self.slice_key_fn.process(row, self.slice_specs)[0][
                    constants.SLICE_KEY_TYPES_KEY]
                if value is not None:
                    self.slice_keys_of[value] = keys
            result.append(keys)
        return result

    def accumulator(self, slice_key) -> List[Any]:
        if slice_key not in self.accumulators:
            self.accumulators[slice_key] = [c.create_accumulator() for c in self.combines]
        return self.accumulators[slice_key]

    def add(self, record_batch) -> None:
        batch = self.batched_extracts(record_batch)
        rows = record_batch.num_rows
        slice_keys = self.row_slice_keys(batch, rows)
        standard = {k: batch[k] for k in STANDARD_KEYS if k in batch}
        # One value per row in every label, prediction and weight: then a slice's rows
        # flatten to one (label, prediction, weight) each, in row order (``batchable``).
        dense = all(isinstance(v, np.ndarray) and v.shape in ((rows,), (rows, 1))
                    for v in leaves(standard) if v is not None)
        examples = None
        if self.combines[1]._combiners or not dense:  # pylint: disable=protected-access
            examples = unbatch_extractor._extract_unbatched_inputs(batch)  # pylint: disable=protected-access
        # The batched computations: one input per slice and batch, or per row.
        batched = self.combines[0]
        if batched._combiners:  # pylint: disable=protected-access
            if dense:
                rows_of: Dict[Any, List[int]] = {}
                for i, keys in enumerate(slice_keys):
                    for key in set(keys):
                        rows_of.setdefault(key, []).append(i)
                for key, indices in rows_of.items():
                    inputs = metric_types.StandardMetricInputs(
                        take(standard, np.asarray(indices)))
                    accumulator = self.accumulator(key)
                    accumulator[0] = [add_rows(c, a, inputs, len(indices)) for c, a in zip(
                        batched._combiners, accumulator[0])]  # pylint: disable=protected-access
            else:
                for example, keys in zip(examples, slice_keys):
                    inputs = metric_types.StandardMetricInputs(
                        {k: example[k] for k in STANDARD_KEYS if k in example})
                    for key in set(keys):
                        accumulator = self.accumulator(key)
                        accumulator[0] = [c.add_input(a, inputs) for c, a in zip(
                            batched._combiners, accumulator[0])]  # pylint: disable=protected-access
        # The others, as TFMA's evaluator runs them: per row and slice.
        if self.combines[1]._combiners:  # pylint: disable=protected-access
            for example, keys in zip(examples, slice_keys):
                example[constants.SLICE_KEY_TYPES_KEY] = keys
                for preprocessed in self.preprocess.process(example):
                    for key, element in self.fanout.process(preprocessed):
                        accumulator = self.accumulator(key)
                        accumulator[1] = self.combines[1].add_input(accumulator[1], element)
        self.examples += rows

    def sliced_results(self) -> List[Tuple[Any, Dict[Any, Any]]]:
        """(slice key, metrics, plots and attributions) per slice, as TFMA's evaluator
        outputs them before it splits them by kind."""
        self.preprocess.finish_bundle()
        baseline = model_util.get_baseline_model_spec(self.eval_config)
        baseline_name = baseline.name if baseline else None
        results = []
        for slice_key, accumulators in self.accumulators.items():
            values = {}
            for combine, accumulator in zip(self.combines, accumulators):
                values.update(combine.extract_output(combine.compact(accumulator)))
            for c in self.derived:
                values.update(c.result(values))
            if baseline_name:
                values.update(diff_metrics(values, baseline_name))
            for c in self.ci_derived:
                values.update(c.result(values))
            results.append(mpv._remove_private_metrics(slice_key, values))  # pylint: disable=protected-access
        return results


def diff_metrics(values: Dict[Any, Any], baseline_name: str) -> Dict[Any, Any]:
    """The candidate-minus-baseline metrics TFMA adds (``add_diff_metrics`` in
    ``_AddDerivedCrossSliceAndDiffMetrics``)."""
    diffs = {}
    for key, value in values.items():
        if mpv._is_private_metrics(key) or key.is_diff:  # pylint: disable=protected-access
            continue
        baseline_key = key.make_baseline_key(baseline_name)
        if key.model_name != baseline_name and baseline_key in values:
            if mpv._is_metric_diffable(value):  # pylint: disable=protected-access
                diffs[key.make_diff_key()] = value - values[baseline_key]
    return diffs


def by_kind(sliced, key_type) -> List[Tuple[Any, Dict[Any, Any]]]:
    return [mpv._filter_by_key_type(s, key_type) for s in sliced]  # pylint: disable=protected-access


def validation_result(sliced_metrics, eval_config: config_pb2.EvalConfig,
                      rubber_stamp: bool) -> validation_result_pb2.ValidationResult:
    """TFMA's validation of the metrics against the thresholds, merged as its writer does."""
    combine = writer.CombineValidations(eval_config, rubber_stamp=rubber_stamp)
    accumulator = combine.create_accumulator()
    for sliced in sliced_metrics:
        accumulator = combine.add_input(
            accumulator, metrics_validator.validate_metrics(sliced, eval_config))
    return combine.extract_output(accumulator)


def write_records(path: str, protos: Iterable[Any]) -> None:
    with tf.io.TFRecordWriter(path) as w:
        for proto in protos:
            w.write(proto.SerializeToString())


def write_results(output_path: str, evaluation: Evaluation) -> None:
    """The files TFMA's default writers write for a tfrecord output (one shard each):
    ``eval_config.json``, ``metrics-00000-of-00001.tfrecord``, ``plots-…``,
    ``attributions-…`` (one record per slice each) and ``validations.tfrecord``."""
    eval_config, models = evaluation.eval_config, evaluation.models
    sliced = evaluation.sliced_results()
    metrics = by_kind(sliced, metric_types.MetricKey)
    tf.io.gfile.makedirs(output_path)
    shard = '-00000-of-00001.tfrecord'
    write_records(os.path.join(output_path, constants.METRICS_KEY + shard),
                  (writer.convert_slice_metrics_to_proto(m, []) for m in metrics))
    write_records(os.path.join(output_path, constants.PLOTS_KEY + shard),
                  (writer.convert_slice_plots_to_proto(p, [])
                   for p in by_kind(sliced, metric_types.PlotKey)))
    write_records(os.path.join(output_path, constants.ATTRIBUTIONS_KEY + shard),
                  (writer.convert_slice_attributions_to_proto(a)
                   for a in by_kind(sliced, metric_types.AttributionsKey)))
    write_records(os.path.join(output_path, constants.VALIDATIONS_KEY + '.tfrecord'),
                  [validation_result(metrics, eval_config, model_util.has_rubber_stamp(models))])
    # As model_eval_lib.default_writers and EvalConfigWriter write it for TFX's Evaluator.
    run = eval_config_writer._serialize_eval_run(  # pylint: disable=protected-access
        eval_config, '<user provided PCollection>', '<unknown>',
        {m.model_name: m.model_path for m in models})
    with tf.io.gfile.GFile(os.path.join(
            output_path, f'{eval_config_writer.EVAL_CONFIG_FILE}.'
                         f'{eval_config_writer.EVAL_CONFIG_FILE_FORMAT}'), 'w') as f:
        f.write(run + '\n')


def evaluate(eval_config: config_pb2.EvalConfig, eval_shared_models: List[Any],
             record_batches: Iterable[Any], output_path: str) -> int:
    """TFMA's evaluation of ``record_batches`` written to ``output_path``; the row count.

    ``eval_config`` as TFX's Evaluator passes it to ``ExtractEvaluateAndWriteResults``,
    which completes it once more with the models' defaults, as here."""
    eval_config = model_eval_lib._update_eval_config_with_defaults(  # pylint: disable=protected-access
        eval_config, eval_shared_models)
    evaluation = Evaluation(eval_config, eval_shared_models)
    for batch in record_batches:
        evaluation.add(batch)
    write_results(output_path, evaluation)
    return evaluation.examples
