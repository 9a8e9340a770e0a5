"""Data validation that guards production: the gate, spans, drift, recovery after a kill.

The gate and the drift comparison are tested on tiny hand-made artifacts; the pipeline-level
cases share one set of runs (tests/validation_testlib.py): a two-span run stopped by drift,
the same run with --allow-anomalies killed during Transform, and its rerun to completion.
"""
import json
import os

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.anomaly_gate.executor import AnomaliesFound, Executor as GateExecutor, InputChanged
from components.input_files import fingerprint
from components.drift import drift_anomalies, set_comparators
from pipeline import spans
from pipeline.schema import load_schema
import validation_testlib as lib

SCHEMA = os.path.join(lib.REPO, 'schemas', 'taxi', 'schema.pbtxt')


# ----------------------------------------------------------------------------------------
# The gate, on a hand-made ExampleAnomalies artifact.

def anomalies_artifact(tmp_path, per_split, name='anomalies'):
    """An ExampleAnomalies artifact: {split: {feature: (AnomalyInfo.Type name, description)}}."""
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path / name)
    artifact.split_names = artifact_utils.encode_split_names(list(per_split))
    for split, features in per_split.items():
        proto = anomalies_pb2.Anomalies()
        for feature, (kind, description) in features.items():
            info = proto.anomaly_info[feature]
            info.description = description
            info.short_description = kind.title()
            info.reason.add(type=anomalies_pb2.AnomalyInfo.Type.Value(kind), description=description)
        os.makedirs(os.path.join(artifact.uri, f'Split-{split}'))
        with open(os.path.join(artifact.uri, f'Split-{split}', 'SchemaDiff.pb'), 'wb') as f:
            f.write(proto.SerializeToString())
    return artifact


def run_gate(on_anomalies, **inputs):
    props = {'on_anomalies': on_anomalies}
    if 'input_files' in inputs:
        props['input_files'] = json.dumps(inputs.pop('input_files'))
    GateExecutor().Do({k: [v] for k, v in inputs.items()}, {}, props)


def test_gate_failure_lists_every_anomaly_and_the_artifact(tmp_path):
    artifact = anomalies_artifact(tmp_path, {
        'train': {'payment_type': ('ENUM_TYPE_UNEXPECTED_STRING_VALUES',
                                   'Examples contain values missing from the schema: Bitcoin (~1%).'),
                  'trip_start_hour': ('INT_TYPE_BIG_INT', 'Unexpectedly large value: 30.')},
        'eval': {'company': ('FEATURE_TYPE_LOW_NUMBER_PRESENT', 'The feature was present in fewer examples than expected.')}})
    with pytest.raises(AnomaliesFound) as e:
        run_gate('fail', anomalies=artifact)
    message = str(e.value)
    assert '3 data anomalies' in message and artifact.uri in message
    assert ('[train] payment_type: ENUM_TYPE_UNEXPECTED_STRING_VALUES: Examples contain values '
            'missing from the schema: Bitcoin (~1%).') in message
    assert '[train] trip_start_hour: INT_TYPE_BIG_INT: Unexpectedly large value: 30.' in message
    assert '[eval] company: FEATURE_TYPE_LOW_NUMBER_PRESENT' in message
    assert '--allow-anomalies' in message


def test_gate_warn_lets_anomalies_through(tmp_path):
    artifact = anomalies_artifact(tmp_path, {'train': {'fare': ('FLOAT_TYPE_SMALL_FLOAT', 'Negative fare.')}})
    run_gate('warn', anomalies=artifact)  # does not raise


def test_gate_passes_clean_data_and_stops_on_drift_alone(tmp_path):
    clean = anomalies_artifact(tmp_path, {'train': {}, 'eval': {}}, 'clean')
    run_gate('fail', anomalies=clean)
    drift = anomalies_artifact(tmp_path, {'train': {'payment_type': (
        'COMPARATOR_L_INFTY_HIGH', 'The Linfty distance between current and previous is 0.6 '
        '(up to six significant digits), above the threshold 0.3.')}}, 'drift')
    with pytest.raises(AnomaliesFound) as e:
        run_gate('fail', anomalies=clean, drift=drift)
    assert 'payment_type: COMPARATOR_L_INFTY_HIGH' in str(e.value) and drift.uri in str(e.value)


