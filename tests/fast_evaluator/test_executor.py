"""FastEvaluator writes what TFX's Evaluator (TFMA with Beam) writes, on small artifacts.

Each case evaluates the same examples with the same models through both executors and
compares what a user reads back: ``tfma.load_metrics`` (every metric of every slice, for
the candidate, the baseline and their difference), ``tfma.load_plots``,
``tfma.load_validation_result``, ``tfma.load_eval_result`` and the blessing. Every case
has the trivial baseline the pipeline adds to every evaluation (``GainOverTrivial``), some
with the ``evaluation.beat_trivial`` gate. Values may differ in the last digits only: the
models predict on batches of another size.
"""
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.writers import eval_config_writer
from tfx.components.evaluator import executor as tfx_executor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs

from components import metrics
from components.fast_evaluator import executor as fast_executor, in_memory
from pipeline.evaluation import BEAT_TRIVIAL_MARGIN, overall_only, trivial_metric

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BEAM_ARGS = ['--direct_running_mode=in_memory', '--direct_num_workers=1',
             f'--setup_file={os.path.join(REPO, "setup.py")}']
ROWS = 600
CLASSES = 3


def example(i, rng):
    """A float, an hour, a company that is sometimes missing, and the three tasks' labels."""
    x = float(rng.normal())
    features = {
        'x': tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
        'hour': tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 4])),
        'company': tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[] if i % 7 == 0 else [f'Co {i % 3}'.encode()])),
        'label': tf.train.Feature(int64_list=tf.train.Int64List(
            value=[int(x + rng.normal() > 0)])),
        'klass': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(i % CLASSES)])),
        'y': tf.train.Feature(float_list=tf.train.FloatList(value=[2 * x + float(rng.normal())])),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def make_examples(root, rows):
    rng = np.random.default_rng(0)
    examples = standard_artifacts.Examples()
    examples.uri = str(root)
    examples.id = 1
    examples.split_names = artifact_utils.encode_split_names(['train', 'eval'])
    for split, n in (('train', 10), ('eval', rows)):
        path = os.path.join(artifact_utils.get_split_uri([examples], split), 'data.gz')
        os.makedirs(os.path.dirname(path))
        with tf.io.TFRecordWriter(path, 'GZIP') as w:
            for i in range(n):
                w.write(example(i, rng))
    return examples


class TaskModel(tf.Module):
    """A SavedModel with the signatures the pipeline's models have: ``serving_default``
    (serialized examples -> the prediction) and ``transform_features`` (-> the label)."""

    def __init__(self, task, scale, wiggle):
        super().__init__()
        self.task = task
        self.scale = tf.Variable(scale, dtype=tf.float32)
        self.wiggle = tf.Variable(wiggle, dtype=tf.float32)

    def parse(self, examples):
        return tf.io.parse_example(examples, {
            'x': tf.io.FixedLenFeature([1], tf.float32),
            'label': tf.io.FixedLenFeature([1], tf.int64),
            'klass': tf.io.FixedLenFeature([1], tf.int64),
            'y': tf.io.FixedLenFeature([1], tf.float32)})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, examples):
        x = self.parse(examples)['x']
        x = x * self.scale + self.wiggle * tf.sin(7 * x)  # a wiggle ranks the rows worse
        if self.task == 'binary':
            return {'probability': tf.sigmoid(x)}
        if self.task == 'multiclass':
            return {'probabilities': tf.nn.softmax(x * tf.constant([[-1.0, 0.2, 1.0]]))}
        return {'value': 2 * x}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def transform(self, examples):
        parsed = self.parse(examples)
        label = {'binary': parsed['label'], 'multiclass': parsed['klass'],
                 'regression': parsed['y']}[self.task]
        return {'label_xf': label}


def make_model(root, task, scale, wiggle, model_id):
    module = TaskModel(task, scale, wiggle)
    tf.saved_model.save(module, os.path.join(root, 'Format-Serving'), signatures={
        'serving_default': module.serve, 'transform_features': module.transform})
    model = standard_artifacts.Model()
    model.uri = str(root)
    model.id = model_id
    return model


def threshold(lower=None, upper=None, max_decrease=None, slicing_specs=({},)):
    value = tfma.MetricThreshold()
    if lower is not None or upper is not None:
        bounds = {}
        if lower is not None:
            bounds['lower_bound'] = {'value': lower}
        if upper is not None:
            bounds['upper_bound'] = {'value': upper}
        value.value_threshold.CopyFrom(tfma.GenericValueThreshold(**bounds))
    if max_decrease is not None:
        value.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={'value': -max_decrease}))
    return [tfma.PerSliceMetricThreshold(
        slicing_specs=[tfma.SlicingSpec(**s) for s in slicing_specs], threshold=value)]


