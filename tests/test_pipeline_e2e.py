"""The real pipeline, end to end, on 500 taxi rows (shared runs: see conftest.taxi_e2e)."""
import csv
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from pipeline.report import latest_run, open_store, run_outputs

COMPONENTS = {'CsvExampleGen', 'StatisticsGen', 'InferredSchemaGen', 'ImportSchemaGen',
              'ExampleValidator', 'AnomalyGate', 'Transform', 'Trainer',
              'BaselineModelResolver', 'Evaluator', 'Pusher'}


def raw_examples(csv_path, config, n=40):
    """Serialized tf.Examples of the first n rows, as a serving client would send them."""
    from pipeline.schema import load_schema
    types = {f.name: f.type for f in load_schema(config.data.schema).feature}
    with open(csv_path, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))[:n]
    out = []
    for row in rows:
        feature = {}
        for name, value in row.items():
            if name in (config.data.label, *config.data.exclude) or value == '':
                continue
            if types[name] == 1:  # BYTES
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            elif types[name] == 2:  # INT
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
            else:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


def test_every_component_ran_and_the_data_has_no_anomalies(taxi_e2e):
    first = taxi_e2e['first']
    assert first['status'] == 'succeeded', first.get('error')
    states = {c['id']: c['state'] for c in first['components']}
    assert set(states) == COMPONENTS
    assert set(states.values()) == {'ran'}
    assert first['anomalies']['found'] == []
    # ML Metadata agrees: one execution per component in the first run, all complete.
    store = open_store(taxi_e2e['config'].paths.metadata)
    runs = store.get_contexts_by_type('pipeline_run')
    nodes = run_outputs(store, min(runs, key=lambda r: r.id))
    assert set(nodes) == COMPONENTS
    assert {n['state'] for n in nodes.values()} == {'ran'}


def test_the_model_is_blessed_and_pushed_in_serving_layout(taxi_e2e):
    first, config = taxi_e2e['first'], taxi_e2e['config']
    assert first['blessed'] is True
    push = first['push']
    assert push['pushed'] and push['version'].isdigit()
    assert push['path'] == os.path.join(config.paths.serving_dir, push['version'])
    assert taxi_e2e['versions_after_first'] == [push['version']]
    assert os.path.isfile(os.path.join(push['path'], 'saved_model.pb'))
    assert os.path.isdir(os.path.join(push['path'], 'variables'))
    metrics = first['evaluation']['metrics']
    for name in ('auc', 'binary_accuracy', 'precision', 'recall', 'calibration', 'example_count'):
        assert name in metrics
    assert metrics['auc'] >= 0.7  # the configured bound, which blessed it
    # TensorBoard logs are kept in the model run artifact.
    logdir = first['tensorboard_logdir']
    assert any(f.startswith('events.out.tfevents') for _, _, files in os.walk(logdir) for f in files)


def test_the_pushed_model_scores_raw_examples_like_the_trained_model_on_transformed_ones(taxi_e2e, taxi_sample):
    import tensorflow_transform as tft
    config, first = taxi_e2e['config'], taxi_e2e['first']
    examples = raw_examples(os.path.join(taxi_sample, 'data.csv'), config)
    pushed = tf.saved_model.load(first['push']['path'])
    served = pushed.signatures['serving_default'](examples=tf.constant(examples))['probability'].numpy()
    assert served.shape == (len(examples),)
    assert np.all((served >= 0) & (served <= 1)) and served.std() > 0

    store = open_store(config.paths.metadata)
    nodes = run_outputs(store, latest_run(store, config.name))
    tft_output = tft.TFTransformOutput(nodes['Transform']['outputs']['transform_graph'][0].uri)
    model_dir = os.path.join(nodes['Trainer']['outputs']['model'][0].uri, 'Format-Serving')
    trained = tf.keras.models.load_model(model_dir)
    spec = {k: v for k, v in tft_output.raw_feature_spec().items()
            if k not in (config.data.label, *config.data.exclude)}
    # The built-in Transform writes a TF1 graph (pipeline.py): applied eagerly, through the
    # layer (tft_output.transform_raw_features needs a graph context for it).
    transformed = tft_output.transform_features_layer()(
        tf.io.parse_example(tf.constant(examples), spec))
    direct = trained({name: transformed[name] for name in trained.input_names}).numpy().reshape(-1)
    np.testing.assert_allclose(served, direct, rtol=1e-5, atol=1e-6)


