"""FastCsvExampleGen writes the artifact CsvExampleGen writes, on a tiny CSV with edge cases."""
import glob
import os

import pytest
import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.fast_csv_example_gen import executor as fast_executor

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


def run(executor_class, tmp_path, name, split_config=True):
    data = tmp_path / 'data'
    data.mkdir(exist_ok=True)
    (data / 'data.csv').write_text(TINY_CSV)
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
                                                                      pattern='*')])),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
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
