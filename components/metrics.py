"""Binary-classification metrics read off the calibration histogram that AUC already needs.

TFMA computes ``BinaryAccuracy``, ``Precision`` and ``Recall`` (at the 0.5 threshold) with a
per-example combiner of their own, and ``Calibration`` with another, beside the 10,000-bucket
calibration histogram that ``AUC``, ``CalibrationPlot`` and ``ConfusionMatrixPlot`` share.
Every combiner handles each example once per slice. The classes here (``Histogram`` + TFMA's
class name; TFMA looks its own classes up first) report under TFMA's metric names, but derive
their values from that one histogram, which TFMA computes once: 0.5 is one of its bucket
edges, so the confusion matrix at 0.5 is exact (only a prediction of exactly 0.5 counts as
positive here and as negative in TFMA's combiner), and calibration is the ratio of its
weighted sums. On 50k rows TFMA took 30% less time (docs/performance.md).
``AUC`` too: TFMA derives it per slice by rebinning the histogram to 10,000 thresholds and
building the confusion matrix at each, in Python loops (~0.1 s per slice and model, so ~2.5 s
of a 25-slice evaluation whatever the data's size); ``roc_auc`` does the same arithmetic
with numpy.
``pipeline/evaluation.py`` uses them for binary tasks.
"""
import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import (binary_confusion_matrices, calibration_histogram,
                                               metric_types, metric_util)

from components.features import GAIN_OVER_TRIVIAL, TRIVIAL_BASELINE

THRESHOLD = 0.5
# The first bucket whose predictions are >= THRESHOLD (bucket 0 holds predictions below 0).
_FIRST_POSITIVE = int(THRESHOLD * calibration_histogram.DEFAULT_NUM_BUCKETS) + 1


def ratio(numerator: float, denominator: float) -> float:
    """NaN when there is nothing to divide by (no positive predictions, no labels...)."""
    return numerator / denominator if denominator > 0 else float('nan')


def confusion_at_threshold(buckets):
    """(tp, tn, fp, fn), weighted, of the predictions >= THRESHOLD as positive."""
    tp = tn = fp = fn = 0.0
    for b in buckets:
        negatives = b.weighted_examples - b.weighted_labels
        if b.bucket_id >= _FIRST_POSITIVE:
            tp, fp = tp + b.weighted_labels, fp + negatives
        else:
            fn, tn = fn + b.weighted_labels, tn + negatives
    return tp, tn, fp, fn


class _FromHistogram(metric_types.Metric):
    """A metric computed by ``value(buckets)`` from TFMA's default calibration histogram."""
    NAME = ''

    @staticmethod
    def value(buckets) -> float:
        raise NotImplementedError

    def __init__(self, name: str = ''):
        value = self.value

        def computations(name, eval_config=None, model_name='', output_name='', sub_key=None,
                         aggregation_type=None, class_weights=None, example_weighted=False):
            histogram = calibration_histogram.calibration_histogram(
                eval_config=eval_config, model_name=model_name, output_name=output_name,
                sub_key=sub_key, aggregation_type=aggregation_type,
                class_weights=class_weights, example_weighted=example_weighted)
            source = histogram[-1].keys[-1]
            key = metric_types.MetricKey(name=name, model_name=model_name,
                                         output_name=output_name, sub_key=sub_key,
                                         example_weighted=example_weighted)
            return histogram + [metric_types.DerivedMetricComputation(
                keys=[key], result=lambda metrics: {key: value(metrics[source])})]

        super().__init__(metric_util.merge_per_key_computations(computations),
                         name=name or self.NAME)


class HistogramBinaryAccuracy(_FromHistogram):
    NAME = 'binary_accuracy'

    @staticmethod
    def value(buckets):
        tp, tn, fp, fn = confusion_at_threshold(buckets)
        return ratio(tp + tn, tp + tn + fp + fn)


class HistogramPrecision(_FromHistogram):
    NAME = 'precision'

    @staticmethod
    def value(buckets):
        tp, _, fp, _ = confusion_at_threshold(buckets)
        return ratio(tp, tp + fp)


