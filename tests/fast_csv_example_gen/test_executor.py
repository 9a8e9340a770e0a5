"""FastCsvExampleGen writes the artifact CsvExampleGen writes, on a tiny CSV with edge cases."""
import csv
import glob
import gzip
import io
import os

import pytest
import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import csv_format
from components.fast_csv_example_gen import executor as fast_executor

GLOB = csv_format.CSV_GLOB  # ExampleGen's pattern in the pipeline (pipeline/spans.py)

# Empty cells, a column with no value at all, an int column that turns float on its last row,
# a number too big for int64 (string), a quoted comma, a quoted newline, a blank line.
TINY_CSV = '''id,fare,hour,company,nothing,big,note
1,12.5,5,Taxi Co,,1,plain
2,,7,,,2,"with, comma"
3,3.25,,"Flash Cab",,99999999999999999999,"two
lines"

4,0,23,Taxi Co,,3,
''' + ''.join(f'{i},{i / 7:.3f},{i % 24},Co {i % 3},,{i},n{i}\n' for i in range(5, 60)) + \
    '60,1.5,2.5,Co,,4,last\n'


def run(executor_class, tmp_path, name, split_config=True, files=None, fmt=None,
        input_base=None, label=None):
    """Runs the executor on ``files`` ({name: bytes}, default TINY_CSV as data.csv) in a
    data directory of its own, or on the files in ``input_base``."""
    data = input_base or tmp_path / f'data-{name}'
    if input_base is None:
        data.mkdir(exist_ok=True)
        for filename, content in (files or {'data.csv': TINY_CSV.encode()}).items():
            (data / filename).write_bytes(content)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / name)
    output = example_gen_pb2.Output()
    if split_config:
        output.split_config.splits.add(name='train', hash_buckets=4)
        output.split_config.splits.add(name='eval', hash_buckets=1)
    else:
        output.split_config.splits.add(name='train', hash_buckets=1)
    props = {
        standard_component_specs.INPUT_BASE_KEY: str(data),
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='single',
                                                                      pattern=GLOB)])),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        **(fmt.exec_properties() if fmt else {}),
        **({fast_executor.LABEL_KEY: label} if label else {}),
    }
    executor_class().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, props)
    return examples


def records(examples, split):
    files = glob.glob(os.path.join(artifact_utils.get_split_uri([examples], split), '*'))
    assert files, f'no files in split {split}'
    parsed = [tf.train.Example.FromString(r.numpy())
              for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]
    return sorted(e.SerializeToString(deterministic=True) for e in parsed)


@pytest.fixture(scope='module')
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('examplegen')
    return run(csv_executor.Executor, tmp, 'csv'), run(fast_executor.Executor, tmp, 'fast')


@pytest.mark.parametrize('split', ['train', 'eval'])
def test_same_records_in_same_split_as_csv_example_gen(both, split):
    reference, fast = both
    expected = records(reference, split)
    assert expected, 'the tiny CSV should put rows in both splits'
    assert records(fast, split) == expected


def test_same_artifact_properties(both):
    reference, fast = both
    assert fast.split_names == reference.split_names
    for key in ('payload_format', 'file_format'):
        assert fast.get_string_custom_property(key) == reference.get_string_custom_property(key)


def test_encoding_of_empty_cells_and_types(both):
    _, fast = both
    by_id = {e.features.feature['id'].int64_list.value[0]: e.features.feature
             for split in ('train', 'eval')
             for e in map(tf.train.Example.FromString, records(fast, split))}
    assert len(by_id) == 60                                   # the blank line is skipped
    row2 = by_id[2]
    assert row2['fare'].HasField('float_list') and not row2['fare'].float_list.value
    assert not row2['nothing'].HasField('kind')               # a column with no value at all
    assert row2['hour'].float_list.value == [7.0]             # int column with one float
    assert by_id[3]['big'].bytes_list.value == [b'99999999999999999999']
    assert by_id[3]['note'].bytes_list.value == [b'two\nlines']


def test_ragged_row_names_the_file(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'bad.csv').write_text('a,b\n1,2\n3\n')
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / 'out')
    props = {
        standard_component_specs.INPUT_BASE_KEY: str(data),
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='s', pattern='*')])),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Output()),
    }
    with pytest.raises(ValueError, match=r'bad\.csv.*Expected 2 columns'):
        fast_executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, props)


# ----------------------------------------------------------------------------------------
# CSV as people export it (components/csv_format.py). Each case must give the records
# CsvExampleGen gives for the plain file: comma-separated UTF-8, missing cells empty.

# Missing values written as NA tokens in an int, a float and a string column, quoted or not.
NA_TOKENS = ['NA', 'N/A', 'null', 'NaN', 'None', '"NA"', '#N/A', '']


