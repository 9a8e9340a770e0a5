"""TFLiteExport's executor on tiny artifacts: small SavedModels with the pipeline's serving
contract (serving/demo_model.py), binary and multi-class, converted and checked for real."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from components.example_inputs import signature_inputs
from components.tflite_export import executor
from serving import demo_model

COMPANIES = [b'Sun Taxi', b'Flash Cab', b'', b'Unknown Co']


def example(i):
    feature = {'trip_miles': tf.train.Feature(float_list=tf.train.FloatList(value=[i * 0.37])),
               'trip_start_hour': tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 24]))}
    if COMPANIES[i % 4]:
        feature['company'] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[COMPANIES[i % 4]]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope='module')
def examples(tmp_path_factory):
    artifact = standard_artifacts.Examples()
    artifact.uri = str(tmp_path_factory.mktemp('examples'))
    artifact.split_names = artifact_utils.encode_split_names(['eval'])
    path = os.path.join(artifact_utils.get_split_uri([artifact], 'eval'), 'data.gz')
    os.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, 'GZIP') as w:
        for i in range(200):
            w.write(example(i))
    return artifact


def export(tmp_path, task, examples, quantization='none', tolerance=1e-5):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / 'model')
    demo_model.write_model(os.path.join(model.uri, 'Format-Serving'), task, seed=3)
    exported = standard_artifacts.Model()
    exported.uri = str(tmp_path / 'exported')
    executor.Executor().Do({'model': [model], 'examples': [examples]},
                           {'exported_model': [exported]},
                           {'quantization': quantization, 'tolerance': tolerance,
                            'num_examples': 150})
    return model, exported


@pytest.mark.parametrize('task,output', [('binary', 'probability'),
                                         ('multiclass', 'probabilities')])
def test_the_tflite_model_predicts_what_the_saved_model_predicts(tmp_path, examples, task, output):
    model, exported = export(tmp_path, task, examples)
    served = os.path.join(exported.uri, 'Format-Serving')
    # The SavedModel is pushed unchanged, with the TFLite model beside it.
    assert os.path.isfile(os.path.join(served, 'saved_model.pb'))
    with open(os.path.join(served, 'assets.extra', 'model.tflite'), 'rb') as f:
        content = f.read()
    with open(os.path.join(served, 'assets.extra', 'model_tflite.json'), encoding='utf-8') as f:
        report = json.load(f)
    # An independent check on other rows than the executor's: the interpreter against the
    # SavedModel's serving_json on the last 50 eval examples.
    rows = [example(i) for i in range(150, 200)]
    function = tf.saved_model.load(served).signatures['serving_json']
    inputs = signature_inputs(function, rows)
    want = function(**{k: tf.constant(v) for k, v in inputs.items()})[output].numpy()
    interpreter = tf.lite.Interpreter(model_content=content)
    got = interpreter.get_signature_runner('serving_default')(
        **{k: v.astype(bytes) if v.dtype == object else v for k, v in inputs.items()})[output]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert want.std() > 0  # the rows are told apart
    assert report['inputs'] == ['company', 'trip_miles', 'trip_start_hour']
    assert report['outputs'] == [output]
    assert report['classes'] == (demo_model.CLASSES if task == 'multiclass' else None)
    assert report['max_difference'] <= 1e-5 and report['examples_checked'] == 150
    assert report['tflite_bytes'] == len(content) and report['saved_model_bytes'] > 0
    assert report['tflite_seconds_per_example'] > 0 and report['saved_model_seconds_per_example'] > 0
    assert exported.get_int_custom_property('tflite_bytes') == len(content)


def test_dynamic_range_quantization_is_checked_against_its_own_bound(tmp_path, examples):
    _, exported = export(tmp_path / 'q', 'binary', examples, 'dynamic_range', 0.05)
    with open(os.path.join(exported.uri, 'Format-Serving', 'assets.extra',
                           'model_tflite.json'), encoding='utf-8') as f:
        report = json.load(f)
    assert report['quantization'] == 'dynamic_range' and report['max_difference'] <= 0.05
    # A bound it cannot meet fails the export, naming the example and the two predictions.
    with pytest.raises(executor.TFLiteMismatch, match='above the tolerance 1e-09'):
        export(tmp_path / 'strict', 'binary', examples, 'dynamic_range', 1e-9)


def test_the_taxi_model_with_computed_vocabularies_runs_as_tflite(tmp_path, taxi_e2e):
    """The product's own demo model: Transform computes the vocabularies of company and the
    census tracts from the data (asset files read when the SavedModel loads), which the
    TFLite converter cannot initialize from; the export re-makes those tables from the
    loaded model's contents. Before that, the export refused this model."""
    import glob
    pushed = taxi_e2e['first']['push']['path']
    assert {'company', 'pickup_census_tract'} <= set(os.listdir(os.path.join(pushed, 'assets')))
    examples = standard_artifacts.Examples()
    examples.uri = glob.glob(os.path.join(taxi_e2e['config'].paths.pipeline_root,
                                          'CsvExampleGen', 'examples', '*'))[0]
    examples.split_names = artifact_utils.encode_split_names(['train', 'eval'])
    from components.example_inputs import read_examples
    rows = read_examples(examples, 200)
    report = executor.export(pushed, rows[:100], 'none', 1e-5, str(tmp_path))
    assert report['max_difference'] <= 1e-5 and report['examples_checked'] == 100
    with open(tmp_path / 'assets.extra' / 'model.tflite', 'rb') as f:
        runner = tf.lite.Interpreter(model_content=f.read()).get_signature_runner('serving_default')
    # Independently, on the 100 eval rows the export did not check, and one row alone (a
    # batch of one, which TFLite's table kernels got wrong before the padding).
    function = tf.saved_model.load(pushed).signatures['serving_json']
    inputs = signature_inputs(function, rows[100:])
    want = function(**{k: tf.constant(v) for k, v in inputs.items()})['probability'].numpy()
    feed = {k: v.astype(bytes) if v.dtype == object else v for k, v in inputs.items()}
    np.testing.assert_allclose(runner(**feed)['probability'], want, atol=1e-5, rtol=0)
    one = runner(**{k: v[:1] for k, v in feed.items()})['probability']
    assert one.shape == want[:1].shape
    np.testing.assert_allclose(one, want[:1], atol=1e-5, rtol=0)
    assert want.std() > 0.01
    # A company in the computed vocabulary and one not in it (an out-of-vocabulary bucket),
    # on one row: both models agree on both.
    with open(os.path.join(pushed, 'assets', 'company'), 'rb') as f:
        in_vocabulary = f.readline().strip()
    two = {k: np.repeat(v[:1], 2) for k, v in inputs.items()}
    two['company'] = np.array([in_vocabulary, b'No Such Cab Co'], dtype=object)
    want = function(**{k: tf.constant(v) for k, v in two.items()})['probability'].numpy()
    got = runner(**{k: v.astype(bytes) if v.dtype == object else v for k, v in two.items()})
    np.testing.assert_allclose(got['probability'], want, atol=1e-5, rtol=0)