def test_an_unchanged_rerun_is_served_from_the_cache(taxi_e2e):
    rerun = taxi_e2e['rerun']
    assert rerun['status'] == 'succeeded'
    states = {c['id']: c['state'] for c in rerun['components']}
    assert all(states[c] == 'cached' for c in COMPONENTS - {'BaselineModelResolver'}), states
    # Not retrained, not re-pushed: the same model version is the only one.
    assert rerun['push']['version'] == taxi_e2e['first']['push']['version']
    assert taxi_e2e['versions_after_rerun'] == taxi_e2e['versions_after_first']
    assert rerun['total_seconds'] < taxi_e2e['first']['total_seconds'] / 3
    # ML Metadata records the rerun, every execution of it taken from the cache.
    states = taxi_e2e['rerun_in_metadata']
    assert {n: s for n, s in states.items() if n != 'BaselineModelResolver'} == {
        n: 'cached' for n in COMPONENTS - {'BaselineModelResolver'}}
    # The default fast path gives the same answer without starting TFX.
    fast = taxi_e2e['fast_rerun']
    assert fast.get('fast_rerun') is True and fast['status'] == 'succeeded'
    assert {c['state'] for c in fast['components']} == {'cached'}
    assert fast['push']['version'] == taxi_e2e['first']['push']['version']
    assert fast['evaluation']['metrics'] == rerun['evaluation']['metrics']


def test_an_unreachable_threshold_pushes_nothing_and_keeps_the_earlier_version(taxi_e2e):
    strict = taxi_e2e['strict']
    assert taxi_e2e['strict_exit'] == 0  # a run that works but blesses nothing is not an error
    assert strict['status'] == 'succeeded' and strict['blessed'] is False
    assert strict['push']['pushed'] is False
    [failure] = [f for f in strict['evaluation']['failures'] if f['slice'] == 'overall']
    assert failure['metric'] == 'auc' and failure['bound'] == '>= 1.01'
    assert failure['value'] == pytest.approx(taxi_e2e['first']['evaluation']['metrics']['auc'], abs=1e-6)
    assert taxi_e2e['versions_after_strict'] == taxi_e2e['versions_after_first']
    # Only the evaluation (and the push decision) ran again; nothing was retrained.
    states = {c['id']: c['state'] for c in strict['components']}
    assert states['Trainer'] == 'cached' and states['Transform'] == 'cached'
    assert states['Evaluator'] == 'ran'
    # No model was blessed before this candidate was trained, so it had no baseline.
    assert strict['evaluation']['baseline_model'] is None


def test_the_summary_tells_the_user_what_happened(taxi_e2e):
    from pipeline.report import render
    text = render(taxi_e2e['strict'])
    assert 'Blessed: NO' in text
    assert 'auc [overall] value' in text and 'fails >= 1.01' in text
    assert 'Pushed: nothing' in text
    text = render(taxi_e2e['first'])
    assert 'Data validation: no anomalies' in text
    assert f'Pushed: {taxi_e2e["first"]["push"]["path"]}' in text


def progress_lines(store, run):
    """The lines a run must have printed: per execution, in the order ML Metadata registered
    them, its start and its end with the time ML Metadata recorded."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    lines = []
    for i, e in enumerate(executions, 1):
        [node] = [c.name.split('.', 1)[1] for c in store.get_contexts_by_execution(e.id)
                  if c.type == 'node']
        seconds = (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000
        outcome = {mlmd.Execution.COMPLETE: 'done in', mlmd.Execution.CACHED: 'reused from cache in'}
        lines += [f'[{i:2d}/{len(executions)}] {node} ...',
                  f'        {node} {outcome[e.last_known_state]} {seconds:.1f}s']
    return lines


def test_progress_lines_come_from_ml_metadata_not_from_log_text(taxi_e2e):
    store = open_store(taxi_e2e['config'].paths.metadata)
    first, rerun = sorted(store.get_contexts_by_type('pipeline_run'), key=lambda r: r.id)[:2]
    # How the files are read, then one line as each component starts, one as it ends, in
    # order, with MLMD's times.
    reading, *output = taxi_e2e['first_output'].splitlines()
    assert reading.startswith("Reading 1 CSV file: delimiter ',' (comma), detected;")
    assert output == progress_lines(store, first)
    assert len(output) == 2 * len(COMPONENTS)
    # The rerun emitted no log record at all (conftest: logging.disable), as a TFX whose
    # log text changed would: the lines are the same, from the cache.
    lines = taxi_e2e['rerun_output'].splitlines()[1:]
    assert lines == progress_lines(store, rerun)
    assert sum('reused from cache in' in line for line in lines) == len(COMPONENTS) - 1
    assert [c['id'] for c in taxi_e2e['rerun']['components']] == [
        re.match(r'\[ *\d+/\d+\] (\S+) \.\.\.$', line).group(1) for line in lines[::2]]
