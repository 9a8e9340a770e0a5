"""serialize.deterministic_examples gives protobuf's deterministic serialization of the
tf.Examples tfx_bsl's encoder makes of a record batch, byte for byte: the bytes
FastCsvExampleGen hashes to put a row in a split, so every row keeps its split."""
import os

import pyarrow as pa
import pytest
import tensorflow as tf
from tfx_bsl.coders import example_coder

from components import csv_format
from components.fast_csv_example_gen import executor, serialize

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def expected(batch):
    return [tf.train.Example.FromString(r).SerializeToString(deterministic=True)
            for r in example_coder.RecordBatchToExamplesEncoder().encode(batch)]


def edge_case_batch(rows):
    """Names in an order sort() changes (upper case, '_', non-ASCII), empty lists, a column
    with no kind, values long enough for 2- and 3-byte varint lengths."""
    def pick(i, *choices):
        return choices[i % len(choices)]
    return pa.RecordBatch.from_arrays([
        pa.array([pick(i, [1.5], [], [float(i)] * 40) for i in range(rows)], pa.list_(pa.float32())),
        pa.array([pick(i, [i], [], [-1, 2 ** 40]) for i in range(rows)], pa.list_(pa.int64())),
        pa.array([pick(i, [b'x' * 200], [b''], [b'y' * 20000], []) for i in range(rows)],
                 pa.list_(pa.binary())),
        pa.nulls(rows, pa.list_(pa.binary())),
        pa.array([[f'é{i}'.encode()] for i in range(rows)], pa.list_(pa.binary())),
    ], ['zeta', 'Alpha', '_long', 'nothing', 'été'])


@pytest.mark.parametrize('rows', [0, 1, 7, 300])
def test_deterministic_serialization_of_encoded_examples(rows):
    batch = edge_case_batch(rows)
    got = serialize.deterministic_examples(batch).to_pylist()
    assert got == expected(batch)
    if rows:
        names = list(tf.train.Example.FromString(got[0]).features.feature)
        assert set(names) == {'zeta', 'Alpha', '_long', 'nothing', 'été'}


def test_a_slice_of_a_larger_batch():
    """A record batch that is a slice (non-zero offsets), as ``to_batches`` can give."""
    batch = edge_case_batch(50).slice(13, 20)
    assert serialize.deterministic_examples(batch).to_pylist() == expected(batch)


def test_the_bundled_data_keeps_every_rows_split():
    """The taxi CSV as ExampleGen reads it (ints, floats, strings, missing cells), in the
    executor's batches: the same bytes as before, so the same hash and the same split."""
    table, types = csv_format.read_tables([os.path.join(REPO, 'data', 'taxi', 'data.csv')],
                                          csv_format.CsvFormat())
    splits = {0: 0, 1: 0}
    for batch in table.to_batches(max_chunksize=5_000):
        batch = csv_format.to_record_batch(batch, types)
        got, want = serialize.deterministic_examples(batch).to_pylist(), expected(batch)
        assert got == want
        for record in got:
            splits[executor.partition(record, [2, 3])] += 1
    assert table.num_rows > 10_000 and min(splits.values()) > 3_000
