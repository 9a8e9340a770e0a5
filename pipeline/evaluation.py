"""The TFMA evaluation config, built from the pipeline config and the feature plan.

Metric names in the YAML (``evaluation.metrics``) are TFMA / Keras metric class names
(``AUC``, ``BinaryAccuracy``...); thresholds refer to the names TFMA reports them under
(``auc``, ``binary_accuracy``...), which are the snake_case of the class names.

``check_evaluation`` holds the refusals and needs no TensorFlow: it runs while a run's
inputs are resolved, before anything heavy loads (``pipeline/inputs.py``). TFMA and the
component modules are imported by the functions that build TFMA's config.

Every evaluation also computes ``gain_over_trivial`` and ``trivial_baseline``
(``components.metrics.GainOverTrivial``): the key metric of a trivial model on the eval
split and how much better the candidate is. ``evaluation.beat_trivial`` gates on it (true,
or null when no threshold is given): a model is blessed only if the gain is above 0
(``BEAT_TRIVIAL_MARGIN``, on the whole split).
"""
from __future__ import annotations

import json
import re
from typing import Dict, List

from components.features import GAIN_OVER_TRIVIAL, FeaturePlan
from pipeline.config import ConfigError, PipelineConfig

DEFAULT_METRICS = {
    'binary': ['ExampleCount', 'AUC', 'BinaryAccuracy', 'Precision', 'Recall', 'Calibration',
               'CalibrationPlot', 'ConfusionMatrixPlot'],
    'multiclass': ['ExampleCount', 'SparseCategoricalAccuracy', 'MultiClassConfusionMatrixPlot'],
    'regression': ['ExampleCount', 'MeanSquaredError', 'MeanAbsoluteError', 'MeanLabel',
                   'MeanPrediction'],
}


def metric_name(class_name: str) -> str:
    """The name TFMA reports a metric class under: AUC -> auc, BinaryAccuracy -> binary_accuracy."""
    return re.sub(r'(?<=[a-z0-9])([A-Z])', r'_\1', class_name).lower()


def check_evaluation(config: PipelineConfig, task: str) -> List[str]:
    """The metric names the evaluation computes for ``task``; refuses a threshold on any
    other, naming the key."""
    ev = config.evaluation
    computed = [metric_name(c) for c in (ev.metrics or DEFAULT_METRICS[task])]
    for key, entries in (('thresholds', ev.thresholds), ('change_thresholds', ev.change_thresholds)):
        for i, th in enumerate(entries):
            if th.metric not in computed:
                raise ConfigError(f'evaluation.{key}[{i}].metric: {th.metric!r} is not computed '
                                  f'(metrics: {", ".join(computed)})')
    return computed


def overall_only(metric: tfma.MetricConfig) -> tfma.MetricThreshold:
    """A threshold of ``metric`` that applies to the whole eval split, not to each slice
    (``MetricConfig.threshold`` would gate every slice, however small)."""
    import tensorflow_model_analysis as tfma

    if not metric.per_slice_thresholds:
        metric.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()])
    return metric.per_slice_thresholds[0].threshold


def metric_config(class_name: str, task: str) -> tfma.MetricConfig:
    """TFMA's metric class, or, for a binary task, its counterpart in ``components.metrics``
    that reads the value off the calibration histogram AUC computes anyway (one combiner per
    example instead of three; the same names and values)."""
    import tensorflow_model_analysis as tfma

    from components import metrics

    if task == 'binary' and class_name in metrics.HISTOGRAM_METRICS:
        return tfma.MetricConfig(class_name=metrics.HISTOGRAM_METRICS[class_name],
                                 module=metrics.__name__)
    return tfma.MetricConfig(class_name=class_name)


# The least gain over the trivial baseline that evaluation.beat_trivial accepts: strictly
# better (TFMA's bounds are inclusive), by any margin.
BEAT_TRIVIAL_MARGIN = 1e-9


def trivial_metric(task: str) -> tfma.MetricConfig:
    import tensorflow_model_analysis as tfma

    from components import metrics
    return tfma.MetricConfig(class_name='GainOverTrivial', module=metrics.__name__,
                             config=json.dumps({'task': task}))


def build_eval_config(config: PipelineConfig, plan: FeaturePlan) -> tfma.EvalConfig:
    import tensorflow_model_analysis as tfma

    from components.signatures import SERVING_DEFAULT, TRANSFORM_FEATURES

    check_evaluation(config, plan.task)
    ev = config.evaluation
    classes = list(ev.metrics or DEFAULT_METRICS[plan.task])
    by_name: Dict[str, tfma.MetricConfig] = {
        metric_name(c): metric_config(c, plan.task) for c in classes}
    by_name[GAIN_OVER_TRIVIAL] = trivial_metric(plan.task)
    if ev.gates_on_trivial:
        overall_only(by_name[GAIN_OVER_TRIVIAL]).value_threshold.CopyFrom(
            tfma.GenericValueThreshold(lower_bound={'value': BEAT_TRIVIAL_MARGIN}))

    for th in ev.thresholds:
        bounds = {}
        if th.lower is not None:
            bounds['lower_bound'] = {'value': th.lower}
        if th.upper is not None:
            bounds['upper_bound'] = {'value': th.upper}
        overall_only(by_name[th.metric]).value_threshold.CopyFrom(
            tfma.GenericValueThreshold(**bounds))
    for ch in ev.change_thresholds:
        higher = ch.higher_is_better
        overall_only(by_name[ch.metric]).change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=(tfma.MetricDirection.HIGHER_IS_BETTER if higher
                       else tfma.MetricDirection.LOWER_IS_BETTER),
            absolute={'value': -ch.max_decrease if higher else ch.max_decrease}))

    slices: List[tfma.SlicingSpec] = [tfma.SlicingSpec()]
    slices += [tfma.SlicingSpec(feature_keys=list(keys)) for keys in ev.slices]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            # TFMA calls the model through its signatures, as TF Serving does. Naming the type
            # saves TFMA loading each model (candidate and baseline) once more as Keras just to
            # detect it (tfma.utils.get_model_type): a few seconds per model per run.
            model_type=tfma.TF_GENERIC,
            signature_name=SERVING_DEFAULT,
            preprocessing_function_names=[TRANSFORM_FEATURES],
            label_key=plan.label_xf,
            prediction_key=plan.output_key)],
        metrics_specs=[tfma.MetricsSpec(metrics=list(by_name.values()))],
        slicing_specs=slices,
        # The model's compiled Keras metrics would be computed a second time; only ours count.
        options=tfma.Options(include_default_metrics={'value': False}))
