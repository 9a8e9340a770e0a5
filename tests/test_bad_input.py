"""Bad input: each case ends with a message naming the file (and the line, column or field,
and what was expected) and a non-zero exit, or with an anomaly through the gate; and the
serving directory and ML Metadata of the earlier, good run are left as they were.

The earlier state is the shared baseline (tests/validation_testlib.py: a pushed version and
a store with executions). Refused cases go through ``pipeline_runner.main`` in this process
and are stopped by the config check or the preflight in well under a second; the anomaly
cases share one real run (ExampleGen -> StatisticsGen -> ExampleValidator -> gate) on one
file that has all of them, written with CRLF line endings, and changed while it is read.
"""
import hashlib
import logging
import pathlib

import pytest
from ml_metadata.proto import metadata_store_pb2 as mlmd

import pipeline_runner
import validation_testlib as lib

ROWS = 40


@pytest.fixture(scope='session')
def base():
    return lib.baseline()


@pytest.fixture
def tmp_path(request):
    """Each case's own directory, under the session's root (see lib.scratch)."""
    return pathlib.Path(lib.scratch(request.node.name))


def snapshot(base):
    with open(base['metadata'], 'rb') as f:
        db = hashlib.sha256(f.read()).hexdigest()
    return {'serving': lib.tree(base['serving']), 'db': db,
            'executions': lib.executions(base['metadata'])}


def assert_untouched(base, before, store_may_grow=False):
    """The pushed version is still there, byte for byte, and nothing else was pushed; the
    store opens and still lists every earlier execution in its earlier state."""
    after = snapshot(base)
    assert after['serving'] == before['serving']
    assert any(p.endswith('saved_model.pb') for p in after['serving'])
    if not store_may_grow:
        assert after['db'] == before['db']
    assert {k: v for k, v in after['executions'].items() if k in before['executions']} == before['executions']
    assert len(before['executions']) >= 10


def refuse(base, capsys, data_root, code=1):
    """Runs the CLI on ``data_root`` with the baseline's paths; returns what it printed."""
    before = snapshot(base)
    capsys.readouterr()
    args = lib.paths_args(base['root'], str(data_root)) + lib.FAST
    assert pipeline_runner.main(args) == code
    err = capsys.readouterr().err
    assert_untouched(base, before)
    return err


def good_rows(n=ROWS):
    return lib.bundled_rows(n)


def write(tmp_path, rows=None, text=None, data=None, name='trips.csv'):
    path = tmp_path / 'data' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        path.write_bytes(data)
    elif text is not None:
        path.write_text(text, encoding='utf-8')
    else:
        lib.write_csv(str(path), rows)
    return path


def lines(rows):
    return [','.join(f'"{v}"' if ',' in v else v for v in r) for r in rows]


# ----------------------------------------------------------------------------------------
# Refused before anything runs.

def test_missing_data_dir(base, capsys, tmp_path):
    err = refuse(base, capsys, tmp_path / 'nowhere', code=2)
    assert f'data.root: no CSV files in {tmp_path / "nowhere"} (the directory does not exist)' in err


def test_empty_data_dir(base, capsys, tmp_path):
    (tmp_path / 'data').mkdir()
    err = refuse(base, capsys, tmp_path / 'data', code=2)
    assert f'data.root: no CSV files in {tmp_path / "data"}' in err


def test_empty_file(base, capsys, tmp_path):
    path = write(tmp_path, data=b'')
    err = refuse(base, capsys, path.parent, code=2)
    assert f'{path} is empty: expected a header row of column names' in err


def test_header_only(base, capsys, tmp_path):
    path = write(tmp_path, rows=good_rows(0))
    err = refuse(base, capsys, path.parent)
    assert f'{path}: the file has a header but no data rows; expected at least one row' in err


def test_label_column_missing(base, capsys, tmp_path):
    rows = [r[:-1] for r in good_rows()]
    path = write(tmp_path, rows=rows)
    err = refuse(base, capsys, path.parent, code=2)
    assert f"data.label: column 'big_tipper' is not in {path}" in err


