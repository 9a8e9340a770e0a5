"""components/metrics.py: the binary metrics (AUC, accuracy, precision, recall, calibration)
read off the calibration histogram give TFMA's values, through TFMA itself, on examples that
carry their own predictions (no model)."""
import os

import numpy as np
import pytest

import testlib  # noqa: F401  (puts the repository on the path)


def write_examples(path, labels, predictions, hours):
    import tensorflow as tf
    with tf.io.TFRecordWriter(path) as w:
        for label, prediction, hour in zip(labels, predictions, hours):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                'label': tf.train.Feature(float_list=tf.train.FloatList(value=[label])),
                'prediction': tf.train.Feature(float_list=tf.train.FloatList(value=[prediction])),
                'hour': tf.train.Feature(int64_list=tf.train.Int64List(value=[hour])),
            })).SerializeToString())


def evaluate(data, output, metric_configs):
    """TFMA's metrics per slice (overall and by hour): {slice: {name: value}}."""
    import tensorflow_model_analysis as tfma
    eval_config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key='label', prediction_key='prediction')],
        metrics_specs=[tfma.MetricsSpec(metrics=metric_configs)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['hour'])])
    tfma.run_model_analysis(eval_config=eval_config, data_location=data,
                            file_format='tfrecords', output_path=output)
    return {key: {name: float(value['doubleValue']) for name, value in metrics[''][''].items()}
            for key, metrics in tfma.load_eval_result(output).slicing_metrics}


def test_histogram_metrics_equal_tfma_own_and_replace_its_combiners(tmp_path):
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator
    from tensorflow_model_analysis.metrics import metric_specs
    from components import metrics
    from pipeline.evaluation import DEFAULT_METRICS, metric_config

    rng = np.random.default_rng(0)
    n = 600
    labels = (rng.random(n) < 0.3).astype(float)
    # Predictions right next to the 0.5 threshold (and the histogram's bucket edges) too.
    predictions = np.clip(0.6 * labels + 0.4 * rng.random(n), 0, 1)
    predictions[:40] = 0.5 + rng.choice([-1, 1], 40) * rng.random(40) * 1e-4
    # On the histogram's bucket edges (0 and 1 included), where AUC's thresholds cut.
    predictions[40:80] = rng.integers(0, 10_001, 40) / 10_000
    hours = rng.integers(0, 3, n)
    hours[:5] = 7  # a slice with only negatives: precision has nothing to divide by
    labels[:5] = 0.0
    predictions[:5] = 0.1
    data = str(tmp_path / 'examples.tfrecord')
    write_examples(data, labels, predictions, hours)

    names = list(metrics.HISTOGRAM_METRICS)
    ours = [metric_config(name, 'binary') for name in names]
    assert [m.class_name for m in ours] == [metrics.HISTOGRAM_METRICS[n] for n in names]
    assert [metric_config(name, 'regression').class_name for name in names] == names

    theirs = evaluate(data, str(tmp_path / 'tfma'), [tfma.MetricConfig(class_name=n)
                                                     for n in names])
    mine = evaluate(data, str(tmp_path / 'ours'), ours)
    assert set(mine) == set(theirs) and len(theirs) == 5  # overall + four hours
    for key in theirs:
        assert set(mine[key]) == set(theirs[key]) == {
            'auc', 'binary_accuracy', 'precision', 'recall', 'calibration'}
        for name, value in theirs[key].items():
            if np.isnan(value):
                assert np.isnan(mine[key][name]), (key, name)
            else:
                assert mine[key][name] == pytest.approx(value, rel=1e-9), (key, name)
    assert np.isnan(theirs[(('hour', 7),)]['precision'])

    # With AUC and the plots (the task's defaults), one per-example combiner besides the
    # example count, where TFMA's own classes need three.
    def combiners(configs):
        computations = metric_specs.to_computations(
            [tfma.MetricsSpec(metrics=configs)], eval_config=tfma.EvalConfig(
                model_specs=[tfma.ModelSpec(label_key='label')]))
        separated = metrics_plots_and_validations_evaluator._filter_and_separate_computations(
            computations)
        return sorted(type(c.combiner).__name__ for c in separated[0])

    defaults = DEFAULT_METRICS['binary']
    assert combiners([metric_config(n, 'binary') for n in defaults]) == [
        '_CalibrationHistogramCombiner', '_ExampleCountCombiner']
    assert len(combiners([tfma.MetricConfig(class_name=n) for n in defaults])) == 4
