"""Shared fixtures: small data, configs in temporary directories, and the shared pipeline runs.

The end-to-end runs are session fixtures so that many tests assert on one run: a full run
on a few hundred rows takes about two minutes on two cores.
"""
import csv
import os
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI_CSV = os.path.join(REPO, 'data', 'taxi', 'data.csv')
sys.path.insert(0, REPO)

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def taxi_rows(n, every=25):
    """The header and n rows, taking every ``every``-th row of the bundled data."""
    with open(TAXI_CSV, newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [r for i, r in enumerate(reader) if i % every == 0][:n]
    return header, rows


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_config(directory, base='taxi', **sections):
    """A YAML config in ``directory``: the bundled one for ``base``, with sections updated.

    ``sections`` maps a top-level key to a dict merged into it (or a scalar replacing it).
    Paths default to subdirectories of ``directory``.
    """
    with open(os.path.join(REPO, 'configs', f'{base}.yaml'), encoding='utf-8') as f:
        raw = yaml.safe_load(f)
    raw['data']['schema'] = os.path.join(REPO, raw['data']['schema'])
    raw['paths'] = {'pipeline_root': os.path.join(directory, 'root'),
                    'metadata': os.path.join(directory, 'metadata', 'metadata.sqlite'),
                    'serving_dir': os.path.join(directory, 'serving')}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key].update(value)
        else:
            raw[key] = value
    path = os.path.join(directory, f'{raw["name"]}.yaml')
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(raw, f)
    return path


# Few steps and small batches: the end-to-end tests check the plumbing, not the model.
FAST_TRAINING = {'train_steps': 150, 'eval_steps': 10, 'steps_per_epoch': 50, 'batch_size': 32}


@pytest.fixture(scope='session')
def taxi_sample(tmp_path_factory):
    """A data root holding 500 rows of the bundled taxi data."""
    root = tmp_path_factory.mktemp('taxi_data')
    header, rows = taxi_rows(500)
    write_csv(str(root / 'data.csv'), header, rows)
    return str(root)


@pytest.fixture(scope='session')
def taxi_e2e(tmp_path_factory, taxi_sample):
    """Three runs of the taxi pipeline on one pipeline root and metadata store:

    first   a cold run (blessed, pushed);
    rerun   the same run again (served from the cache);
    strict  the same data with an unreachable AUC bound (not blessed, nothing pushed),
            through the command line, with --summary-json.
    """
    from pipeline.config import load_config
    from pipeline.run import run_pipeline
    import pipeline_runner

    directory = str(tmp_path_factory.mktemp('taxi_e2e'))
    path = write_config(directory, data={'root': taxi_sample}, training=FAST_TRAINING)
    config = load_config(path)
    first = run_pipeline(config)
    versions_after_first = sorted(os.listdir(config.paths.serving_dir))
    rerun = run_pipeline(config)
    versions_after_rerun = sorted(os.listdir(config.paths.serving_dir))
    summary_json = os.path.join(directory, 'strict-summary.json')
    strict_exit = pipeline_runner.main([
        '--config', path, '--set', 'evaluation.thresholds=[{metric: auc, lower: 1.01}]',
        '--summary-json', summary_json])
    with open(summary_json, encoding='utf-8') as f:
        import json
        strict = json.load(f)
    return {'config': config, 'config_path': path, 'first': first, 'rerun': rerun,
            'strict': strict, 'strict_exit': strict_exit,
            'versions_after_first': versions_after_first,
            'versions_after_rerun': versions_after_rerun,
            'versions_after_strict': sorted(os.listdir(config.paths.serving_dir))}