def test_schema_column_missing(base, capsys, tmp_path):
    rows = good_rows()
    i = rows[0].index('fare')
    path = write(tmp_path, rows=[r[:i] + r[i + 1:] for r in rows])
    # The schema and the data disagree: a config mistake, like a missing label (exit 2).
    err = refuse(base, capsys, path.parent, code=2)
    assert f"data.schema: {path}, line 1: column 'fare' missing from the header; expected every column of the schema" in err


def test_text_in_numeric_column(base, capsys, tmp_path):
    rows = good_rows()
    rows[3][rows[0].index('fare')] = 'twelve'
    path = write(tmp_path, rows=rows)
    err = refuse(base, capsys, path.parent)
    assert f"{path}, line 4, column 'fare': 'twelve' is not a number; expected a number (schema type FLOAT)" in err


@pytest.mark.parametrize('value', ['1e400', 'inf', '-Infinity'])
def test_a_number_that_is_not_finite(base, capsys, tmp_path, value):
    # float() reads it, as ExampleGen does, and the model then trained to NaN
    rows = good_rows()
    rows[7][rows[0].index('fare')] = value
    path = write(tmp_path, rows=rows)
    err = refuse(base, capsys, path.parent)
    assert (f"{path}, line 8, column 'fare': {value!r} is not a finite number (a model trained "
            'on it learns NaN); expected a finite number') in err


def test_too_many_fields(base, capsys, tmp_path):
    text = lines(good_rows())
    text[5] += ',extra'
    path = write(tmp_path, text='\n'.join(text) + '\n')
    err = refuse(base, capsys, path.parent)
    assert f'{path}, line 6: 20 fields; expected 19, as in the header' in err


def test_too_few_fields(base, capsys, tmp_path):
    text = lines(good_rows())
    text[7] = text[7].rsplit(',', 2)[0]
    path = write(tmp_path, text='\n'.join(text) + '\n')
    err = refuse(base, capsys, path.parent)
    assert f'{path}, line 8: 17 fields; expected 19, as in the header' in err


def test_unbalanced_quote(base, capsys, tmp_path):
    text = lines(good_rows())
    text[2] = text[2].replace(',', ',"', 1)  # the second field opens a quote, never closed
    path = write(tmp_path, text='\n'.join(text) + '\n')
    err = refuse(base, capsys, path.parent)
    assert f'{path}, lines 3-' in err
    assert 'a quoted field runs over a line break' in err or 'quote opened on line 3' in err


def test_non_utf8_bytes(base, capsys, tmp_path):
    text = '\n'.join(lines(good_rows())) + '\n'
    data = text.encode('utf-8').replace(b'Credit Card', b'Cr\xe9dit Card', 1)
    line = text[:text.index('Credit Card')].count('\n') + 1
    path = write(tmp_path, data=data)
    err = refuse(base, capsys, path.parent)
    assert f"{path}, line {line} (byte offset {data.index(bytes([0xe9]))}: b'\\xe9dit'): bytes that are not valid UTF-8; expected UTF-8 text" in err
    assert 'set data.encoding to the encoding the file is in (cp1252 for most Windows exports' in err


def test_duplicate_header_names(base, capsys, tmp_path):
    rows = good_rows()
    rows[0][rows[0].index('company')] = 'fare'
    path = write(tmp_path, rows=rows)
    err = refuse(base, capsys, path.parent)
    assert (f"{path}, line 1: column name 'fare' appears twice (columns 2 and 15); "
            'expected unique column names') in err


def test_very_long_line(base, capsys, tmp_path):
    rows = good_rows()
    rows[9][rows[0].index('company')] = 'x' * 200_000
    path = write(tmp_path, rows=rows)
    err = refuse(base, capsys, path.parent)
    assert f'{path}, line 10: not valid CSV (field larger than field limit (131072))' in err


# ----------------------------------------------------------------------------------------
# Anomalies through the gate: one real run on one file that has all of them.

