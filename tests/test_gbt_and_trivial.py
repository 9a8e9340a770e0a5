"""The gbt trainer end to end, and the trivial-baseline warning and gate: real pipeline runs.

``gbt_runs`` (one pipeline root, 500 taxi rows; ExampleGen, statistics and Transform run once
and are reused: both trainers read the same raw examples through the same TFT graph):
``keras``    the Keras trainer: the first model, blessed and pushed.
``gbt``      ``--trainer gbt``: gated against the Keras model as baseline; blessed, pushed.
``reverse``  Keras again: gated against the gbt model as baseline (TFMA loads TF-DF models).

``regression_runs`` (a synthetic price CSV, prices in the thousands):
``weak``     label standardization off and one training step, no threshold (so the default
             gate, beat_trivial): the model is worse than always predicting the mean: not
             blessed, nothing pushed, the summary says why.
``fitted``   the defaults (standardized label): blessed and pushed, answering in prices.
Both: 20 rows have no price (an empty cell or an NA token): left out, and counted.
"""
import csv
import json
import os
import random
import subprocess
import sys
from typing import Any, Dict, List

import numpy as np
import pytest
import tensorflow as tf

from testlib import FAST_TRAINING, REPO

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'serving'))
from serving_testlib import check_served_model, push_copy, start_server  # noqa: E402

FAST = ['--train-steps', '60', '--set', 'training.eval_steps=5',
        '--set', 'training.steps_per_epoch=30', '--set', 'training.batch_size=32',
        '--set', 'training.gbt_num_trees=20', '--set', 'evaluation.slices=[]',
        '--set', 'evaluation.thresholds=[{metric: auc, lower: 0.0}]',
        '--set', 'evaluation.change_thresholds=[{metric: auc, max_decrease: 1.0}]']


def run_cli(args: List[str], summary_path: str) -> Dict[str, Any]:
    import pipeline_runner
    code = pipeline_runner.main(args + ['--summary-json', summary_path])
    with open(summary_path, encoding='utf-8') as f:
        summary = json.load(f)
    assert code == 0, summary.get('error')
    return summary


@pytest.fixture(scope='session')
def gbt_runs(tmp_path_factory, taxi_sample) -> Dict[str, Any]:
    root = str(tmp_path_factory.mktemp('gbt'))
    base = ['--data-root', taxi_sample, '--pipeline-root', os.path.join(root, 'pipeline'),
            '--metadata', os.path.join(root, 'metadata.sqlite'),
            '--serving-dir', os.path.join(root, 'serving')] + FAST
    out = {}
    for name, args in (('keras', ['--trainer', 'keras']), ('gbt', ['--trainer', 'gbt']),
                       ('reverse', ['--trainer', 'keras', '--train-steps', '40'])):
        out[name] = run_cli(base + args, os.path.join(root, f'{name}.json'))
    return out


def test_a_gbt_model_is_gated_against_a_keras_baseline_blessed_and_pushed(gbt_runs):
    keras, gbt = gbt_runs['keras'], gbt_runs['gbt']
    assert gbt['trainer'] == 'gbt' and keras['trainer'] == 'keras'
    states = {c['id']: c['state'] for c in gbt['components']}
    # The same raw examples through the same TFT graph: nothing before the Trainer re-ran.
    assert states['Transform'] == 'cached' and states['Trainer'] == 'ran'
    # The plan, recorded with the (cached) Transform execution, is in the summary.
    assert gbt['features']['task'] == 'binary'
    assert 'fare' in {f['name'] for f in gbt['features']['features']}
    ev = gbt['evaluation']
    assert ev['baseline_model'] and ev['baseline_model'].startswith(
        os.path.dirname(os.path.dirname(keras['tensorboard_logdir'])))
    assert ev['baseline_metrics']['auc'] == pytest.approx(keras['evaluation']['metrics']['auc'])
    assert ev['metrics']['auc'] > 0.8
    assert gbt['blessed'] is True and gbt['push']['pushed'] is True
    assert gbt['push']['version'] != keras['push']['version']