def na_csv(missing=None):
    """id,count,length,island,label; every 4th row has its count, length and island
    missing, written as NA tokens in turn (or as ``missing`` for all of them)."""
    lines = ['id,count,length,island,label']
    for i in range(40):
        if i % 4 == 0:
            token = NA_TOKENS[(i // 4) % len(NA_TOKENS)] if missing is None else missing
            count = length = island = token
        else:
            count, length, island = str(i % 7), f'{30 + i / 8:.2f}', ['Biscoe', 'Dream'][i % 2]
        lines.append(f'{i},{count},{length},{island},{i % 2}')
    return ('\n'.join(lines) + '\n').encode()


@pytest.fixture(scope='module')
def na_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('na')
    return {'reference': run(csv_executor.Executor, tmp, 'csv', files={'d.csv': na_csv('')}),
            'fast': run(fast_executor.Executor, tmp, 'fast', files={'d.csv': na_csv()},
                        fmt=csv_format.CsvFormat(na_values=csv_format.NA_VALUES)),
            'off': run(fast_executor.Executor, tmp, 'off', files={'d.csv': na_csv()},
                       fmt=csv_format.CsvFormat(na_values=()))}


def by_id(examples):
    return {e.features.feature['id'].int64_list.value[0]: e.features.feature
            for split in ('train', 'eval')
            for e in map(tf.train.Example.FromString, records(examples, split))}


@pytest.mark.parametrize('split', ['train', 'eval'])
def test_na_tokens_are_written_as_empty_cells(na_runs, split):
    expected = records(na_runs['reference'], split)
    assert records(na_runs['fast'], split) == expected


def test_columns_with_na_tokens_keep_their_type(na_runs):
    rows = by_id(na_runs['fast'])
    assert rows[1]['count'].int64_list.value == [1]
    assert rows[1]['length'].float_list.value == pytest.approx([30.12])
    for i in range(0, 40, 4):  # every token, quoted or not: no value, of the column's type
        assert rows[i]['count'].HasField('int64_list') and not rows[i]['count'].int64_list.value
        assert rows[i]['length'].HasField('float_list') and not rows[i]['length'].float_list.value
        assert rows[i]['island'].HasField('bytes_list') and not rows[i]['island'].bytes_list.value


def test_without_na_tokens_they_are_text(na_runs):
    rows = by_id(na_runs['off'])
    assert rows[0]['count'].bytes_list.value == [b'NA']       # the column became strings
    assert rows[5]['length'].bytes_list.value == [b'30.62']


def test_statistics_see_na_cells_as_missing_numbers(na_runs, tmp_path):
    from components.fast_statistics_gen import executor as stats_executor
    from tensorflow_metadata.proto.v0 import statistics_pb2
    out = standard_artifacts.ExampleStatistics()
    out.uri = str(tmp_path / 'stats')
    stats_executor.Executor().Do({standard_component_specs.EXAMPLES_KEY: [na_runs['fast']]},
                                 {standard_component_specs.STATISTICS_KEY: [out]}, {})
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(open(os.path.join(
        artifact_utils.get_split_uri([out], 'train'), 'FeatureStats.pb'), 'rb').read())
    features = {f.path.step[0]: f for f in stats.datasets[0].features}
    FNS = statistics_pb2.FeatureNameStatistics
    assert features['count'].type == FNS.INT and features['length'].type == FNS.FLOAT
    assert features['island'].type == FNS.STRING
    for name in ('count', 'length'):
        common = features[name].num_stats.common_stats
        assert common.min_num_values == 0 and common.max_num_values == 1
    assert {b.label for b in features['island'].string_stats.rank_histogram.buckets} == {
        'Biscoe', 'Dream'}


# One table with what exports hold: a quoted delimiter, a quoted line break, non-ASCII text,
# empty cells.
EXPORT_ROWS = [['id', 'price', 'name', 'note']] + [
    [str(i), f'{i * 1.25:.2f}' if i % 5 else '', ['Crème brûlée', 'Café; au lait, noir',
                                                  'Smörgås|bord', 'Tab\there'][i % 4],
     'two\nlines' if i % 6 == 0 else f'n{i}'] for i in range(30)]


def export(delimiter, encoding):
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator='\r\n').writerows(EXPORT_ROWS)
    return text.getvalue().encode(encoding)


@pytest.fixture(scope='module')
def export_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('export')
    return run(csv_executor.Executor, tmp, 'csv', files={'d.csv': export(',', 'utf-8')})


@pytest.mark.parametrize('delimiter, encoding, name', [
    (';', 'utf-8', 'd.csv'), ('\t', 'utf-8', 'd.csv.gz'), ('|', 'cp1252', 'd.csv'),
    (',', 'latin-1', 'd.CSV.GZ'), (',', 'utf-8-sig', 'd.csv'), (';', 'utf-16', 'd.csv')])
def test_exports_read_like_the_plain_file(export_reference, tmp_path, delimiter, encoding, name):
    data = export(delimiter, encoding)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.lower().endswith('.gz') else data)
    read_as = 'utf-8' if encoding == 'utf-8-sig' else encoding  # a BOM needs no setting
    fmt = csv_format.resolve(str(path), encoding=read_as)
    assert fmt.delimiter == delimiter and fmt.detected
    fast = run(fast_executor.Executor, tmp_path, 'fast', files={name: path.read_bytes()},
               fmt=fmt)
    for split in ('train', 'eval'):
        assert records(fast, split) == records(export_reference, split)


