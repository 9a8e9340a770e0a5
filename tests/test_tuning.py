"""Tuning (issue 21): TFX's Tuner with KerasTuner before the Trainer (components/tuner).

One tuned pipeline run on 500 taxi rows (2 random trials) is shared by the tests below,
with an unchanged rerun through TFX (the Tuner served from its cache) and a run that
imports its results (``tuning.reuse: latest``). The algorithms, the time cap and
Hyperband's TFX 1.15 crash are shown on the Tuner's executor alone, on that run's artifacts.
"""
import dataclasses
import io
import json
import os

import pytest

from testlib import FAST_TRAINING, write_config

TUNING = {'trials': 2, 'train_steps': 60}


@pytest.fixture(scope='module')
def tuned(tmp_path_factory, taxi_sample):
    from pipeline.config import load_config
    from pipeline.report import latest_run, open_store, run_outputs
    from pipeline.run import run_pipeline

    directory = str(tmp_path_factory.mktemp('tuned'))
    path = write_config(directory, data={'root': taxi_sample}, training=FAST_TRAINING,
                        tuning=TUNING)
    config = load_config(path)
    out = io.StringIO()
    first = run_pipeline(config, out=out)
    store = open_store(config.paths.metadata)
    first_nodes = run_outputs(store, latest_run(store, config.name))
    # Unchanged, through TFX's cache (not the fast rerun, which would not start TFX).
    no_fast = config.replace(run=dataclasses.replace(config.run, fast_rerun=False))
    rerun = run_pipeline(no_fast, out=io.StringIO())
    # The earlier results imported; a change of the training steps makes the Trainer train.
    reuse_out = io.StringIO()
    reused = run_pipeline(load_config(path, ['tuning.reuse=latest', 'run.fast_rerun=false',
                                             'training.train_steps=100']), out=reuse_out)
    # Training settings the search does not read changed: the Trainer trains again, the
    # Tuner comes from the cache (its key holds only what the search reads).
    retrained_config = load_config(path, ['run.fast_rerun=false', 'training.train_steps=80',
                                          'training.learning_rate=0.01'])
    retrained = run_pipeline(retrained_config, out=io.StringIO())
    return {'config': config, 'path': path, 'first': first, 'output': out.getvalue(),
            'nodes': first_nodes, 'rerun': rerun, 'reused': reused,
            'reuse_output': reuse_out.getvalue(), 'directory': directory,
            'retrained': retrained,
            'retrained_nodes': run_outputs(store, latest_run(store, config.name))}


def trials_of(nodes):
    from components.tuner.executor import read_trials
    return read_trials(nodes['Tuner']['outputs']['tuner_results'][0].uri)


def record_of(nodes):
    from components import training_record
    return training_record.read(os.path.join(nodes['Trainer']['outputs']['model'][0].uri,
                                             'Format-Serving'))


def test_the_trainer_trains_with_the_winner_of_the_search(tuned):
    assert tuned['first']['status'] == 'succeeded'
    assert tuned['first']['blessed'] is True
    search = trials_of(tuned['nodes'])
    assert [t['status'] for t in search['trials']] == ['COMPLETED', 'COMPLETED']
    assert search['stopped_by'] == 'trials'
    best = min(search['trials'], key=lambda t: t['score'])   # val_loss: lower wins
    assert search['best_trial'] == best['trial_id']
    record = record_of(tuned['nodes'])
    assert record['hyperparameters_from'] == 'tuning'
    # The exported model was built and trained with the winner's values, not the config's.
    assert record['hyperparameters'] == {k: v for k, v in best['values'].items()}
    assert record['hyperparameters']['batch_size'] != FAST_TRAINING['batch_size']


def test_the_summary_lists_each_trial_and_the_winner(tuned):
    from pipeline.report import render
    assert '[ 8/12] Tuner ...' in tuned['output']
    out = render(tuned['first'])
    search = trials_of(tuned['nodes'])
    assert 'Tuning: random search, 2 trial(s)' in out
    for t in search['trials']:
        assert f'trial {t["trial_id"]}  val_loss {t["score"]:.4f}' in out
        assert f'hidden_units={t["values"]["hidden_units"]}' in out
    assert f'winner: trial {search["best_trial"]}, val_loss {search["best_score"]:.4f}' in out
    assert tuned['first']['tuning']['best_values'] == search['best_values']


def test_an_unchanged_rerun_takes_the_tuner_from_the_cache(tuned):
    states = {c['id']: c['state'] for c in tuned['rerun']['components']}
    assert states['Tuner'] == 'cached'
    assert states['Trainer'] == 'cached'
    assert tuned['rerun']['tuning']['from_cache'] is True