class HistogramRecall(_FromHistogram):
    NAME = 'recall'

    @staticmethod
    def value(buckets):
        tp, _, _, fn = confusion_at_threshold(buckets)
        return ratio(tp, tp + fn)


class HistogramCalibration(_FromHistogram):
    """Sum of the predictions over sum of the labels, as TFMA's ``Calibration``."""
    NAME = 'calibration'

    @staticmethod
    def value(buckets):
        return ratio(sum(b.weighted_predictions for b in buckets),
                     sum(b.weighted_labels for b in buckets))


def roc_auc(buckets, num_thresholds: int = 10_000) -> float:
    """TFMA's ``AUC()`` with its defaults (ROC, mid-point interpolation, ``num_thresholds``
    thresholds evenly spaced over [0, 1] plus -epsilon and 1 + epsilon), from the histogram.

    Step for step what ``binary_confusion_matrices`` and ``AUC._metric_value`` do: each
    histogram bucket falls into the threshold interval that holds its left edge (a
    threshold t counts predictions > t, so t + epsilon is the cut), the true/false
    positives at a threshold are the sums from its interval up, and past 1 + epsilon they
    are none.
    """
    eps = binary_confusion_matrices._EPSILON  # pylint: disable=protected-access
    n = calibration_histogram.DEFAULT_NUM_BUCKETS
    ids = np.array([b.bucket_id for b in buckets], dtype=np.float64)
    positives = np.array([b.weighted_labels for b in buckets], dtype=np.float64)
    negatives = np.array([b.weighted_examples for b in buckets], dtype=np.float64) - positives
    left_edge = np.where(ids == 0, -np.inf, np.where(ids >= n + 1, np.inf, (ids - 1) / n))
    thresholds = np.concatenate([[-eps], np.arange(1, num_thresholds - 1) / (num_thresholds - 1),
                                 [1.0 + eps]])
    cuts = np.where(thresholds != 0, thresholds + eps, thresholds)
    interval = np.searchsorted(cuts[1:], left_edge, side='right')

    def above_and_below(weights):  # the sums over the intervals >= i, and < i
        counts = np.bincount(interval, weights=weights, minlength=num_thresholds)
        return np.cumsum(counts[::-1])[::-1], np.concatenate([[0.0], np.cumsum(counts)[:-1]])

    (tp, fn), (fp, tn) = above_and_below(positives), above_and_below(negatives)
    tp[-1] = fp[-1] = 0.0  # the 1 + epsilon threshold: nothing is above it
    fn[-1], tn[-1] = tp[0], fp[0]
    with np.errstate(invalid='ignore', divide='ignore'):
        recall, fp_rate = tp / (tp + fn), fp / (fp + tn)
    return float(np.nansum((fp_rate[:-1] - fp_rate[1:]) * (recall[:-1] + recall[1:]) / 2))


class HistogramAUC(_FromHistogram):
    NAME = 'auc'
    value = staticmethod(roc_auc)


# TFMA's metric class -> the class above that replaces it in binary evaluations.
HISTOGRAM_METRICS = {name: f'Histogram{name}' for name in (
    'AUC', 'BinaryAccuracy', 'Precision', 'Recall', 'Calibration')}


# ---------------------------------------------------------------------------------------
# The trivial baseline: how a model that ignores the features would score on the eval
# split, and how much better the candidate does (pipeline/evaluation.py adds it to every
# evaluation; evaluation.beat_trivial gates on it; the summary warns when it is <= 0).

# Its names, and the key metric of each task, are in components/features.py (the summary
# reads them without importing TFMA).


def trivial_value(task: str, totals) -> float:
    """The trivial model's key metric from an accumulator's totals (``_Totals``)."""
    if task == 'binary':
        return 0.5  # a constant score ranks no positive above a negative: AUC 0.5
    if task == 'multiclass':
        return ratio(max(totals.class_weights.values(), default=0.0), totals.weight)
    mean = ratio(totals.label, totals.weight)
    return ratio(totals.squared_label, totals.weight) - mean * mean  # the labels' variance


