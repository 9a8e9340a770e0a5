"""One refusal policy, through the real command line (``python pipeline_runner.py``).

Every mistake in the config or the command line exits 2 with a message naming the key,
before TensorFlow is imported (checked with ``python -X importtime``, which lists every
module the process imported); every data refusal exits 1 with its reason. None prints a
traceback. The cases here are those that graph building used to refuse, after TensorFlow
had loaded, with a traceback and exit 1 (or, for a mistyped schema path, not at all).
"""
import os
import re
import subprocess
import sys

import pytest

from testlib import REPO, taxi_rows, write_csv

SCHEMA = os.path.join(REPO, 'schemas', 'taxi', 'schema.pbtxt')


def cli(*args, cwd=REPO):
    """Runs pipeline_runner.py; returns (exit code, stdout, stderr without the import
    lines, the set of top-level packages it imported)."""
    done = subprocess.run([sys.executable, '-X', 'importtime', 'pipeline_runner.py', *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    imported, err = set(), []
    for line in done.stderr.splitlines():
        match = re.match(r'import time:\s+\d+ \|\s+\d+ \|\s+(\S+)', line)
        if match:
            imported.add(match.group(1).split('.')[0])
        elif not line.startswith('import time:'):
            err.append(line)
    return done.returncode, done.stdout, '\n'.join(err), imported


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('refusals')
    header, rows = taxi_rows(40)
    write_csv(str(root / 'data' / 'trips.csv'), header, rows)
    fare = header.index('fare')
    write_csv(str(root / 'no_fare' / 'trips.csv'), header[:fare] + header[fare + 1:],
              [r[:fare] + r[fare + 1:] for r in rows])
    write_csv(str(root / 'extra_label' / 'trips.csv'), header + ['tip_ratio'],
              [r + ['0.1'] for r in rows])
    (root / 'broken.pbtxt').write_text('feature { name: "fare" type: FLOAT \n')  # unclosed
    return root


def base_args(data, data_dir='data'):
    return ['--data-root', str(data / data_dir), '--pipeline-root', str(data / 'out' / 'p'),
            '--metadata', str(data / 'out' / 'm.sqlite'), '--serving-dir', str(data / 'out' / 's')]


CONFIG_MISTAKES = [
    # (what, overrides, data directory, the message)
    ('a threshold on a metric that is not computed',
     ['evaluation.thresholds=[{metric: aucc, lower: 0.5}]'], 'data',
     "evaluation.thresholds[0].metric: 'aucc' is not computed (metrics: example_count, auc,"),
    ('a change threshold on a metric that is not computed',
     ['evaluation.change_thresholds=[{metric: recal, max_decrease: 0.1}]'], 'data',
     "evaluation.change_thresholds[0].metric: 'recal' is not computed"),
    ('a label that is in the data but not in the schema',
     ['data.label=tip_ratio'], 'extra_label',
     "data.label: 'tip_ratio' is not a feature of the schema " + SCHEMA),
    ('bucketize on a string column', ['features.bucketize={payment_type: 4}'], 'data',
     'features.bucketize.payment_type: column is a string, expected numeric'),
    ('numeric forced on a string column', ['features.numeric=[company]'], 'data',
     "features.numeric: column 'company' is a string, expected numeric"),
    ('a string label for a binary task without positive_class', ['data.label=payment_type'],
     'data', "data.positive_class: the label 'payment_type' holds strings"),
    ('a string label for regression', ['data.task=regression', 'data.label=company'], 'data',
     "data.task: regression needs a numeric label, 'company' holds strings"),
    ('a schema column missing from the data', [], 'no_fare',
     "data.schema: {data}/no_fare/trips.csv, line 1: column 'fare' missing from the header; "
     f'expected every column of the schema {SCHEMA}'),
    ('a configured schema that does not exist (a typo)', ['data.schema={data}/schema.pbtx'],
     'data', 'data.schema: {data}/schema.pbtx does not exist; expected the curated schema file'),
    ('a tuning objective the model does not report', ['tuning.trials=2', 'tuning.objective=val_f1'],
     'data', "tuning.objective: expected one of val_loss, val_auc, val_binary_accuracy"),
    ('a search range upside down', ['tuning.trials=2', 'tuning.space.dropout={min: 0.3, max: 0.1}'],
     'data', 'tuning.space.dropout: min 0.3 is above max 0.1'),
    ('tuning the gbt trainer', ['tuning.trials=2', 'training.trainer=gbt'], 'data',
     "tuning: tuning searches the neural network's hyperparameters"),
    ('tuning.reuse of a directory without results', ['tuning.reuse={data}'], 'data',
     "tuning.reuse: expected a Tuner's best_hyperparameters directory holding "
     'best_hyperparameters.txt, got {data}'),
    ('an unknown strategy', ['training.distribute=horovod'], 'data', 'training.distribute'),
    ('distributing the gbt trainer', ['training.distribute=multi_worker', 'training.trainer=gbt'],
     'data', 'training.distribute: the gbt trainer trains its trees in one process'),
    ('a positive class that is not among the label\'s values',
     ['data.label=payment_type', 'data.positive_class=cash'], 'data',
     "data.positive_class: 'cash' is not a value of column 'payment_type' in {data}/data/trips.csv "
     "(its values: 'Cash' ("),
    ('a binary label of numbers other than 0 and 1', ['data.label=trip_start_day'], 'data',
     "data.task: binary, but column 'trip_start_day' in {data}/data/trips.csv holds numbers other "
     'than 0 and 1'),
    ('a schema that does not parse', ['data.schema={data}/broken.pbtxt'], 'data',
     'data.schema: {data}/broken.pbtxt is not a valid schema text proto'),
]


@pytest.mark.parametrize('what, overrides, data_dir, message', CONFIG_MISTAKES,
                         ids=[c[0] for c in CONFIG_MISTAKES])
def test_config_mistakes_exit_2_naming_the_key_before_tensorflow_loads(
        data, what, overrides, data_dir, message):
    sets = [a for o in overrides for a in ('--set', o.replace('{data}', str(data)))]
    code, out, err, imported = cli(*base_args(data, data_dir), *sets)
    assert code == 2, (what, out, err)
    assert message.replace('{data}', str(data)) in err
    assert err.startswith('Config refused: ') and 'taxi.yaml: ' in err
    assert 'Traceback' not in err + out
    assert 'tensorflow' not in imported and 'tfx' not in imported
    assert not (data / 'out' / 's').exists() and not (data / 'out' / 'm.sqlite').exists()


def test_a_mistyped_schema_is_never_drafted_over(data):
    code, _, err, _ = cli(*base_args(data), '--set', f'data.schema={data}/schemas/taxi.pbtxt')
    assert code == 2 and 'data.schema: ' in err
    assert not (data / 'schemas').exists()


def test_a_custom_module_outside_the_image_is_refused_before_compiling(data):
    module = data / 'my_transform.py'
    module.write_text('def preprocessing_fn(inputs, custom_config):\n    return inputs\n')
    code, _, err, imported = cli(
        '--runner', 'kubeflow', '--image', 'gcr.io/p/taxi:1', '--pipeline-root', 'gs://b/root',
        '--serving-dir', 'gs://b/serving', '--set', f'modules.transform={module}')
    assert code == 2
    assert f'modules.transform: {module} is not in the image' in err
    assert 'tensorflow' not in imported and 'Traceback' not in err


def test_kubeflow_refuses_to_draft_a_schema_in_the_image(data):
    code, _, err, imported = cli(
        '--runner', 'kubeflow', '--image', 'gcr.io/p/taxi:1', '--pipeline-root', 'gs://b/root',
        '--serving-dir', 'gs://b/serving', '--set', 'data.schema=draft')
    assert code == 2
    assert 'data.schema: the kubeflow runner reads the curated schema staged in the image' in err
    assert 'tensorflow' not in imported and 'Traceback' not in err


def test_a_data_refusal_exits_1_with_its_reason_before_tensorflow_loads(data):
    header, _ = taxi_rows(0)
    write_csv(str(data / 'header_only' / 'trips.csv'), header, [])
    code, out, err, imported = cli(*base_args(data, 'header_only'))
    assert code == 1
    assert (f'Data refused: {data}/header_only/trips.csv: the file has a header but no data rows'
            in err)
    assert 'Traceback' not in err + out
    assert 'tensorflow' not in imported


def test_a_label_of_one_class_is_refused_before_anything_trains(data):
    header, rows = taxi_rows(40)
    label = header.index('big_tipper')
    write_csv(str(data / 'one_class' / 'trips.csv'), header,
              [r[:label] + ['0'] + r[label + 1:] for r in rows])
    code, out, err, imported = cli(*base_args(data, 'one_class'))
    assert code == 1
    assert (f"Data refused: {data}/one_class/trips.csv: column 'big_tipper' (data.label) has one "
            f"value in all 40 rows with a label ('0' (40 rows)); a binary task needs at least "
            f'two classes' in err)
    assert 'Traceback' not in err + out and 'tensorflow' not in imported


def test_a_label_class_spelled_two_ways_is_refused(data):
    header, rows = taxi_rows(40)
    label = header.index('payment_type')
    spelled = [r[:label] + [r[label] + (' ' if i % 3 == 0 else '')] + r[label + 1:]
               for i, r in enumerate(rows)]
    write_csv(str(data / 'spelled' / 'trips.csv'), header, spelled)
    code, out, err, _ = cli(*base_args(data, 'spelled'), '--set', 'data.label=payment_type',
                            '--set', 'data.positive_class=Cash')
    assert code == 1, err
    assert "column 'payment_type' (data.label) spells one class several ways: 'Cash' and " \
           "'Cash '" in err
    assert 'Traceback' not in err + out


def test_a_header_in_another_encoding_is_refused_as_such_not_as_a_missing_column(data):
    # The Windows export's header holds 'compañía' in Latin-1, and the config names it.
    header, rows = taxi_rows(10)
    header[header.index('company')] = 'compa\xf1\xeda'
    path = data / 'latin1' / 'trips.csv'
    write_csv(str(path), header, rows)
    path.write_bytes(path.read_text(encoding='utf-8').encode('latin-1'))
    code, out, err, _ = cli(*base_args(data, 'latin1'), '--set', 'data.exclude=[compa\xf1\xeda]')
    assert code == 1, err
    assert f'Data refused: {path}, line 1' in err and 'not valid UTF-8' in err
    assert 'data.encoding' in err and 'Traceback' not in err + out


def test_draft_schema_refuses_a_file_that_is_not_a_table_before_inferring_anything(data):
    ragged = data / 'ragged'
    header, rows = taxi_rows(10)
    rows[4] = rows[4][:-2]
    write_csv(str(ragged / 'trips.csv'), header, rows)
    code, out, err, imported = cli('draft-schema', '--set', f'data.root={ragged}',
                                   '--out', str(data / 'draft.pbtxt'))
    assert code == 1
    assert f'Data refused: {ragged}/trips.csv, line 6: 17 fields; expected 19' in err
    assert 'Traceback' not in err + out and 'tensorflow' not in imported
    assert not (data / 'draft.pbtxt').exists()