SLICES = [tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['hour']),
          tfma.SlicingSpec(feature_keys=['company']),
          tfma.SlicingSpec(feature_keys=['hour', 'company']),
          tfma.SlicingSpec(feature_values={'hour': '1'})]


def eval_config(task, prediction_key, metric_configs, slicing_specs=SLICES):
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            model_type=tfma.TF_GENERIC, signature_name='serving_default',
            preprocessing_function_names=['transform_features'], label_key='label_xf',
            prediction_key=prediction_key)],
        metrics_specs=[tfma.MetricsSpec(metrics=metric_configs)],
        slicing_specs=slicing_specs,
        options=tfma.Options(include_default_metrics={'value': False}))


def histogram_metric(name, **kwargs):
    return tfma.MetricConfig(class_name=metrics.HISTOGRAM_METRICS[name], module=metrics.__name__,
                             **kwargs)


def gain_over_trivial(task, beat_trivial=False):
    """``components.metrics.GainOverTrivial`` as pipeline/evaluation.py adds it to every
    evaluation, gated as ``evaluation.beat_trivial: true`` gates it."""
    metric = trivial_metric(task)
    if beat_trivial:
        overall_only(metric).value_threshold.CopyFrom(
            tfma.GenericValueThreshold(lower_bound={'value': BEAT_TRIVIAL_MARGIN}))
    return metric


CASES = {
    # Binary, as the pipeline configures it: the histogram metrics, TFMA's plots; the AUC
    # bounded overall and on one slice, a change threshold against the baseline that the
    # candidate (a worse model) fails: not blessed.
    'binary_baseline': ('binary', 'probability', [
        tfma.MetricConfig(class_name='ExampleCount'),
        histogram_metric('AUC', per_slice_thresholds=threshold(lower=0.6, max_decrease=0.001)
                         + threshold(lower=0.5, slicing_specs=[{'feature_values': {'hour': '1'}}])),
        histogram_metric('BinaryAccuracy'), histogram_metric('Precision'),
        histogram_metric('Recall'), histogram_metric('Calibration'),
        tfma.MetricConfig(class_name='AUC'),  # TFMA's own, beside ours
        tfma.MetricConfig(class_name='CalibrationPlot'),
        tfma.MetricConfig(class_name='ConfusionMatrixPlot'),
        gain_over_trivial('binary')], True),
    # Binary, first model (no baseline): the change threshold is ignored, the bound and
    # the beat_trivial gate hold.
    'binary_first': ('binary', 'probability', [
        tfma.MetricConfig(class_name='ExampleCount'),
        histogram_metric('AUC', per_slice_thresholds=threshold(lower=0.6, max_decrease=0.001)),
        tfma.MetricConfig(class_name='BinaryAccuracy'),
        gain_over_trivial('binary', beat_trivial=True)], False),
    # Multi-class with a baseline (TFMA's Keras-metric and confusion-matrix combiners, and
    # the trivial baseline's, row by row): blessed.
    'multiclass_baseline': ('multiclass', 'probabilities', [
        tfma.MetricConfig(class_name='ExampleCount'),
        tfma.MetricConfig(class_name='SparseCategoricalAccuracy',
                          per_slice_thresholds=threshold(lower=0.1, max_decrease=0.5)),
        tfma.MetricConfig(class_name='MultiClassConfusionMatrixPlot'),
        gain_over_trivial('multiclass')], True),
    # Regression, first model, an upper bound it misses: not blessed.
    'regression_first': ('regression', 'value', [
        tfma.MetricConfig(class_name='ExampleCount'),
        tfma.MetricConfig(class_name='MeanSquaredError',
                          per_slice_thresholds=threshold(upper=0.01)),
        tfma.MetricConfig(class_name='MeanAbsoluteError'),
        tfma.MetricConfig(class_name='MeanLabel'),
        tfma.MetricConfig(class_name='MeanPrediction'),
        gain_over_trivial('regression')], False),
    # Regression, a model worse than predicting the labels' mean, with a baseline: the
    # beat_trivial gate alone refuses it.
    'regression_worse_than_trivial': ('regression', 'value', [
        tfma.MetricConfig(class_name='ExampleCount'),
        tfma.MetricConfig(class_name='MeanSquaredError'),
        gain_over_trivial('regression', beat_trivial=True)], True),
}