def test_gate_fails_when_an_input_file_changed_even_on_warn(tmp_path):
    path = lib.write_csv(str(tmp_path / 'data' / 'trips.csv'), lib.bundled_rows(5))
    recorded = fingerprint([path])
    clean = anomalies_artifact(tmp_path, {'train': {}})
    run_gate('fail', anomalies=clean, input_files=recorded)  # unchanged: passes
    with open(path, 'a', encoding='utf-8') as f:
        f.write(','.join(['1'] * 19) + '\n')
    with pytest.raises(InputChanged) as e:
        run_gate('warn', anomalies=clean, input_files=recorded)
    assert path in str(e.value) and 'changed while the run read them' in str(e.value)


# ----------------------------------------------------------------------------------------
# Drift comparators and TFDV's comparison, on statistics of tiny data frames.

def test_comparators_follow_the_feature_kind_and_the_overrides():
    schema = set_comparators(load_schema(SCHEMA), {
        'default_linf': 0.2, 'default_js': 0.1, 'per_feature': {'fare': 0.5, 'company': None}})
    by_name = {f.name: f for f in schema.feature}
    assert by_name['payment_type'].drift_comparator.infinity_norm.threshold == pytest.approx(0.2)
    # Integer categories are compared by their histograms: no value counts in their statistics.
    assert by_name['trip_start_hour'].drift_comparator.jensen_shannon_divergence.threshold == pytest.approx(0.1)
    assert by_name['trip_miles'].drift_comparator.jensen_shannon_divergence.threshold == pytest.approx(0.1)
    assert by_name['fare'].drift_comparator.jensen_shannon_divergence.threshold == pytest.approx(0.5)
    assert not by_name['company'].HasField('drift_comparator')
    off = set_comparators(load_schema(SCHEMA), {'default_linf': None, 'default_js': None})
    assert not any(f.HasField('drift_comparator') for f in off.feature)


def _stats(rows):
    import pandas as pd
    import tensorflow_data_validation as tfdv
    header, body = rows[0], rows[1:]
    frame = pd.DataFrame(body, columns=header)
    for name in ('fare', 'trip_miles'):
        frame[name] = frame[name].astype(float)
    return tfdv.generate_statistics_from_dataframe(frame[['payment_type', 'fare', 'trip_miles']])


def test_drift_beyond_threshold_is_an_anomaly_and_same_data_is_not():
    schema = schema_pb2.Schema()
    for name, kind in (('payment_type', schema_pb2.BYTES), ('fare', schema_pb2.FLOAT),
                       ('trip_miles', schema_pb2.FLOAT)):
        schema.feature.add(name=name, type=kind)
    thresholds = {'default_linf': 0.3, 'default_js': 0.3}
    before = _stats(lib.bundled_rows(300))
    same = _stats(lib.bundled_rows(300, skip=300))
    assert not drift_anomalies(same, before, schema, thresholds).anomaly_info
    found = drift_anomalies(_stats(lib.drifted(lib.bundled_rows(300, skip=300))), before,
                            schema, thresholds).anomaly_info
    assert set(found) == {'payment_type', 'fare'}
    assert [r.type for r in found['payment_type'].reason] == [anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH]
    assert [r.type for r in found['fare'].reason] == [
        anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH]


# ----------------------------------------------------------------------------------------
# Spans: which files a run reads.

def test_flat_root_and_span_layout_read_the_right_files(tmp_path):
    flat = tmp_path / 'flat'
    lib.write_csv(str(flat / 'a.csv'), lib.bundled_rows(2))
    lib.write_csv(str(flat / 'b.CSV.gz'), lib.bundled_rows(2))   # the name only: not read here
    (flat / 'notes.txt').write_text('not data')
    (flat / 'a.csv.bak').write_text('an editor\'s backup')
    assert spans.input_files(str(flat)) == [str(flat / 'a.csv'), str(flat / 'b.CSV.gz')]
    assert spans.example_gen_input(str(flat))[1] is None
    layout = tmp_path / 'spans'
    for n in (1, 2, 10):
        lib.write_csv(str(layout / f'span-{n}' / 'trips.csv'), lib.bundled_rows(2))
    assert spans.spans(str(layout)) == [1, 2, 10]
    assert spans.input_files(str(layout)) == [str(layout / 'span-10' / 'trips.csv')]
    assert spans.previous_span(str(layout)) == 2
    input_config, range_config = spans.example_gen_input(str(layout))
    # ExampleGen's glob; its executor keeps the names input_files keeps (.csv, .csv.gz).
    assert input_config.splits[0].pattern == 'span-{SPAN}/*.[cC][sS][vV]*'
    assert range_config.static_range.start_span_number == 10 == range_config.static_range.end_span_number


