"""``pipeline_runner.py predict`` on the model the end-to-end run pushed (conftest.taxi_e2e):
a 20-row CSV with bad rows, on Beam's in-process and portable runners and on two worker
processes of its own (--beam-workers 2); and the line numbering on its own."""
import csv
import glob
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import yaml

import pipeline_runner
from components import batch_inference, csv_format
from testlib import taxi_rows, write_csv

PORTABLE = ['--runner', 'PortableRunner', '--beam-arg=--job_endpoint=embed',
            '--beam-arg=--environment_type=LOOPBACK']


def bad_file(path):
    """20 taxi rows, then four bad ones and a good one after them: line 23 has a cell too few,
    24 text in an integer column, 25 bytes that are not UTF-8, 26 a float in an integer
    column; line 27-28 is a good row whose company spans two lines."""
    header, rows = taxi_rows(21)
    write_csv(path, header, rows[:20])
    col = {name: i for i, name in enumerate(header)}
    lines = []
    short = rows[20][:-1]
    lines.append(','.join(short))
    text = list(rows[20])
    text[col['trip_start_hour']] = 'noon'
    lines.append(','.join(text))
    lines.append(None)  # the non-UTF-8 line, written as bytes below
    floaty = list(rows[20])
    floaty[col['trip_start_hour']] = '9.5'
    lines.append(','.join(floaty))
    multi = list(rows[20])
    multi[col['company']] = '"Two\nLines Cab"'
    lines.append(','.join(multi))
    with open(path, 'ab') as f:
        for line in lines:
            if line is None:
                broken = list(rows[20])
                broken[col['company']] = 'Caf\xe9'
                f.write(','.join(broken).encode('latin-1') + b'\n')
            else:
                f.write(line.encode() + b'\n')
    return header, rows[:20] + [multi]


def serving_default(model_path, header, rows, config):
    """The pushed model called in process on tf.Examples built here from the rows."""
    from pipeline.schema import load_schema
    types = {f.name: f.type for f in load_schema(config.data.schema).feature}
    examples = []
    for row in rows:
        feature = {}
        for name, value in zip(header, row):
            if name in (config.data.label, *config.data.exclude) or value == '':
                continue
            value = value.strip('"')
            if types[name] == 1:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            elif types[name] == 2:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
            else:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    model = tf.saved_model.load(model_path)
    return model.signatures['serving_default'](examples=tf.constant(examples))['probability'].numpy()


@pytest.fixture(scope='module')
def scored(taxi_e2e, tmp_path_factory):
    directory = tmp_path_factory.mktemp('predict')
    data = directory / 'data'
    header, good = bad_file(str(data / 'a.csv'))
    write_csv(str(data / 'b.csv'), header, good[:3])
    runs = {}
    logs = os.path.join(taxi_e2e['config'].paths.pipeline_root, '_logs', 'predict-*.log')
    for name, args in (('local', []), ('portable', PORTABLE), ('workers', ['--beam-workers', '2'])):
        out = directory / name / 'preds.csv'
        before = set(glob.glob(logs))
        code = pipeline_runner.main(['predict', '--config', taxi_e2e['config_path'],
                                     '--data', str(data / 'a.csv'), '--out', str(out),
                                     '--keep', 'company,fare', *args])
        runs[name] = (code, out)
        [log] = set(glob.glob(logs)) - before or [None]
        with open(log or os.devnull, encoding='utf-8') as f:
            runs[name + '_log'] = f.read()
    parquet = directory / 'dir' / 'preds.parquet'
    code = pipeline_runner.main(['predict', '--config', taxi_e2e['config_path'],
                                 '--data', str(data), '--out', str(parquet)])
    runs['directory'] = (code, parquet)
    return {'runs': runs, 'header': header, 'good': good, 'data': data,
            'model': taxi_e2e['first']['push']['path'], 'config': taxi_e2e['config']}


def read(path):
    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize('runner', ['local', 'portable', 'workers'])
