"""BulkInferrer's executor on a tiny PushedModel (serving/demo_model.py) and a small infer/
directory: the pushed model scores every good row, bad rows are rejected (the demo model's
parse spec wants every feature present, so it refuses the row with an empty company: that row
alone is rejected, with the model's reason); nothing pushed, nothing scored."""
import csv
import os

import numpy as np
import tensorflow as tf
from tfx.types import standard_artifacts

from components.bulk_inferrer import executor
from serving import demo_model

FEATURES = {'trip_miles': 'float', 'company': 'string', 'trip_start_hour': 'int'}


def pushed_model(root, pushed=True):
    artifact = standard_artifacts.PushedModel()
    artifact.uri = str(root)
    if pushed:
        demo_model.write_model(artifact.uri, 'binary', seed=1)
    artifact.set_int_custom_property('pushed', int(pushed))
    artifact.set_string_custom_property('pushed_version', '7' if pushed else '')
    return artifact


def infer(tmp_path, pushed):
    directory = tmp_path / 'infer'
    directory.mkdir()
    (directory / 'a.csv').write_text('trip_miles,company,trip_start_hour,note\n'
                                     '1.5,Sun Taxi,7,x\n2.5,,8,y\nfar,Flash Cab,9,z\n'
                                     '0.5,Flash Cab,23,w\n')
    result = standard_artifacts.InferenceResult()
    result.uri = str(tmp_path / 'result')
    executor.Executor().Do({'pushed_model': [pushed]}, {'inference_result': [result]}, {
        'infer_dir': str(directory), 'features': '{"trip_miles": "float", "company": '
        '"string", "trip_start_hour": "int"}', 'output_format': 'csv', 'keep': '["note"]',
        'input_files': '{}'})
    return result


def test_the_pushed_model_scores_the_infer_directory(tmp_path):
    pushed = pushed_model(tmp_path / 'pushed')
    result = infer(tmp_path, pushed)
    with open(os.path.join(result.uri, 'predictions.csv'), newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    assert [(r['file'], r['line'], r['note']) for r in rows] == [
        ('a.csv', '2', 'x'), ('a.csv', '5', 'w')]
    model = tf.saved_model.load(pushed.uri).signatures['serving_json']
    want = model(trip_miles=tf.constant([1.5, 0.5]),
                 company=tf.constant(['Sun Taxi', 'Flash Cab']),
                 trip_start_hour=tf.constant([7, 23], tf.int64))['probability'].numpy()
    np.testing.assert_allclose([float(r['probability']) for r in rows], want, rtol=1e-6)
    with open(os.path.join(result.uri, 'predictions.rejects.csv'), newline='',
              encoding='utf-8') as f:
        rejects = [(r['line'], r['reason']) for r in csv.DictReader(f)]
    assert rejects[0][0] == '3' and rejects[0][1].startswith('the model refused the row: ')
    assert 'company' in rejects[0][1]
    assert rejects[1] == ('4', "column trip_miles: 'far' is not a number")
    assert result.get_int_custom_property('rows') == 2
    assert result.get_int_custom_property('rejected') == 2
    assert executor.read_summary(result)['version'] == '7'


def test_a_run_that_pushed_nothing_scores_nothing(tmp_path):
    result = infer(tmp_path, pushed_model(tmp_path / 'pushed', pushed=False))
    assert executor.read_summary(result) == {'skipped': 'this run pushed no model'}
    assert not os.path.exists(os.path.join(result.uri, 'predictions.csv'))