def evaluate(executor_class, examples, candidate, baseline, config, out):
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(out / 'evaluation'), str(out / 'blessing')
    os.makedirs(evaluation.uri)
    os.makedirs(blessing.uri)
    inputs = {specs.EXAMPLES_KEY: [examples], specs.MODEL_KEY: [candidate]}
    if baseline is not None:
        inputs[specs.BASELINE_MODEL_KEY] = [baseline]
    executor = executor_class(executor_class.Context(beam_pipeline_args=BEAM_ARGS,
                                                     tmp_dir=str(out / 'tmp'), unique_id='1'))
    executor.Do(inputs, {specs.EVALUATION_KEY: [evaluation], specs.BLESSING_KEY: [blessing]},
                {specs.EVAL_CONFIG_KEY: json_format.MessageToJson(config),
                 specs.EXAMPLE_SPLITS_KEY: json.dumps(['eval'])})
    return evaluation.uri, blessing


def by_slice(records):
    return {json_format.MessageToJson(r.slice_key, sort_keys=True): json_format.MessageToDict(r)
            for r in records}


def assert_close(ours, theirs, path):
    """Equal, floats to 1e-5 (relative) or 1e-6, lists of keyed values in any order."""
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), (path, set(ours) ^ set(theirs))
        for key in ours:
            assert_close(ours[key], theirs[key], f'{path}.{key}')
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for name in ('key', 'sliceKey', 'metricKey'):  # keyed entries, in any order
            if ours and isinstance(ours[0], dict) and name in ours[0]:
                ours, theirs = (sorted(x, key=lambda e: json.dumps(e[name], sort_keys=True))
                                for x in (ours, theirs))
                break
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_close(a, b, f'{path}[{i}]')
    elif isinstance(ours, float) or isinstance(theirs, float):
        assert math.isclose(ours, theirs, rel_tol=1e-5, abs_tol=1e-6) or (
            math.isnan(ours) and math.isnan(theirs)), (path, ours, theirs)
    else:
        assert ours == theirs, (path, ours, theirs)


@pytest.fixture(scope='module')
def artifacts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('fast_evaluator')
    models = {task: (make_model(tmp / f'{task}_candidate', task, 0.6, 0.5, 2),
                     make_model(tmp / f'{task}_baseline', task, 1.0, 0.0, 3))
              for task in ('binary', 'multiclass', 'regression')}
    # Predicts -2x for labels ~ 2x: an MSE (~17) far above the labels' variance (~5).
    models['regression_worse_than_trivial'] = (
        make_model(tmp / 'worse_candidate', 'regression', -1.0, 0.0, 4), models['regression'][1])
    return tmp, make_examples(tmp / 'examples', ROWS), models


@pytest.mark.parametrize('case', sorted(CASES))
def test_the_same_evaluation_as_tfx_evaluator(artifacts, case):
    tmp, examples, models = artifacts
    task, prediction_key, metric_configs, with_baseline = CASES[case]
    config = eval_config(task, prediction_key, metric_configs)
    candidate, baseline = models.get(case, models[task])
    baseline = baseline if with_baseline else None
    # It takes the in-memory path here (nothing it hands over to Beam).
    assert fast_executor.not_in_memory({specs.EXAMPLES_KEY: [examples],
                                        specs.MODEL_KEY: [candidate]},
                                       {specs.EVAL_CONFIG_KEY: '{}'}, BEAM_ARGS) is None
    theirs, their_blessing = evaluate(tfx_executor.Executor, examples, candidate, baseline,
                                      config, tmp / case / 'tfx')
    ours, our_blessing = evaluate(fast_executor.Executor, examples, candidate, baseline,
                                  config, tmp / case / 'fast')

    expected, got = by_slice(tfma.load_metrics(theirs)), by_slice(tfma.load_metrics(ours))
    # Overall, 4 hours, 3 companies (rows without one are in no company slice), 12 pairs,
    # and hour 1 again by value: the same slice keys for both.
    assert len(got) == 1 + 4 + 3 + 12
    assert_close(got, expected, 'metrics')
    overall = got['{}']  # the overall slice's key is empty
    names = {(kv['key']['name'], kv['key'].get('modelName', ''), bool(kv['key'].get('isDiff')))
             for kv in overall['metricKeysAndValues']}
    assert ('example_count', 'candidate' if with_baseline else '', False) in names
    assert any(diff for _, _, diff in names) == with_baseline
    assert_close(by_slice(tfma.load_plots(ours)), by_slice(tfma.load_plots(theirs)), 'plots')

    validation = json_format.MessageToDict(tfma.load_validation_result(ours))
    assert_close(validation, json_format.MessageToDict(tfma.load_validation_result(theirs)),
                 'validation')
    blessed = {'binary_baseline': 0, 'binary_first': 1, 'multiclass_baseline': 1,
               'regression_first': 0, 'regression_worse_than_trivial': 0}[case]
    assert validation.get('validationOk', False) == bool(blessed)
    # The trivial baseline and the gain over it, for the candidate (and the baseline).
    gains = {kv['key'].get('modelName', ''): kv['value']['doubleValue']
             for kv in overall['metricKeysAndValues']
             if kv['key']['name'] == 'gain_over_trivial' and not kv['key'].get('isDiff')}
    assert set(gains) == ({'candidate', 'baseline'} if with_baseline else {''})
    if case == 'regression_worse_than_trivial':
        assert gains['candidate'] < 0 < gains['baseline']
        [failure] = validation['metricValidationsPerSlice'][0]['failures']
        assert failure['metricKey']['name'] == 'gain_over_trivial'
    assert our_blessing.get_int_custom_property('blessed') == blessed
    assert (os.listdir(our_blessing.uri) == os.listdir(their_blessing.uri)
            == ['BLESSED' if blessed else 'NOT_BLESSED'])
    assert ({k: our_blessing.get_custom_property(k) for k in our_blessing.mlmd_artifact.custom_properties}
            == {k: their_blessing.get_custom_property(k)
                for k in their_blessing.mlmd_artifact.custom_properties})

    # tfma.load_eval_result reads it as it reads TFMA's (config, model locations, slices).
    # (Which model a call without a model name gets is the map's order in the JSON file,
    # which varies between TFMA's own runs.)
    assert eval_config_writer.load_eval_run(ours) == eval_config_writer.load_eval_run(theirs)
    name = 'candidate' if with_baseline else None
    ours_result = tfma.load_eval_result(ours, model_name=name)
    theirs_result = tfma.load_eval_result(theirs, model_name=name)
    assert ours_result.config == theirs_result.config
    assert ours_result.model_location == theirs_result.model_location == os.path.join(
        candidate.uri, 'Format-Serving')
    assert len(ours_result.slicing_metrics) == len(theirs_result.slicing_metrics)
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs))


