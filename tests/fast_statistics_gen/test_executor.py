"""FastStatisticsGen writes the statistics StatisticsGen writes, on a small artifact."""
import math
import os

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import json_format
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.components.statistics_gen import executor as tfx_executor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs

from components.fast_statistics_gen import executor as fast_executor


def example(i):
    """Floats, ints, strings; missing values, a feature absent from some rows, a list."""
    features = {
        'fare': tf.train.Feature(float_list=tf.train.FloatList(
            value=[] if i % 7 == 0 else [i / 3])),
        'hour': tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 24])),
        'company': tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[] if i % 5 == 0 else [f'Co {i % 4}'.encode()])),
        'tags': tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[b't%d' % (j % 3) for j in range(i % 4)])),
    }
    if i % 2:
        features['sometimes'] = tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def make_examples(root, rows_by_split):
    examples = standard_artifacts.Examples()
    examples.uri = str(root)
    examples.split_names = artifact_utils.encode_split_names(list(rows_by_split))
    for split, rows in rows_by_split.items():
        path = os.path.join(artifact_utils.get_split_uri([examples], split), 'data.gz')
        os.makedirs(os.path.dirname(path))
        with tf.io.TFRecordWriter(path, 'GZIP') as w:
            for i in rows:
                w.write(example(i))
    return examples


def statistics(executor_class, examples, out):
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(out)
    executor_class().Do({specs.EXAMPLES_KEY: [examples]}, {specs.STATISTICS_KEY: [artifact]}, {})
    by_split = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        proto = statistics_pb2.DatasetFeatureStatisticsList()
        with open(os.path.join(artifact_utils.get_split_uri([artifact], split),
                               tfx_executor.DEFAULT_FILE_NAME), 'rb') as f:
            proto.ParseFromString(f.read())
        # Features in path order: the order is not part of what the statistics say.
        for dataset in proto.datasets:
            features = sorted(dataset.features, key=lambda f: tuple(f.path.step))
            del dataset.features[:]
            dataset.features.extend(features)
        by_split[split] = json_format.MessageToDict(proto)
    return artifact, by_split


def assert_same(ours, theirs, path='statistics'):
    """Equal, except floats, which may differ in the last digits (sums in another order)."""
    assert type(ours) is type(theirs), path
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), path
        for key in ours:
            assert_same(ours[key], theirs[key], f'{path}.{key}')
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f'{path}[{i}]')
    elif isinstance(ours, float):
        assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12), path
    else:
        assert ours == theirs, path


@pytest.fixture(scope='module')
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('stats')
    examples = make_examples(tmp / 'examples', {'train': range(400), 'eval': range(400, 500)})
    return (statistics(tfx_executor.Executor, examples, tmp / 'tfx'),
            statistics(fast_executor.Executor, examples, tmp / 'fast'))


def test_the_same_statistics_as_statistics_gen(both):
    (reference, expected), (fast, got) = both
    assert got.keys() == expected.keys() == {'train', 'eval'}
    assert got['train']['datasets'][0]['numExamples'] == '400'
    assert {f['path']['step'][0] for f in got['train']['datasets'][0]['features']} == {
        'fare', 'hour', 'company', 'tags', 'sometimes'}
    for split in expected:
        assert_same(got[split], expected[split], split)
    assert fast.split_names == reference.split_names and fast.span == reference.span


def test_sampling_and_empty_splits_go_to_statistics_gen_unchanged(tmp_path):
    sampled = {specs.STATS_OPTIONS_JSON_KEY: tfdv.StatsOptions(sample_rate=0.5).to_json()}
    examples = make_examples(tmp_path / 'examples', {'train': range(50), 'eval': []})
    assert fast_executor.in_memory({specs.EXAMPLES_KEY: [examples]}, {})
    assert not fast_executor.in_memory({specs.EXAMPLES_KEY: [examples]}, sampled)
    # An empty split: TFX's executor writes its statistics (no rows), for every split.
    _, got = statistics(fast_executor.Executor, examples, tmp_path / 'fast')
    _, expected = statistics(tfx_executor.Executor, examples, tmp_path / 'tfx')
    assert_same(got, expected)