# ----------------------------------------------------------------------------------------
# Pipeline level: two spans with drift; killed during Transform; rerun.

@pytest.fixture(scope='session')
def state():
    return lib.baseline()


def test_drift_between_spans_stops_the_run_and_pushes_nothing(state):
    failed = state['failed']
    assert failed['code'] == 1
    error = failed['summary']['error']
    assert 'AnomalyGate failed' in error
    assert 'payment_type: COMPARATOR_L_INFTY_HIGH' in error
    assert 'fare: COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH' in error
    assert os.path.join(state['pipeline_root'], 'DriftCheck', 'anomalies') in error
    # Schema anomalies are ExampleValidator's; the drifted span is valid for the schema.
    assert not failed['summary']['anomalies']['found']
    # The summary lists the drift apart, and says which validator found it.
    drift = {(a['feature'], a['kind'], a['source']) for a in failed['summary']['drift']['found']}
    assert ('payment_type', 'COMPARATOR_L_INFTY_HIGH', 'DriftCheck') in drift
    assert failed['summary']['push'] is None or not failed['summary']['push'].get('pushed')
    ran = {c['id']: c['state'] for c in failed['summary']['components']}
    assert ran['ExampleGen_span1'] == 'ran' and 'Transform' not in ran


def test_warn_lets_drift_through_to_transform(state):
    # Run B passed the gate with --allow-anomalies and got as far as Transform.
    assert state['killed']['killed'], state['killed']['output']
    assert 'AnomalyGate done' in state['killed']['output']


def test_killed_run_pushed_nothing_and_left_transform_unfinished(state):
    from ml_metadata.proto import metadata_store_pb2 as mlmd
    assert not [p for p in state['after_kill']['serving'] if not p.startswith('.')]
    transform = [s for t, s in state['after_kill']['executions'].values() if t.endswith('Transform')]
    assert transform and mlmd.Execution.COMPLETE not in transform


def test_rerun_after_kill_completes_from_cache_with_one_good_version(state):
    from ml_metadata.proto import metadata_store_pb2 as mlmd
    rerun = state['rerun']
    assert rerun['code'] == 0, rerun['summary'].get('error')
    ran = {c['id']: c['state'] for c in rerun['summary']['components']}
    # Upstream work of the failed and the killed run is reused; Transform is redone.
    assert ran['CsvExampleGen'] == ran['StatisticsGen'] == ran['ExampleGen_span1'] == 'cached'
    assert ran['Transform'] == 'ran' and ran['Pusher'] == 'ran'
    versions = [n for n in os.listdir(state['serving']) if not n.startswith('.')]
    assert len(versions) == 1 and versions[0].isdigit()
    assert os.path.isfile(os.path.join(state['serving'], versions[0], 'saved_model.pb'))
    assert not [n for n in os.listdir(state['serving']) if n.startswith('.tmp-')]
    # The killed Transform's execution is not COMPLETE and has no output recorded, so no
    # later run can take its half-written directory for a result: nothing in the store
    # points there, and the Trainer read the graph of the Transform that completed.
    from pipeline.report import open_store
    store = open_store(state['metadata'])
    types = {t.id: t.name for t in store.get_execution_types()}
    transforms = [e for e in store.get_executions() if types[e.type_id].endswith('Transform')]
    assert [e.last_known_state == mlmd.Execution.COMPLETE for e in transforms].count(True) == 1
    assert len(transforms) == 2
    killed, done = sorted(transforms, key=lambda e: e.last_known_state == mlmd.Execution.COMPLETE)
    half_written = os.path.join(state['pipeline_root'], 'Transform', 'transform_graph', str(killed.id))
    assert os.path.isdir(half_written)
    assert not [ev for ev in store.get_events_by_execution_ids([killed.id])
                if ev.type not in (mlmd.Event.INPUT, mlmd.Event.DECLARED_INPUT)]
    assert not [a for a in store.get_artifacts() if a.uri.rstrip('/').endswith(f'/{killed.id}')
                and '/Transform/' in a.uri]
    [trainer] = [e for e in store.get_executions() if types[e.type_id].endswith('Trainer')]
    inputs = {a.uri for a in store.get_artifacts_by_id(
        [ev.artifact_id for ev in store.get_events_by_execution_ids([trainer.id])
         if ev.type == mlmd.Event.INPUT])}
    assert os.path.join(state['pipeline_root'], 'Transform', 'transform_graph', str(done.id)) in inputs