def test_a_keras_model_is_gated_against_a_gbt_baseline(gbt_runs):
    reverse, gbt = gbt_runs['reverse'], gbt_runs['gbt']
    ev = reverse['evaluation']
    # TFMA loaded the trees (it imports TF-DF's ops itself) and scored them as the baseline.
    assert ev['baseline_metrics']['auc'] == pytest.approx(gbt['evaluation']['metrics']['auc'])
    assert reverse['blessed'] is True and reverse['trainer'] == 'keras'


def test_the_pushed_gbt_model_is_served_by_the_projects_server(gbt_runs, tmp_path):
    gbt = gbt_runs['gbt']
    serving_dir = str(tmp_path / 'taxi')
    push_copy(gbt['push']['path'], serving_dir, 1)
    server = start_server(serving_dir)
    try:
        check_served_model(server)
    finally:
        server.stop()


def test_the_server_loads_tf_df_ops_itself(gbt_runs):
    # A fresh process that imports only the server's loader (no TFMA, no TFT to import TF-DF).
    code = ('import sys; from serving.model import LoadedVersion; '
            'v = LoadedVersion("taxi", 1, sys.argv[1]); print(sorted(v.signatures))')
    proc = subprocess.run([sys.executable, '-c', code, gbt_runs['gbt']['push']['path']],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'serving_json' in proc.stdout


def test_batch_predictions_load_tf_df_ops_for_a_gbt_model(gbt_runs, taxi_sample, tmp_path):
    # `predict` in a fresh process, as a user runs it: it failed with "Op type not registered
    # 'SimpleMLLoadModelFromPathWithHandle'" on a gbt model.
    gbt = gbt_runs['gbt']
    out = tmp_path / 'p.csv'
    proc = subprocess.run(
        [sys.executable, 'pipeline_runner.py', 'predict', '--data', taxi_sample, '--out', str(out),
         '--serving-dir', os.path.dirname(gbt['push']['path']),
         '--model-version', str(gbt['push']['version'])],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 500 and all(0.0 <= float(r['probability']) <= 1.0 for r in rows)


# ------------------------------------------------------------------------------------------
# A regression CSV: the weak-model warning, beat_trivial, and prices in, prices out.

REGRESSION_CONFIG = """
name: prices
data:
  root: {root}/data
  label: price
  task: regression
training: {training}
paths:
  pipeline_root: {root}/pipeline
  metadata: {root}/metadata.sqlite
  serving_dir: {root}/serving
"""


def make_prices(path, n=400, seed=0):
    rng = random.Random(seed)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        w.writerow(['carat', 'cut', 'depth', 'price'])
        for _ in range(n):
            carat, cut = rng.uniform(0.2, 2.5), rng.choice(['fair', 'good', 'ideal'])
            price = 800 + 4000 * carat + {'fair': 0, 'good': 400, 'ideal': 900}[cut]
            w.writerow([round(carat, 2), cut, round(rng.gauss(61, 1.5), 1),
                        round(price + rng.gauss(0, 300))])
        for i in range(UNPRICED):  # rows without a label, as exports leave them
            w.writerow([round(rng.uniform(0.2, 2.5), 2), 'good', 61.0, ['', 'NA'][i % 2]])


UNPRICED = 20


@pytest.fixture(scope='session')
def regression_runs(tmp_path_factory):
    from pipeline.config import load_config
    from pipeline.report import render
    from pipeline.run import run_pipeline

    root = tmp_path_factory.mktemp('prices')
    os.makedirs(root / 'data')
    make_prices(str(root / 'data' / 'prices.csv'))
    (root / 'prices.yaml').write_text(REGRESSION_CONFIG.format(root=root, training=FAST_TRAINING))
    out = {}
    for name, overrides in (('weak', ['features.roles.standardize_label=false',
                                      'training.train_steps=1']),
                            ('fitted', [])):
        config = load_config(str(root / 'prices.yaml'), overrides)
        out[name] = run_pipeline(config)
        out[name]['text'] = render(out[name])
        out[name]['versions'] = sorted(os.listdir(config.paths.serving_dir)) \
            if os.path.isdir(config.paths.serving_dir) else []
    return out


def test_a_model_worse_than_the_mean_is_not_blessed_and_the_summary_says_why(regression_runs):
    weak = regression_runs['weak']
    assert weak['status'] == 'succeeded', weak.get('error')
    trivial = weak['evaluation']['trivial']
    assert trivial['metric'] == 'mean_squared_error' and trivial['weak'] is True
    assert trivial['value'] > trivial['trivial'] > 0
    # The MSE it is compared with is TFMA's own.
    assert trivial['value'] == pytest.approx(
        weak['evaluation']['metrics']['mean_squared_error'], rel=1e-4)
    assert weak['blessed'] is False and weak['push']['pushed'] is False
    assert weak['versions'] == []
    text = weak['text']
    assert "Weak model: its mean_squared_error on the eval split" in text
    assert 'always the mean of the labels' in text
    assert 'no better than a trivial model (evaluation.beat_trivial)' in text
    # The run's HTML report says it too, under why the model was not blessed.
    with open(weak['report'], encoding='utf-8') as f:
        html = f.read()
    assert "Weak model: its mean_squared_error on the eval split" in html
    # and its table of thresholds lists the gate that refused it, with the trivial value
    assert (f'<td>mean_squared_error</td><td>trivial</td><td>&lt; {trivial["trivial"]:.4f}, a '
            'trivial model&#39;s (always the mean of the labels; evaluation.beat_trivial)</td>'
            in html)
    assert 'Not blessed: mean_squared_error' in html and 'evaluation.beat_trivial refuses' in text
    # The plan is in the summary: the label's line says it was not standardized.
    assert weak['features']['label_std'] == 1.0
    assert 'price' in text.split('Features')[1].split('\n')[1]


def test_the_summary_says_when_a_model_worse_than_the_baseline_passes_the_gate(regression_runs):
    # A config with no change_thresholds (a new dataset's, written from the README) blesses
    # a model worse than the one in production: the summary says so, and how to gate it.
    import copy

    from pipeline.report import render
    summary = copy.deepcopy(regression_runs['fitted'])
    ev = summary['evaluation']
    mse = ev['metrics']['mean_squared_error']
    ev['baseline_metrics'] = {'mean_squared_error': mse / 2}
    ev['baseline_model'] = '/pipeline/Trainer/model/3'
    assert (f'Worse than the baseline: mean_squared_error {mse:.4f} against {mse / 2:.4f} '
            '(lower is better), and no evaluation.change_thresholds entry gates on it: '
            '{metric: mean_squared_error, max_decrease: <how much worse it may be>, '
            'higher_is_better: false} would.') in render(summary)
    ev['baseline_metrics'] = {'mean_squared_error': mse * 2}  # better than the baseline
    assert 'Worse than the baseline' not in render(summary)
    ev['baseline_metrics'] = {'mean_squared_error': mse / 2}
    summary['change_thresholds'] = [{'metric': 'mean_squared_error', 'max_decrease': 1e9,
                                     'higher_is_better': False}]  # gated, as configured
    assert 'Worse than the baseline' not in render(summary)


def test_the_summary_says_when_the_eval_split_is_too_small_to_mean_much(regression_runs):
    import copy

    from pipeline.report import render
    summary = copy.deepcopy(regression_runs['fitted'])
    summary['evaluation']['metrics']['example_count'] = 3.0  # a 25-row CSV's eval split
    assert ('Few eval rows: the metrics above come from 3 examples, where one example moves '
            'an accuracy by 33.3%') in render(summary)
    summary['evaluation']['metrics']['example_count'] = 2985.0
    assert 'Few eval rows' not in render(summary)


def test_the_summary_says_when_class_weights_moved_the_probabilities(taxi_e2e):
    # openintro's email (9.4% spam): balanced weights, calibration 1.70, and no word of why.
    import copy

    from pipeline.report import render
    summary = copy.deepcopy(taxi_e2e['first'])
    assert 'Weighted probabilities' not in render(summary)  # taxi is unweighted
    summary['features']['class_weights'] = {'0': 0.552, '1': 5.34}
    summary['evaluation']['metrics']['calibration'] = 1.7027
    assert ("Weighted probabilities: training weighted the classes ('0': 0.552, '1': 5.34), so "
            "the predicted probabilities are not the classes' rates: calibration 1.70 "
            "(mean prediction over mean label; 1 is calibrated).") in render(summary)
    summary['evaluation']['metrics']['calibration'] = 1.08  # near enough to say nothing
    assert 'Weighted probabilities' not in render(summary)
    summary['evaluation']['metrics']['calibration'] = 1.7027
    summary['trainer'] = 'gbt'  # trains unweighted: the weights are not why
    assert 'Weighted probabilities' not in render(summary)


def test_a_standardized_regression_model_beats_the_mean_and_answers_in_prices(regression_runs):
    fitted = regression_runs['fitted']
    assert fitted['blessed'] is True and fitted['push']['pushed'] is True
    trivial = fitted['evaluation']['trivial']
    assert trivial['weak'] is False and trivial['gain'] > 0
    assert 'Weak model' not in fitted['text']
    # The unpriced rows were neither trained nor evaluated on (else mean-filled prices).
    assert fitted['rows_without_label'] == UNPRICED
    assert (f"Rows without a label: {UNPRICED}, left out of training and evaluation" in
            fitted['text'])
    plan = fitted['features']
    assert plan['label_mean'] > 1000 and plan['label_std'] > 500
    assert 'standardized for training' in plan['label_reason']
    model = tf.saved_model.load(fitted['push']['path'])
    out = model.signatures['serving_json'](
        carat=tf.constant([0.5, 2.0], tf.float32), cut=tf.constant([b'good', b'ideal']),
        depth=tf.constant([61.0, 61.0], tf.float32))['value'].numpy()
    expected = np.array([800 + 2000 + 400, 800 + 8000 + 900])
    assert np.all(np.abs(out - expected) < 0.5 * expected), out  # prices, not z-scores
    assert out[1] > out[0]


@pytest.mark.parametrize('template, split_axis, growing', [
    ('', 'AXIS_ALIGNED', 'LOCAL'), ('better_default', 'AXIS_ALIGNED', 'BEST_FIRST_GLOBAL'),
    ('benchmark_rank1', 'SPARSE_OBLIQUE', 'BEST_FIRST_GLOBAL')])
def test_training_gbt_template_picks_tf_dfs_predefined_hyperparameters(template, split_axis,
                                                                       growing):
    import tensorflow_decision_forests as tfdf

    from components.features import FeaturePlan
    from components.gbt_trainer import build_gbt_model
    from pipeline.config import TrainingConfig
    plan = FeaturePlan(features=(), label='y', label_dtype='int', task='binary')
    model = build_gbt_model(plan, {'x': tfdf.keras.FeatureSemantic.NUMERICAL},
                            TrainingConfig(gbt_template=template))
    params = model.learner_params
    assert (params['split_axis'], params['growing_strategy']) == (split_axis, growing)
    # the settings the config names win over the template's
    assert (params['num_trees'], params['max_depth'], params['min_examples']) == (300, 6, 20)
    mine = build_gbt_model(plan, {'x': tfdf.keras.FeatureSemantic.NUMERICAL},
                           TrainingConfig(gbt_template=template, gbt_min_examples=5))
    assert mine.learner_params['min_examples'] == 5