def test_every_good_row_is_scored_in_order_and_every_bad_one_rejected(scored, runner):
    code, out = scored['runs'][runner]
    assert code == 0
    rows = read(out)
    assert list(rows[0]) == ['line', 'company', 'fare', 'probability']
    assert [int(r['line']) for r in rows] == list(range(2, 22)) + [26]
    assert rows[-1]['company'] == 'Two\nLines Cab'
    assert [r['fare'] for r in rows[:20]] == [g[scored['header'].index('fare')]
                                             for g in scored['good'][:20]]
    expected = serving_default(scored['model'], scored['header'], scored['good'], scored['config'])
    np.testing.assert_allclose([float(r['probability']) for r in rows], expected, rtol=1e-6)
    rejects = read(str(out).replace('.csv', '.rejects.csv'))
    assert [(int(r['line']), r['reason']) for r in rejects] == [
        (22, 'expected 19 cells, got 18'),
        (23, "column trip_start_hour: 'noon' is not an integer"),
        (24, "column company: 'Caf\ufffd' is not UTF-8 text"),
        (25, "column trip_start_hour: '9.5' is not an integer")]
    assert {r['file'] for r in rejects} == {str(scored['data'] / 'a.csv')}


def test_beam_workers_run_the_job_on_worker_processes_of_their_own(scored):
    # The job went to the pool's two SDK harnesses (each started by Beam's worker pool),
    # through the portable runner: not to the direct runner, nor to a harness in this process.
    log = scored['runs']['workers_log']
    assert log.count('Starting worker with command') == 2, log[-3000:]
    assert 'Starting worker with command' not in scored['runs']['local_log']


def test_a_directory_is_scored_file_by_file_into_parquet(scored):
    code, out = scored['runs']['directory']
    assert code == 0
    table = pq.read_table(out).to_pydict()
    assert list(table) == ['line', 'file', 'probability']
    assert table['file'] == ['a.csv'] * 21 + ['b.csv'] * 3
    assert table['line'] == list(range(2, 22)) + [26] + [2, 3, 4]
    assert len(read(str(out).replace('.parquet', '.rejects.csv'))) == 4


def test_the_summary_counts_the_rejects(scored, taxi_e2e, tmp_path, capsys):
    pipeline_runner.main(['predict', '--config', taxi_e2e['config_path'], '--data',
                          str(scored['data'] / 'a.csv'), '--out', str(tmp_path / 'p.csv')])
    text = capsys.readouterr().out
    assert 'Scored 21 rows in' in text
    assert f'Rejected 4 rows (file, line and reason in {tmp_path / "p.rejects.csv"})' in text


def test_a_config_without_data_schema_scores_with_the_schema_its_runs_use(scored, taxi_e2e,
                                                                          tmp_path, capsys):
    # The README's way for a new dataset: data.schema left out, so runs use (and draft)
    # schemas/<name>/schema.pbtxt beside the config. predict read data.schema as it was
    # (empty) and failed: "FileNotFoundError: [Errno 2] No such file or directory: ''".
    with open(taxi_e2e['config_path'], encoding='utf-8') as f:
        raw = yaml.safe_load(f)
    raw['data'].pop('schema', None)
    config = taxi_e2e['config']
    raw['data']['root'] = config.data.root
    raw['paths'] = {f: getattr(config.paths, f) for f in ('pipeline_root', 'metadata', 'serving_dir')}
    path = tmp_path / 'new.yaml'
    path.write_text(yaml.safe_dump(raw), encoding='utf-8')
    args = ['predict', '--config', str(path), '--data', str(scored['data'] / 'b.csv'),
            '--out', str(tmp_path / 'p.csv')]
    assert pipeline_runner.main(args) == 2  # no run drafted one yet: refused, naming the key
    assert f"data.schema: no schema at {tmp_path / 'schemas' / raw['name'] / 'schema.pbtxt'}" \
        in capsys.readouterr().err
    (tmp_path / 'schemas' / raw['name']).mkdir(parents=True)
    shutil.copy(config.data.schema, tmp_path / 'schemas' / raw['name'] / 'schema.pbtxt')
    assert pipeline_runner.main(args) == 0
    assert len(read(tmp_path / 'p.csv')) == 3


