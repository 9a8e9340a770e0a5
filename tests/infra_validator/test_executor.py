"""InfraValidator's executor on tiny artifacts: small SavedModels with the pipeline's serving
contract (serving/demo_model.py), served for real in a subprocess on free loopback ports."""
import json
import os
import stat
import sys

import psutil
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from components.infra_validator import executor
from serving import demo_model

ROWS = [(1.5, b'Sun Taxi', 7), (12.0, b'Flash Cab', 23), (0.2, b'', 0), (3.0, b'Other', 12)]


def example(miles, company, hour):
    feature = {'trip_miles': tf.train.Feature(float_list=tf.train.FloatList(value=[miles])),
               'trip_start_hour': tf.train.Feature(int64_list=tf.train.Int64List(value=[hour]))}
    if company:
        feature['company'] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[company]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope='module')
def examples(tmp_path_factory):
    artifact = standard_artifacts.Examples()
    artifact.uri = str(tmp_path_factory.mktemp('examples'))
    artifact.split_names = artifact_utils.encode_split_names(['train', 'eval'])
    for split in ('train', 'eval'):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), 'data.gz')
        os.makedirs(os.path.dirname(path))
        with tf.io.TFRecordWriter(path, 'GZIP') as w:
            for row in ROWS:
                w.write(example(*row))
    return artifact


class _FailsAtCallTime(tf.Module):
    """serving_default works; serving_json raises at call time (it loads and traces fine)."""

    def __init__(self, path):
        super().__init__()
        self.good = tf.saved_model.load(path)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='trip_miles'),
                                  tf.TensorSpec([None], tf.string, name='company'),
                                  tf.TensorSpec([None], tf.int64, name='trip_start_hour')])
    def serve_json(self, trip_miles, company, trip_start_hour):
        tf.debugging.assert_less(trip_miles, -1.0, message='broken on purpose')
        return {'probability': trip_miles}


def model_artifact(root, build):
    model = standard_artifacts.Model()
    model.uri = str(root)
    build(os.path.join(model.uri, 'Format-Serving'))
    return model


@pytest.fixture(scope='module')
def good_model(tmp_path_factory):
    return model_artifact(tmp_path_factory.mktemp('good'), demo_model.write_model)


@pytest.fixture(scope='module')
def broken_model(tmp_path_factory, good_model):
    def build(path):
        module = _FailsAtCallTime(os.path.join(good_model.uri, 'Format-Serving'))
        tf.saved_model.save(module, path, signatures={
            'serving_default': module.good.signatures['serving_default'],
            'serving_json': module.serve_json})
    return model_artifact(tmp_path_factory.mktemp('broken'), build)


def blessed_by_evaluator(root, blessed):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(root)
    blessing.set_int_custom_property('blessed', int(blessed))
    return blessing


def run(tmp_path, model, examples, model_blessing=None, **properties):
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / 'blessing')
    os.makedirs(blessing.uri)
    inputs = {'model': [model], 'examples': [examples]}
    if model_blessing is not None:
        inputs['model_blessing'] = [model_blessing]
    props = dict(num_examples=3, load_timeout_seconds=120.0, require_tf_serving=0,
                 model_name='taxi')
    props.update(properties)
    executor.Executor().Do(inputs, {'blessing': [blessing]}, props)
    with open(os.path.join(blessing.uri, executor.REPORT_FILE), encoding='utf-8') as f:
        report = json.load(f)
    return blessing, report


def children():
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE]


def test_a_good_model_is_served_queried_and_blessed(tmp_path, good_model, examples, monkeypatch):
    monkeypatch.setenv('PATH', '/usr/bin:/bin')  # no tensorflow_model_server, whatever the machine
    blessing, report = run(tmp_path, good_model, examples)
    assert blessing.get_int_custom_property('blessed') == 1, report['reason']
    assert os.path.exists(os.path.join(blessing.uri, executor.BLESSED_FILE))
    assert report['signatures'] == ['serving_default', 'serving_json', 'transform_features']
    [checks] = report['servers'].values()
    assert {c['check'] for c in checks} == {'load'} | {
        f'{t} {s}' for t in ('REST', 'gRPC') for s in report['signatures']}
    assert all(c['rows'] == 3 for c in checks if c['check'] != 'load')
    assert 'not on PATH' in report['tf_serving']
    assert children() == []  # the server was stopped


def test_a_signature_that_fails_at_call_time_is_refused(tmp_path, broken_model, examples):
    blessing, report = run(tmp_path, broken_model, examples)
    assert blessing.get_int_custom_property('blessed') == 0
    assert os.path.exists(os.path.join(blessing.uri, executor.NOT_BLESSED_FILE))
    reason = blessing.get_string_custom_property('reason')
    assert reason.startswith('signature serving_json fails when called in process')
    assert 'broken on purpose' in reason
    assert children() == []


def test_a_model_the_evaluator_did_not_bless_is_not_served(tmp_path, good_model, examples):
    blessing, report = run(tmp_path, good_model, examples,
                           model_blessing=blessed_by_evaluator(tmp_path, False))
    assert blessing.get_int_custom_property('blessed') == 0
    assert report['reason'] == executor.NOT_EVALUATED and 'servers' not in report


def test_a_model_that_does_not_load_in_time_is_refused_and_its_server_killed(
        tmp_path, good_model, examples):
    blessing, report = run(tmp_path, good_model, examples, load_timeout_seconds=0.5)
    assert blessing.get_int_custom_property('blessed') == 0
    assert 'within the load timeout (validation.infra.load_timeout_seconds)' in report['reason']
    assert children() == []


def test_tf_serving_is_required_but_missing(tmp_path, good_model, examples, monkeypatch):
    monkeypatch.setenv('PATH', '/usr/bin:/bin')
    blessing, report = run(tmp_path, good_model, examples, require_tf_serving=1)
    assert blessing.get_int_custom_property('blessed') == 0
    assert report['reason'] == ('tensorflow_model_server is not on PATH, and '
                                'validation.infra.require_tf_serving is true')


STAND_IN = """#!{python}
# tensorflow_model_server's flags, served by the product's server: the TF Serving code path
# (ports chosen by the validator, status polled over REST) without the real binary.
# The guard: the server's model processes come from multiprocessing's forkserver, which
# imports the main module again.
import sys
if __name__ == '__main__':
    flags = dict(a[2:].split('=', 1) for a in sys.argv[1:])
    from serving.server import main
    sys.exit(main(['--serving-dir', flags['model_base_path'], '--model-name', flags['model_name'],
                   '--rest-port', flags['rest_api_port'], '--grpc-port', flags['port']]))
"""


def test_tensorflow_model_server_on_path_is_validated_too(tmp_path, good_model, examples,
                                                           monkeypatch):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    binary = bin_dir / executor.TF_SERVING_BINARY
    binary.write_text(STAND_IN.format(python=sys.executable))
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('PATH', f'{bin_dir}:/usr/bin:/bin')
    blessing, report = run(tmp_path, good_model, examples, require_tf_serving=1)
    assert blessing.get_int_custom_property('blessed') == 1, report['reason']
    assert report['tf_serving'] == str(binary)
    assert sorted(report['servers']) == ['TF Serving (%s)' % binary,
                                         'the model server (python -m serving)']
    assert all(len(checks) == 7 for checks in report['servers'].values())
    assert children() == []
