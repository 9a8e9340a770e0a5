"""The run browser (``pipeline_runner.py runs``, ``runs show``, ``runs diff``) on real stores:
three runs of a regression dataset, one refused by the AnomalyGate (report_testlib), and
the validation store with a run killed mid-way (validation_testlib)."""
import os
import subprocess
import sys
import time

import pytest

import report_testlib
import validation_testlib
from testlib import REPO


@pytest.fixture(scope='module')
def houses():
    return report_testlib.regression_store()


def cli(capsys, *args):
    import pipeline_runner
    code = pipeline_runner.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_runs_lists_every_run_oldest_first_with_status_blessing_metric_and_version(houses, capsys):
    code, out, _ = cli(capsys, 'runs', '--config', houses['config'])
    assert code == 0
    lines = out.strip().splitlines()
    header, rows = lines[1], lines[2:]
    assert header.split() == ['RUN', 'STARTED', 'STATUS', 'TIME', 'BLESSED',
                              'MEAN_ABSOLUTE_ERROR', 'PUSHED']
    ids = [houses[k]['summary']['run_id'] for k in ('first', 'refused', 'second')]
    assert [r.split()[0] for r in rows] == ids
    first, refused, second = (r.split() for r in rows)
    assert first[3] == 'succeeded' and first[5] == 'yes'
    assert first[6] == f'{houses["first"]["summary"]["evaluation"]["metrics"]["mean_absolute_error"]:.4f}'
    assert first[7] == houses['first']['summary']['push']['version']
    assert refused[3:5] == ['failed', '(AnomalyGate)'] and refused[6:] == ['-', '-', '-']
    assert second[-1] == houses['second']['summary']['push']['version'] != first[-1]


def test_runs_show_prints_the_failure_in_the_words_of_the_run_and_its_inputs(houses, capsys):
    refused = houses['refused']['summary']
    # A prefix of the id names the run.
    code, out, _ = cli(capsys, 'runs', 'show', refused['run_id'][:-3], '--config', houses['config'])
    assert code == 0
    assert f'Run {refused["run_id"]}' in out
    assert 'Status: failed (AnomalyGate)' in out
    # The error as the command line printed it, anomaly and all.
    assert 'Error: AnomalyGate failed: AnomaliesFound' in out
    assert 'neighbourhood: ENUM_TYPE_UNEXPECTED_STRING_VALUES' in out
    assert f'{houses["data_csv"]}  ' in out and 'sha256' in out
    assert 'AnomalyGate                  failed' in out
    assert 'Transform' not in out.split('Summary')[0]  # never ran
    assert refused['report'] and os.path.isfile(refused['report'])
    assert f'Report: {refused["report"]}' in out


def test_runs_diff_says_what_changed_between_two_runs(houses, capsys):
    first, second = houses['first']['summary'], houses['second']['summary']
    code, out, _ = cli(capsys, 'runs', 'diff', 'latest~2', 'latest', '--config', houses['config'])
    assert code == 0
    assert f'From run {first["run_id"]} to run {second["run_id"]}' in out
    config = out.split('Config:')[1].split('Data files:')[0]
    assert 'training.train_steps: 150 -> 200' in config
    data = out.split('Data files:')[1].split('Schema')[0]
    assert f'changed  {houses["data_csv"]}' in data
    with open(houses['data_csv'], 'rb') as f:
        assert f'{len(f.read()):,} bytes' in data
    schema = out.split('Schema (curated')[1].split('Code digest:')[0]
    assert 'same' in schema
    assert out.split('Code digest:')[1].split('Metrics')[0].strip() == 'same'
    metrics = out.split('Metrics (eval split, overall):')[1]
    a = first['evaluation']['metrics']['example_count']
    b = second['evaluation']['metrics']['example_count']
    assert f'example_count                {a:.4f} -> {b:.4f} ({b - a:+.4f})' in metrics
    assert b > a
    # Against the refused run: nothing was evaluated there.
    code, out, _ = cli(capsys, 'runs', 'diff', first['run_id'], 'latest~1', '--config', houses['config'])
    assert 'mean_absolute_error' in out and ' -> -' in out
    assert 'Status: succeeded -> failed (AnomalyGate)' in out