def test_refusals_name_what_is_wrong(scored, taxi_e2e, tmp_path, capsys):
    config = taxi_e2e['config_path']
    header, rows = taxi_rows(3)
    no_fare = [i for i, h in enumerate(header) if h != 'fare']
    write_csv(str(tmp_path / 'nofare.csv'), [header[i] for i in no_fare],
              [[r[i] for i in no_fare] for r in rows])
    cases = [
        (['--data', str(tmp_path / 'nofare.csv'), '--out', str(tmp_path / 'x.csv')], 1,
         f"Data refused: {tmp_path / 'nofare.csv'}: no column 'fare', which the model takes"),
        (['--data', str(scored['data']), '--out', str(tmp_path / 'x.json')], 2,
         'expected a file name ending in .csv or .parquet'),
        (['--data', str(scored['data']), '--out', str(tmp_path / 'x.csv'),
          '--model-version', '7'], 2, '--model-version: no version 7 in'),
        (['--data', str(tmp_path / 'missing'), '--out', str(tmp_path / 'x.csv')], 2,
         f'--data: {tmp_path / "missing"} does not exist'),
        (['--data', str(scored['data']), '--out', str(tmp_path / 'x.csv'), '--beam-workers', '2',
          '--runner', 'FlinkRunner'], 2, '--beam-workers (default: run.beam_workers) sends the job '
         'to its own worker pool; it cannot be combined with --runner'),
        (['--data', str(scored['data']), '--out', str(tmp_path / 'x.csv'),
          '--runner', 'DataflowRunner'], 2, "the Beam arguments run Beam's workers on Dataflow "
         '(--runner=DataflowRunner), but the job reads --data and the model and writes --out '
         'on this machine'),
    ]
    for args, status, message in cases:
        assert pipeline_runner.main(['predict', '--config', config, *args]) == status
        assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / 'x.csv')


def test_line_numbers_count_multi_line_values_and_skipped_rows(tmp_path):
    path = tmp_path / 'lines.csv'
    path.write_bytes(b'a,b\n1,x\n2,"multi\nline"\n3\n4,"y"\n5,z,extra\n6,"p\n\nq"\n7,w\n8\n')
    found, rejects = [], []
    for batch, lines, bad in batch_inference.read_chunks(str(path), ['a'], csv_format.CsvFormat(),
                                                         chunk_bytes=16):
        found += list(zip(batch.column(0).to_pylist(), lines.tolist()))
        rejects += bad
    assert found == [(b'1', 2), (b'2', 3), (b'4', 6), (b'6', 8), (b'7', 11)]
    assert rejects == [(5, 'expected 2 cells, got 1'), (7, 'expected 2 cells, got 3'),
                       (12, 'expected 2 cells, got 1')]


def test_files_are_read_as_the_run_reads_its_data(tmp_path):
    """A gzipped, semicolon-delimited export with NA tokens: the delimiter is detected, the
    tokens are missing values (features without a value, as ExampleGen writes them), and a
    wrong-typed cell is still a reject."""
    import gzip

    import tensorflow as tf

    path = tmp_path / 'export.csv.gz'
    path.write_bytes(gzip.compress(b'n;s\n1;x\nNA;y\n3;N/A\nfour;z\n'))
    job = batch_inference.Job(model_path='', files=(str(path),), file_names=(),
                              features={'n': batch_inference.INT, 's': batch_inference.STRING},
                              output=str(tmp_path / 'out.csv'))
    batch_inference.check_inputs(job)  # the header is read with the detected delimiter
    (batch, lines, bad), = batch_inference.read_chunks(str(path), ['n', 's'],
                                                        job.reading(str(path)))
    assert batch.column(0).to_pylist() == [b'1', None, b'3', b'four']
    accepted, examples, rejects = batch_inference.encode(batch, job.features)
    assert accepted.tolist() == [True, True, True, False]
    assert rejects == [(3, "column n: 'four' is not an integer")]
    def present(example):
        features = tf.train.Example.FromString(example).features.feature
        return sorted(name for name, f in features.items()
                      if len(getattr(f, f.WhichOneof('kind') or 'int64_list').value))
    assert [present(e) for e in examples] == [['n', 's'], ['s'], ['n']]


