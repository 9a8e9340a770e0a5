"""Training on the last N spans (``data.spans``), on a small span layout.

One scenario, three runs of the real pipeline on 300-row spans:
1. spans 1-3 with ``data.spans: 3``; span 1 has a payment type the schema does not know:
   the gate stops the run and names the older span's validator;
2. span 1 fixed: the run trains on spans 1, 2 and 3 and evaluates on span 3 alone;
3. span 4 arrives: the run trains on spans 2, 3 and 4; span 2's and span 3's reading,
   statistics and validation come from the cache (span 3 was read as the newest before,
   by another node, so it is read once more), span 1 is not read at all.
"""
import os

import pytest

import validation_testlib as lib


def span_rows(i):
    return lib.bundled_rows(lib.ROWS_PER_SPAN, skip=lib.ROWS_PER_SPAN * i)


def states(run):
    return {c['id']: c['state'] for c in run['summary']['components']}


def inputs_of(metadata, node, key):
    """The artifacts (uri, span) the last execution of ``node`` read as ``key``."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd
    from pipeline.report import open_store
    store = open_store(metadata)
    [ctx] = [c for c in store.get_contexts_by_type('node') if c.name.endswith('.' + node)]
    execution = max(store.get_executions_by_context(ctx.id), key=lambda e: e.id)
    ids = [ev.artifact_id for ev in store.get_events_by_execution_ids([execution.id])
           if ev.type == mlmd.Event.INPUT and ev.path.steps[0].key == key]
    return sorted((a.custom_properties['span'].int_value, a.uri) for a in store.get_artifacts_by_id(ids))


@pytest.fixture(scope='module')
def runs():
    root = lib.scratch('spans')
    data = os.path.join(root, 'data')
    bad = span_rows(0)
    bad[3][bad[0].index('payment_type')] = 'Bitcoin'
    for i, rows in enumerate([bad, span_rows(1), span_rows(2)]):
        lib.write_csv(os.path.join(data, f'span-{i + 1}', 'trips.csv'), rows)
    args = lib.paths_args(root, data) + lib.FAST + ['--set', 'data.spans=3']
    result = {'root': root, 'metadata': os.path.join(root, 'metadata.sqlite'),
              'serving': os.path.join(root, 'serving')}
    result['bad_old_span'] = lib.run_cli(args)
    result['served_after_bad'] = sorted(os.listdir(result['serving'])) \
        if os.path.isdir(result['serving']) else []
    lib.write_csv(os.path.join(data, 'span-1', 'trips.csv'), span_rows(0))
    result['three'] = lib.run_cli(args)
    result['three_transform'] = inputs_of(result['metadata'], 'Transform', 'examples')
    lib.write_csv(os.path.join(data, 'span-4', 'trips.csv'), span_rows(3))
    result['next'] = lib.run_cli(args)
    result['next_transform'] = inputs_of(result['metadata'], 'Transform', 'examples')
    result['next_evaluator'] = inputs_of(result['metadata'], 'Evaluator', 'examples')
    result['next_trainer'] = inputs_of(result['metadata'], 'Trainer', 'examples')
    return result


def test_an_anomaly_in_an_older_span_stops_the_run_naming_that_span(runs):
    failed = runs['bad_old_span']
    assert failed['code'] == 1
    error = failed['summary']['error']
    assert 'payment_type: ENUM_TYPE_UNEXPECTED_STRING_VALUES' in error and 'Bitcoin' in error
    assert os.path.join(runs['root'], 'pipeline', 'ExampleValidator_span1', 'anomalies') in error
    [found] = failed['summary']['anomalies']['found']
    assert found['source'] == 'ExampleValidator_span1'
    assert 'Transform' not in states(failed)
    assert runs['served_after_bad'] == []


def test_the_run_trains_on_the_last_n_spans(runs):
    three = runs['three']
    assert three['code'] == 0, three['summary'].get('error')
    assert three['summary']['spans'] == [1, 2, 3]
    assert [span for span, _ in runs['three_transform']] == [1, 2, 3]
    assert three['summary']['push']['pushed']


def test_a_new_span_moves_the_window_and_reuses_what_was_read(runs):
    after = runs['next']
    assert after['code'] == 0, after['summary'].get('error')
    assert after['summary']['spans'] == [2, 3, 4]
    assert [span for span, _ in runs['next_transform']] == [2, 3, 4]
    ran = states(after)
    assert ran['ExampleGen_span2'] == ran['StatisticsGen_span2'] == ran['ExampleValidator_span2'] == 'cached'
    assert ran['ExampleGen_span3'] == 'ran' and ran['CsvExampleGen'] == 'ran'
    assert not [n for n in ran if n.endswith('_span1')]
    # The Trainer read the three spans' raw examples (Transform wrote no transformed copy).
    trained_on = runs['next_trainer']
    assert [span for span, _ in trained_on] == [2, 3, 4]
    assert ['/ExampleGen_span2/', '/ExampleGen_span3/', '/CsvExampleGen/'] == [
        '/' + uri.split('/pipeline/')[1].split('/')[0] + '/' for _, uri in trained_on]
    # The model is scored on the newest span's eval split only.
    [(span, uri)] = runs['next_evaluator']
    assert span == 4 and '/CsvExampleGen/' in uri
    versions = [v for v in os.listdir(runs['serving']) if not v.startswith('.')]
    assert len(versions) == 2