class AppendWhenExampleGenStarts(logging.Handler):
    """Appends a row to the file as ExampleGen starts: a writer still busy with the file."""

    def __init__(self, path, row):
        super().__init__()
        self.path, self.row = path, row

    def emit(self, record):
        if record.msg in ('Component %s is running.',) and record.args[0] == 'CsvExampleGen':
            with open(self.path, 'a', encoding='utf-8', newline='') as f:
                f.write(self.row + '\r\n')


@pytest.fixture(scope='module')
def anomalous_run(base):
    rows = good_rows(200)
    header = rows[0]
    rows[0] = header + ['surcharge']                           # a column not in the schema
    for r in rows[1:]:
        r.append('1.5')
        r[header.index('company')] = ''                        # empty in every row
    rows[5][header.index('payment_type')] = 'Bitcoin'          # a never-seen category
    rows[6][header.index('trip_start_hour')] = '31'            # out of range
    rows[7][header.index('pickup_latitude')] = '48.5'          # out of range
    path = pathlib.Path(lib.scratch('anomalous')) / 'trips.csv'
    path.write_bytes(('\r\n'.join(lines(rows)) + '\r\n').encode('utf-8'))  # CRLF endings
    before = snapshot(base)
    handler = AppendWhenExampleGenStarts(str(path), lines([rows[1]])[0])
    logging.getLogger().addHandler(handler)
    try:
        result = lib.run_cli(lib.paths_args(base['root'], str(path.parent)) + lib.FAST)
    finally:
        logging.getLogger().removeHandler(handler)
    result.update(before=before, path=str(path))
    return result


def gate_error(run):
    assert run['code'] == 1
    error = run['summary']['error']
    assert error.startswith('AnomalyGate failed'), error
    return error


def test_anomaly_run_pushes_nothing_and_keeps_the_store(base, anomalous_run):
    gate_error(anomalous_run)
    assert 'Transform' not in {c['id'] for c in anomalous_run['summary']['components']}
    assert_untouched(base, anomalous_run['before'], store_may_grow=True)


def test_crlf_line_endings_are_read_like_lf(anomalous_run):
    # Only the planted anomalies: no label or type anomaly from a stray carriage return.
    found = {a['feature'] for a in anomalous_run['summary']['anomalies']['found']}
    assert found == {'payment_type', 'trip_start_hour', 'pickup_latitude', 'company', 'surcharge'}


def test_file_changed_while_read(anomalous_run):
    error = gate_error(anomalous_run)
    assert 'InputChanged: data files changed while the run read them' in error
    assert f'{anomalous_run["path"]}: was ' in error


def anomaly(run, feature):
    # A planted row lands in the train or the eval split, as the hash decides.
    return [a for a in run['summary']['anomalies']['found'] if a['feature'] == feature][0]


def test_never_seen_category(anomalous_run):
    found = anomaly(anomalous_run, 'payment_type')
    assert found['kind'] == 'ENUM_TYPE_UNEXPECTED_STRING_VALUES' and 'Bitcoin' in found['description']
    assert 'payment_type: ENUM_TYPE_UNEXPECTED_STRING_VALUES' in gate_error(anomalous_run)


def test_out_of_range_values(anomalous_run):
    assert anomaly(anomalous_run, 'trip_start_hour')['kind'] == 'INT_TYPE_BIG_INT'
    assert anomaly(anomalous_run, 'pickup_latitude')['kind'] == 'FLOAT_TYPE_BIG_FLOAT'
    error = gate_error(anomalous_run)
    assert 'trip_start_hour: INT_TYPE_BIG_INT' in error and 'pickup_latitude: FLOAT_TYPE_BIG_FLOAT' in error


def test_entirely_empty_column(anomalous_run):
    assert 'company: ' in gate_error(anomalous_run)
    assert 'FEATURE_TYPE_NOT_PRESENT' in anomaly(anomalous_run, 'company')['kind']


def test_unexpected_extra_column(anomalous_run):
    assert anomaly(anomalous_run, 'surcharge')['kind'] == 'SCHEMA_NEW_COLUMN'
    assert 'surcharge: SCHEMA_NEW_COLUMN' in gate_error(anomalous_run)