def test_only_csv_and_csv_gz_files_are_read(tmp_path):
    files = {'a.csv': b'id,x\n1,2\n', 'b.csv.gz': gzip.compress(b'id,x\n3,4\n'),
             'c.csv.bak': b'id,x\n5,6\n', '.hidden.csv': b'id,x\n7,8\n'}
    out = run(fast_executor.Executor, tmp_path, 'fast', split_config=False, files=files)
    ids = sorted(by_id_single(out))
    assert ids == [1, 3]


def by_id_single(examples):
    return [e.features.feature['id'].int64_list.value[0]
            for e in map(tf.train.Example.FromString, records(examples, 'train'))]


def test_a_remote_data_root_is_read_through_tfx_filesystems(export_reference, tmp_path):
    """gs:// and the like: TFX's filesystem layer (here TensorFlow's in-memory ram://)."""
    root = f'ram://{tmp_path.name}/data'
    tf.io.gfile.makedirs(root)
    with tf.io.gfile.GFile(f'{root}/d.csv.gz', 'wb') as f:
        f.write(gzip.compress(export(';', 'cp1252')))
    fast = run(fast_executor.Executor, tmp_path, 'remote', input_base=root,
               fmt=csv_format.CsvFormat(';', 'cp1252'))
    for split in ('train', 'eval'):
        assert records(fast, split) == records(export_reference, split)


def test_rows_without_a_label_are_left_out_and_counted(tmp_path):
    # Every 4th row's label is missing (empty, or an NA token); the others keep their split.
    lines = [line if i % 4 else line.rsplit(',', 1)[0] + ',' + ['', 'NA', 'null'][i % 3]
             for i, line in enumerate(na_csv('0').decode().splitlines()[1:])]
    data = ('id,count,length,island,label\n' + '\n'.join(lines) + '\n').encode()
    fmt = csv_format.CsvFormat(na_values=csv_format.NA_VALUES)
    full = run(fast_executor.Executor, tmp_path, 'full', files={'d.csv': data}, fmt=fmt)
    kept = run(fast_executor.Executor, tmp_path, 'kept', files={'d.csv': data}, fmt=fmt,
               label='label')
    assert kept.get_int_custom_property(fast_executor.UNLABELLED_PROPERTY) == 10
    assert full.get_int_custom_property(fast_executor.UNLABELLED_PROPERTY) == 0
    assert sorted(by_id(kept)) == [i for i in range(40) if i % 4]
    for split in ('train', 'eval'):  # a labelled row lands where it did without the filter
        labelled = [r for r in records(full, split)
                    if tf.train.Example.FromString(r).features.feature['label'].int64_list.value]
        assert records(kept, split) == labelled


def test_a_large_split_is_shards_of_equal_size(tmp_path, monkeypatch):
    """More records than a shard holds: shards of equal size (a worker reads a .gz file
    whole, so a split of 200,066 records written 200,000 then 66 left a second worker idle),
    and the same records as one shard."""
    whole = run(fast_executor.Executor, tmp_path, 'whole')
    monkeypatch.setattr(fast_executor, 'RECORDS_PER_SHARD', 10)
    sharded = run(fast_executor.Executor, tmp_path, 'sharded')
    for split in ('train', 'eval'):
        files = sorted(glob.glob(os.path.join(artifact_utils.get_split_uri([sharded], split),
                                              '*')))
        sizes = [sum(1 for _ in tf.data.TFRecordDataset(f, compression_type='GZIP'))
                 for f in files]
        # 60 rows, 4:1 buckets: 48 and 12 expected, so 5 and 2 shards
        assert len(files) == {'train': 5, 'eval': 2}[split], files
        assert max(sizes) - min(sizes) <= 1, sizes
        assert files[0].endswith(f'-00000-of-{len(files):05d}.gz')
        assert records(sharded, split) == records(whole, split)