def test_raw_features_are_the_cells_as_examplegen_reads_them():
    """serving_json's inputs from checked cells: ExampleGen's int()/float() rules, a missing
    cell as the signature's missing value; a present value that *is* that value (an empty
    string, "nan") sends the chunk the tf.Example way (None)."""
    from components.signatures import MISSING_INT64
    features = {'n': batch_inference.INT, 'x': batch_inference.FLOAT,
                's': batch_inference.STRING}
    batch = lambda n, x, s: pa.RecordBatch.from_arrays(
        [pa.array(v, pa.string()) for v in (n, x, s)], ['n', 'x', 's'])
    arrays = batch_inference.to_raw_features(
        batch([' 7', None, '3'], ['1e3', '0.1', None], ['a', None, 'Caf\xe9']), features)
    assert arrays['n'].tolist() == [7, MISSING_INT64, 3]
    assert arrays['x'].dtype == np.float32 and arrays['x'][:2].tolist() == [1000.0, np.float32(0.1)]
    assert np.isnan(arrays['x'][2])
    assert arrays['s'].tolist() == [b'a', b'', 'Caf\xe9'.encode()]
    assert batch_inference.to_raw_features(batch(['1'], ['nan'], ['a']), features) is None
    assert batch_inference.to_raw_features(batch(['1'], ['2'], ['']), features) is None


def test_the_raw_feature_call_gives_serving_defaults_predictions(scored):
    """The job calls the pushed model's serving_json on the chunk's columns (no tf.Example
    encoding), with exactly serving_default's predictions; a chunk serving_json cannot
    express (a present "nan" fare) still gets serving_default's."""
    from pipeline.predict import model_features
    path = str(scored['data'] / 'b.csv')
    features = model_features(scored['config'], scored['config'].data.schema, scored['model'])
    (batch, lines, _), = batch_inference.read_chunks(
        path, list(features), csv_format.resolve(path, '', 'utf-8', csv_format.NA_VALUES))
    _, rows, _ = batch_inference.check(batch, features)
    nan_fare = pa.RecordBatch.from_arrays(
        [pa.array(['nan'] * rows.num_rows, pa.string()) if name == 'fare' else rows.column(name)
         for name in rows.schema.names], rows.schema.names)
    outputs = {}
    for raw in ('serving_json', ''):
        handler = batch_inference.ChunkModelHandler(scored['model'], 'serving_default',
                                                    features, raw)
        model = handler.load_model()
        assert (handler._raw_call(model) is not None) == bool(raw)
        chunks = [batch_inference.Chunk(0, i, lines, {}, r, []) for i, r in
                  enumerate((rows, nan_fare))]
        outputs[raw] = [r.inference['probability'] for r in handler.run_inference(chunks, model)]
    for ours, reference in zip(outputs['serving_json'], outputs['']):
        np.testing.assert_array_equal(ours, reference)
    assert not np.array_equal(outputs[''][0], outputs[''][1])  # the fare mattered


@pytest.mark.parametrize('fmt', ['csv', 'parquet'])
def test_a_multiclass_row_names_its_most_probable_class(fmt):
    classes = np.array([[b'Adelie', b'Gentoo', 'Ch\u00edn'.encode()]] * 3, dtype=object)
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]], np.float32)
    columns = batch_inference.prediction_columns(
        {'probabilities': probabilities, 'classes': classes}, fmt)
    assert columns['predicted_class'].to_pylist() == ['Adelie', 'Ch\u00edn', 'Gentoo']
    assert list(columns)[0] == 'predicted_class'
    if fmt == 'csv':  # a column per class, named by it
        assert columns['probabilities_Gentoo'].to_pylist() == pytest.approx([0.2, 0.3, 0.5])
        assert 'probabilities_Ch\u00edn' in columns and 'classes' not in columns
    else:
        assert columns['classes'].to_pylist()[0] == ['Adelie', 'Gentoo', 'Ch\u00edn']


def test_a_binary_or_regression_row_has_no_predicted_class():
    columns = batch_inference.prediction_columns(
        {'probability': np.array([0.2, 0.9], np.float32)}, 'csv')
    assert list(columns) == ['probability']


def test_the_summary_line_reads_for_a_few_rows():
    from pipeline.predict import render
    text = render({'rows': 2, 'rejected': 1, 'output': 'out.csv', 'rejects': 'r.csv'}, 4.5)
    assert text.splitlines() == ['Scored 2 rows in 4.5s (0.44 rows/s): out.csv',
                                 'Rejected 1 row (file, line and reason in r.csv)']
    assert render({'rows': 1, 'rejected': 0, 'output': 'o', 'rejects': 'r'}, 0.1).startswith(
        'Scored 1 row in 0.1s (10 rows/s): o')
