"""Helpers shared by the tests: small data and configs in temporary directories."""
import csv
import os
import sys

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