def test_what_it_hands_over_to_beam(artifacts, tmp_path, monkeypatch):
    """More than MAX_ROWS rows with a runner that is not Beam's local one, no rows, or an
    option only TFMA's Beam path implements: Beam."""
    _, examples, models = artifacts
    candidate = models['binary'][0]
    inputs = {specs.EXAMPLES_KEY: [examples], specs.MODEL_KEY: [candidate]}
    config = eval_config('binary', 'probability', [tfma.MetricConfig(class_name='ExampleCount')])
    props = {specs.EVAL_CONFIG_KEY: json_format.MessageToJson(config)}
    flink = ['--runner=FlinkRunner', '--flink_master=localhost:8081']
    monkeypatch.setattr(fast_executor, 'MAX_ROWS', ROWS - 1)
    assert fast_executor.not_in_memory(inputs, props, BEAM_ARGS) is None
    assert fast_executor.not_in_memory(inputs, props, BEAM_ARGS + ['--runner=DirectRunner']) is None
    assert (fast_executor.not_in_memory(inputs, props, flink)
            == f'more than {ROWS - 1} rows, with the FlinkRunner')
    monkeypatch.setattr(fast_executor, 'MAX_ROWS', ROWS)
    assert fast_executor.not_in_memory(inputs, props, ['--runner', 'FlinkRunner']) is None
    empty = make_examples(tmp_path / 'empty', 0)
    assert fast_executor.not_in_memory(dict(inputs, examples=[empty]), props) == 'no rows'
    assert fast_executor.not_in_memory(inputs, {specs.FEATURE_SLICING_SPEC_KEY: '{}'})
    assert fast_executor.not_in_memory(dict(inputs, schema=[standard_artifacts.Schema()]), props)
    assert fast_executor.not_in_memory(inputs, dict(props, module_file='m.py'))

    model = tfma.default_eval_shared_model(
        eval_saved_model_path=os.path.join(candidate.uri, 'Format-Serving'), eval_config=config)
    assert in_memory.unsupported(config, [model]) is None
    for change, why in (
            (lambda c: setattr(c.options.compute_confidence_intervals, 'value', True),
             'confidence intervals'),
            (lambda c: setattr(c.options.min_slice_size, 'value', 10), 'a minimum slice size'),
            (lambda c: c.cross_slicing_specs.add(), 'cross slices'),
            (lambda c: c.metrics_specs[0].CopyFrom(tfma.MetricsSpec(query_key='hour')),
             'query-based metrics'),
            (lambda c: c.slicing_specs.add(slice_keys_sql='SELECT 1'), 'SQL slices')):
        changed = tfma.EvalConfig()
        changed.CopyFrom(config)
        change(changed)
        assert in_memory.unsupported(changed, [model]) == why
    assert 'model types' in in_memory.unsupported(config, [model._replace(model_type=tfma.TF_LITE)])