def test_a_training_setting_the_search_does_not_read_keeps_the_tuner_cached(tuned):
    """training.train_steps and learning_rate changed (the trials have their own steps and
    search the rate): TFX's cache serves the Tuner, the Trainer trains again with the same
    winner."""
    retrained = tuned['retrained']
    assert retrained['status'] == 'succeeded', retrained.get('error')
    states = {c['id']: c['state'] for c in retrained['components']}
    assert states['Tuner'] == 'cached'
    assert states['Trainer'] == 'ran'
    assert retrained['tuning']['from_cache'] is True
    record = record_of(tuned['retrained_nodes'])
    assert record['hyperparameters'] == trials_of(tuned['nodes'])['best_values']


def test_reuse_latest_imports_the_earlier_results_instead_of_searching(tuned):
    reused = tuned['reused']
    assert reused['status'] == 'succeeded', reused.get('error')
    states = {c['id']: c['state'] for c in reused['components']}
    assert 'Tuner' not in states
    assert states['TuningResultsImporter'] in ('ran', 'cached')
    assert states['Trainer'] == 'ran'
    best = tuned['nodes']['Tuner']['outputs']['best_hyperparameters'][0].uri
    assert reused['tuning']['reused'] == best
    assert reused['tuning']['trained_with'] == trials_of(tuned['nodes'])['best_values']
    from pipeline.report import render
    assert f'Tuning: reused {best} (tuning.reuse)' in render(reused)


def test_reuse_refuses_a_directory_without_results(tuned, tmp_path):
    from pipeline.config import ConfigError, load_config
    from pipeline.inputs import tuning_reuse
    with pytest.raises(ConfigError, match=r'tuning.reuse: expected a Tuner\'s '
                                          r'best_hyperparameters directory'):
        tuning_reuse(load_config(tuned['path'], [f'tuning.reuse={tmp_path}']))
    other = load_config(tuned['path'], ['tuning.reuse=latest', 'name=never_tuned'])
    with pytest.raises(ConfigError, match="tuning.reuse: latest: no tuning results of "
                                          "pipeline 'never_tuned'"):
        tuning_reuse(other)


# --- The Tuner's executor alone, on the tuned run's artifacts. ---------------------------

def run_executor(tuned, tmp_path, **tuning):
    """The project's Tuner executor, as the run's Tuner ran, with ``tuning`` changed."""
    from tfx.types import standard_artifacts

    from components.tuner.executor import Executor
    from trainer_testlib import trainer_inputs

    config = tuned['config']
    inputs, properties = trainer_inputs(config.paths.metadata, config.name, node='Tuner')
    custom = json.loads(properties['custom_config'])
    custom['tuning'].update(tuning)
    properties = dict(properties, custom_config=json.dumps(custom))
    outputs = {}
    for key, cls in (('best_hyperparameters', standard_artifacts.HyperParameters),
                     ('tuner_results', standard_artifacts.TunerResults)):
        artifact = cls()
        artifact.uri = str(tmp_path / key)
        os.makedirs(artifact.uri)
        outputs[key] = [artifact]
    executor = Executor(Executor.Context(tmp_dir=str(tmp_path / 'tmp'), unique_id='1'))
    executor.Do(inputs, outputs, properties)
    from components.tuner.executor import read_trials
    with open(tmp_path / 'best_hyperparameters' / 'best_hyperparameters.txt') as f:
        best = json.load(f)
    return read_trials(str(tmp_path / 'tuner_results')), best


def test_hyperband_runs_and_writes_its_winner(tuned, tmp_path):
    """TFX 1.15's own executor crashes after a Hyperband search (tensorflow/tfx#7778:
    its results writer asks the oracle for ``max_trials`` best trials, None for Hyperband);
    ours writes the winner, within the trial budget."""
    search, best = run_executor(tuned, tmp_path, algorithm='hyperband', trials=3)
    assert search['algorithm'] == 'hyperband'
    assert 1 <= len(search['trials']) <= 3
    assert search['best_values'] == best['values']
    from components.hyperparameters import values_of
    assert set(values_of(best)) == {'hidden_units', 'hidden_layers', 'dropout',
                                    'learning_rate', 'batch_size'}


def test_the_time_cap_stops_the_search(tuned, tmp_path):
    """A cap far below one trial's time: the first trial is cut at the cap (it still
    reports its objective) and no other starts, whatever the budget of trials."""
    search, best = run_executor(tuned, tmp_path, trials=5, max_minutes=0.02)
    assert search['stopped_by'] == 'time'
    assert len(search['trials']) == 1
    assert search['trials'][0]['cut_by_time_cap'] is True
    assert search['trials'][0]['status'] == 'COMPLETED'
    assert best['values']


def test_the_html_report_has_the_trials_and_the_tuned_hyperparameters(tuned):
    search = trials_of(tuned['nodes'])
    with open(tuned['first']['report'], encoding='utf-8') as f:
        page = f.read()
    assert 'id="tuning"' in page and 'random search, 2 trial(s)' in page
    assert f'{search["best_trial"]} (winner)' in page
    assert 'Hyperparameters (tuned)' in page