def test_unknown_or_ambiguous_runs_are_refused_with_the_ids_that_exist(houses, capsys):
    code, _, err = cli(capsys, 'runs', 'show', 'nosuchrun', '--config', houses['config'])
    assert code == 1
    assert "no run of pipeline 'houses' has that id or prefix" in err
    assert houses['second']['summary']['run_id'] in err
    code, _, err = cli(capsys, 'runs', 'show', houses['first']['summary']['run_id'][:4],
                       '--config', houses['config'])
    assert code == 1 and 'matches 3 runs' in err
    code, _, err = cli(capsys, 'runs', 'show', 'latest~3', '--config', houses['config'])
    assert code == 1 and 'has only 3 runs' in err
    with pytest.raises(SystemExit):
        cli(capsys, 'runs', 'diff', 'latest', '--config', houses['config'])


def test_a_killed_run_shows_as_interrupted_from_ml_metadata_alone(capsys):
    state = validation_testlib.baseline()
    capsys.readouterr()  # the runs' progress, if this test made the store
    args = ['--metadata', state['metadata'], '--pipeline-root', state['pipeline_root']]
    code, out, _ = cli(capsys, 'runs', *args)
    assert code == 0
    # Stopped by drift; killed in Transform (it wrote no record); run again to the end (and
    # the runs other tests of the suite add on this store after those three).
    rows = out.strip().splitlines()[2:]
    assert [line.split()[3] for line in rows[:3]] == ['failed', 'interrupted', 'succeeded']
    assert '(AnomalyGate)' in rows[0]
    code, out, _ = cli(capsys, 'runs', 'show', rows[1].split()[0], *args)
    assert 'Status: interrupted' in out and 'wrote no record' in out
    assert 'Transform                    running' in out


def test_runs_answers_within_a_second_on_a_store_with_100_runs(houses, tmp_path):
    from benchmarks.runs_bench import make_store
    store = make_store(houses['metadata'], houses['pipeline_root'], str(tmp_path), 100)
    command = [sys.executable, os.path.join(REPO, 'pipeline_runner.py'), 'runs',
               '--config', houses['config'], '--metadata', store['metadata'],
               '--pipeline-root', store['pipeline_root']]
    before = os.times()
    start = time.time()
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO).stdout
    wall = time.time() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    assert len(out.strip().splitlines()) == 2 + 103
    print(f'runs on 103 runs: {wall:.2f} s wall, {cpu:.2f} s CPU')
    # CPU time, not wall time: on a machine shared with other jobs the wall clock measures
    # them too (benchmarks/runs_bench.py prints both).
    assert cpu < 1.0, f'{cpu:.2f} s of CPU'


def test_the_record_lists_only_the_keys_the_user_set(tmp_path):
    # The report's "Config" shows these: a config of five keys showed the whole search
    # space as set (its ranges differ from a SearchParam's own empty defaults).
    from pipeline.config import load_config
    from pipeline.run_record import given_keys
    path = tmp_path / 'mine.yaml'
    path.write_text('name: mine\ndata: {root: data, label: y, task: binary}\n'
                    'tuning: {space: {dropout: {min: 0.0, max: 0.5}}}\n'
                    'paths: {pipeline_root: out, metadata: out/m.sqlite, serving_dir: serving}\n')
    config = load_config(str(path), check_data=False)
    given = given_keys(config, config.base_dir)
    assert given['data'] == {'root': str(tmp_path / 'data'), 'label': 'y', 'task': 'binary'}
    assert given['tuning'] == {'space': {'dropout': {'max': 0.5}}}
    assert set(given) - {'base_dir'} == {'name', 'data', 'tuning', 'paths'}
