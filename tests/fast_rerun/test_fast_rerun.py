"""The unchanged rerun is answered without TFX only when nothing that decides the cache moved.

The key is computed from the inputs a run resolved (``pipeline/inputs.py``); that a run's
record keeps the key of its start, whatever lands during it, is tested on real runs in
tests/test_code_cache.py.
"""
import io
import os
import shutil

import pytest

from pipeline import fast_rerun
from pipeline.config import load_config
from pipeline.inputs import resolve


def key(config):
    return fast_rerun.run_key(config, resolve(config))

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    shutil.copy(os.path.join(REPO, 'data', 'taxi', 'data.csv'), data / 'data.csv')
    config = load_config(os.path.join(REPO, 'configs', 'taxi.yaml'), [
        f'data.root={data}', f'paths.pipeline_root={tmp_path / "root"}',
        f'paths.metadata={tmp_path / "m.sqlite"}', f'paths.serving_dir={tmp_path / "serving"}'])
    (tmp_path / 'm.sqlite').write_bytes(b'mlmd')
    pushed = tmp_path / 'serving' / '1700000000'
    pushed.mkdir(parents=True)
    summary = {'status': 'succeeded', 'total_seconds': 95.0,
               'components': [{'id': 'CsvExampleGen', 'state': 'ran', 'seconds': 3.0},
                              {'id': 'Pusher', 'state': 'ran', 'seconds': 1.0}],
               'push': {'pushed': True, 'path': str(pushed), 'version': '1700000000',
                        'from_cache': False}}
    fast_rerun.record(config, key(config), summary)
    return config, tmp_path


def test_unchanged_rerun_is_reported_all_cached_with_the_same_push(setup):
    config, _ = setup
    out = io.StringIO()
    summary = fast_rerun.lookup(config, key(config), out)
    assert summary['fast_rerun'] is True
    assert [c['state'] for c in summary['components']] == ['cached', 'cached']
    assert summary['push']['version'] == '1700000000' and summary['push']['from_cache']
    assert 'CsvExampleGen reused from cache' in out.getvalue()


def test_changed_data_file_runs_tfx(setup):
    config, tmp = setup
    with open(tmp / 'data' / 'data.csv', 'a') as f:
        f.write('\n')
    assert fast_rerun.lookup(config, key(config)) is None


def test_another_run_in_the_metadata_runs_tfx(setup):
    config, tmp = setup
    (tmp / 'm.sqlite').write_bytes(b'mlmd, with another run recorded')
    assert fast_rerun.lookup(config, key(config)) is None


def test_changed_config_runs_tfx(setup):
    config, _ = setup
    import dataclasses
    changed = config.replace(training=dataclasses.replace(config.training, train_steps=10))
    assert fast_rerun.lookup(changed, key(changed)) is None


def test_removed_pushed_model_runs_tfx(setup):
    config, tmp = setup
    shutil.rmtree(tmp / 'serving' / '1700000000')
    assert fast_rerun.lookup(config, key(config)) is None


def test_failed_run_forgets_the_record(setup):
    config, _ = setup
    fast_rerun.record(config, key(config), {'status': 'failed', 'components': [
        {'id': 'CsvExampleGen', 'state': 'failed'}]})
    assert fast_rerun.lookup(config, key(config)) is None


def test_an_edited_schema_runs_tfx(setup, tmp_path):
    config, tmp = setup
    schema = tmp / 'schema.pbtxt'
    shutil.copy(config.data.schema, schema)
    config = config.replace(data=config.data.__class__(**dict(vars(config.data), schema=str(schema))))
    fast_rerun.record(config, key(config), {'status': 'succeeded', 'components': [
        {'id': 'Pusher', 'state': 'ran'}]})
    assert fast_rerun.lookup(config, key(config)) is not None
    schema.write_text(schema.read_text() + '\n# reviewed\n')
    assert fast_rerun.lookup(config, key(config)) is None


HOLD_THEN_RECORD = '''
import json, sys, time
from pipeline import fast_rerun
from pipeline.config import load_config
from pipeline.inputs import resolve
from pipeline.lock import run_lock
config = load_config(sys.argv[1], json.loads(sys.argv[2]))
with run_lock(config.paths.metadata):
    print("held", flush=True)
    time.sleep(1.5)
    # This run ends: the store changed, and it records itself.
    with open(config.paths.metadata, "ab") as f:
        f.write(b" and the holder's run")
    fast_rerun.record(config, fast_rerun.run_key(config, resolve(config)), json.loads(sys.argv[3]))
'''


def test_the_lookup_happens_under_the_lock_after_the_run_before_recorded(setup, tmp_path):
    """A run that waits for another looks for an unchanged run once it holds the lock: the
    record the other run wrote as it ended answers it."""
    import json
    import subprocess
    import sys

    from pipeline.run import run_pipeline

    config, tmp = setup
    (tmp / 'm.sqlite').write_bytes(b'mlmd, changed since the record')  # no answer before the wait
    assert fast_rerun.lookup(config, key(config)) is None
    overrides = [f'data.root={config.data.root}', f'paths.pipeline_root={config.paths.pipeline_root}',
                 f'paths.metadata={config.paths.metadata}', f'paths.serving_dir={config.paths.serving_dir}']
    summary = {'status': 'succeeded', 'total_seconds': 60.0,
               'components': [{'id': 'Pusher', 'state': 'ran', 'seconds': 1.0}], 'push': None}
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLD_THEN_RECORD, os.path.join(REPO, 'configs', 'taxi.yaml'),
         json.dumps(overrides), json.dumps(summary)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert holder.stdout.readline().strip() == 'held'
    out = io.StringIO()
    answer = run_pipeline(config, out=out)  # a TFX run here would fail on the fake store
    holder.wait(timeout=60)
    assert answer['fast_rerun'] is True and answer['total_seconds'] < 5
    assert 'Another run holds' in out.getvalue() and 'this run starts now' in out.getvalue()
    assert 'nothing changed since the run of' in out.getvalue()
