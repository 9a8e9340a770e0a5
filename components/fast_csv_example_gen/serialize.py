"""tf.Examples of a record batch, serialized deterministically, without a proto per row.

CsvExampleGen assigns a record to a split by the sha256 of its deterministic serialization
(the features in key order). tfx_bsl's C++ encoder writes each Example's feature map in
its own order, so FastCsvExampleGen used to parse every record and serialize it again in
Python (``tf.train.Example.FromString(r).SerializeToString(deterministic=True)``), about
half of its time at 1M rows (docs/performance.md).

Here tfx_bsl's encoder encodes each column alone, where a one-feature Example has only one
serialization, and numpy puts the columns' map entries side by side in key order under a
new Example header: the bytes protobuf's deterministic serialization gives (the test checks
them against it), for every row of a batch at once.

Wire format: ``Example`` = tag 0x0a, varint length, ``Features``; ``Features`` = for each
feature, tag 0x0a, varint length, map entry (key, ``Feature``). A one-column encoding is
thus an Example header followed by exactly one ``Features`` element, which is kept whole.
"""
import numpy as np
import pyarrow as pa
from tfx_bsl.coders import example_coder

_TAG = 0x0A  # field 1, length-delimited: Example.features, and Features.feature entries


def varint_size(values: np.ndarray) -> np.ndarray:
    """Bytes of each value's varint encoding (values < 2**28)."""
    return 1 + (values >= 1 << 7) + (values >= 1 << 14) + (values >= 1 << 21)


def binary_buffers(array: pa.Array):
    """(offsets, data) of a binary array without nulls, as numpy views."""
    _, offsets, data = array.buffers()
    offsets = np.frombuffer(offsets, np.int32)[array.offset:array.offset + len(array) + 1]
    return offsets.astype(np.int64), np.frombuffer(data, np.uint8)


def feature_entries(encoded: pa.Array):
    """Each one-feature Example's ``Features`` element: (data, starts, lengths)."""
    offsets, data = binary_buffers(encoded)
    sizes = np.diff(offsets)
    # The header is the tag and the varint of the rest's length: k bytes where the rest,
    # size - k, takes k - 1 bytes as a varint.
    header = np.zeros_like(sizes)
    for k in (5, 4, 3, 2):
        header[varint_size(sizes - k) == k - 1] = k
    starts = offsets[:-1] + header
    if len(starts) and not (np.all(data[offsets[:-1]] == _TAG) and np.all(data[starts] == _TAG)):
        raise ValueError('unexpected tf.Example encoding')
    return data, starts, sizes - header


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions start_i .. start_i + length_i - 1 of every i, concatenated."""
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(lengths.sum())


def deterministic_examples(batch: pa.RecordBatch) -> pa.Array:
    """Each row's tf.Example as protobuf's deterministic serialization (features sorted by
    name), from tfx_bsl's encoding of ``batch`` (list columns, as its encoder takes)."""
    encoder = example_coder.RecordBatchToExamplesEncoder()
    rows = batch.num_rows
    entries = []
    for name in sorted(batch.schema.names, key=lambda n: n.encode()):
        one = pa.RecordBatch.from_arrays([batch.column(batch.schema.get_field_index(name))],
                                         [name])
        entries.append(feature_entries(pa.array(encoder.encode(one), pa.binary())))
    features = sum(lengths for _, _, lengths in entries) if entries else np.zeros(rows, np.int64)
    prefix = 1 + varint_size(features)
    sizes = prefix + features
    offsets = np.zeros(rows + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    out = np.empty(offsets[-1], np.uint8)
    out[offsets[:-1]] = _TAG
    remaining = features.copy()
    for k in range(int(prefix.max(initial=1)) - 1):  # the varint of the Features' length
        more = prefix - 1 > k
        low7 = (remaining[more] & 0x7F).astype(np.uint8)
        out[offsets[:-1][more] + 1 + k] = low7 | np.where(prefix[more] - 1 > k + 1, 0x80, 0)
        remaining >>= 7
    at = offsets[:-1] + prefix
    for data, starts, lengths in entries:
        out[ranges(at, lengths)] = data[ranges(starts, lengths)]
        at = at + lengths
    if offsets[-1] >= 1 << 31:
        raise ValueError('a batch of more than 2 GB of records')
    return pa.Array.from_buffers(pa.binary(), rows, [None, pa.py_buffer(
        offsets.astype(np.int32)), pa.py_buffer(out)])