class _Totals:
    """Weighted sums over the examples: all a trivial baseline and the key metric need."""
    __slots__ = ('weight', 'label', 'squared_label', 'squared_error', 'correct', 'class_weights')

    def __init__(self):
        self.weight = self.label = self.squared_label = self.squared_error = self.correct = 0.0
        self.class_weights = {}

    def merge(self, other: '_Totals') -> '_Totals':
        for name in ('weight', 'label', 'squared_label', 'squared_error', 'correct'):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for c, w in other.class_weights.items():
            self.class_weights[c] = self.class_weights.get(c, 0.0) + w
        return self


class _TotalsCombiner(beam.CombineFn):
    """Multi-class: per-class label weights and the weight of correct argmax predictions.
    Regression: the weighted label, its square, and the squared error."""

    def __init__(self, key, eval_config, task: str, example_weighted: bool):
        self._key, self._eval_config = key, eval_config
        self._task, self._example_weighted = task, example_weighted

    def create_accumulator(self):
        return _Totals()

    def add_input(self, totals, element):
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, example_weighted=self._example_weighted,
                flatten=False, squeeze=False):
            weight = float(np.sum(weight))
            totals.weight += weight
            if self._task == 'multiclass':
                label = int(np.asarray(label).reshape(-1)[0])
                totals.class_weights[label] = totals.class_weights.get(label, 0.0) + weight
                totals.correct += weight * (int(np.argmax(prediction)) == label)
            else:
                y, p = float(np.asarray(label).reshape(-1)[0]), float(np.asarray(prediction).reshape(-1)[0])
                totals.label += weight * y
                totals.squared_label += weight * y * y
                totals.squared_error += weight * (y - p) ** 2
        return totals

    def merge_accumulators(self, accumulators):
        merged, *others = list(accumulators)
        for totals in others:
            merged.merge(totals)
        return merged

    def extract_output(self, totals):
        trivial = trivial_value(self._task, totals)
        if self._task == 'multiclass':
            gain = ratio(totals.correct, totals.weight) - trivial
        else:
            gain = trivial - ratio(totals.squared_error, totals.weight)
        return {self._key: gain, self._key._replace(name=TRIVIAL_BASELINE): trivial}


class GainOverTrivial(metric_types.Metric):
    """``gain_over_trivial``: how much better than a trivial model the model's key metric
    is on the eval split (> 0: better), and beside it ``trivial_baseline``, the trivial
    model's value (``features.KEY_METRICS``, ``features.TRIVIAL_MODELS``):

    binary      AUC - 0.5 (read off the calibration histogram AUC computes anyway);
    multi-class accuracy - the share of the most frequent class on the split;
    regression  the labels' variance (the MSE of always predicting their mean) - the MSE.
    """

    def __init__(self, task: str = 'binary', name: str = GAIN_OVER_TRIVIAL):
        super().__init__(metric_util.merge_per_key_computations(_gain_over_trivial),
                         name=name, task=task)


def _gain_over_trivial(name, task, eval_config=None, model_name='', output_name='',
                       sub_key=None, aggregation_type=None, class_weights=None,
                       example_weighted=False):
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted)
    trivial = key._replace(name=TRIVIAL_BASELINE)
    if task != 'binary':
        return [metric_types.MetricComputation(
            keys=[key, trivial], preprocessors=None,
            combiner=_TotalsCombiner(key, eval_config, task, example_weighted))]
    histogram = calibration_histogram.calibration_histogram(
        eval_config=eval_config, model_name=model_name, output_name=output_name,
        sub_key=sub_key, aggregation_type=aggregation_type, class_weights=class_weights,
        example_weighted=example_weighted)
    source = histogram[-1].keys[-1]
    return histogram + [metric_types.DerivedMetricComputation(
        keys=[key, trivial],
        result=lambda metrics: {key: roc_auc(metrics[source]) - 0.5, trivial: 0.5})]
