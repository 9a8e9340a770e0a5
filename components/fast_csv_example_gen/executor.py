"""Executor of FastCsvExampleGen: CSV files -> gzipped TFRecords of tf.Examples, with pyarrow.

It writes what ``CsvExampleGen`` writes, record for record:
  * column types inferred as CsvExampleGen infers them (tfx_bsl's rule, over all the rows:
    INT if every non-empty cell is an int64, else FLOAT if every one is a float, else STRING;
    a column with no value at all gets features with no kind);
  * an empty cell is a feature with an empty value list of the column's type;
  * the same hash split: a record's bucket is sha256 of its deterministic serialization,
    modulo the total of hash buckets (``base_example_gen_executor._PartitionFn``), so a row
    lands in the same split as with CsvExampleGen;
  * files ``Split-<name>/data_tfrecord-NNNNN-of-MMMMM.gz`` and the artifact's split names,
    payload format and file format properties.
Record order inside a split differs (CsvExampleGen shuffles; this keeps file order), which
no consumer relies on.

Why it is faster: CsvExampleGen parses every cell and builds every proto in Python inside a
Beam pipeline. Here pyarrow parses the CSV in C++, types are inferred on each column's
distinct values, and tfx_bsl's C++ encoder builds the serialized tf.Examples.
"""
import bisect
import hashlib
import os
from typing import Any, Dict, List

import numpy as np
import pyarrow as pa
import tensorflow as tf
from pyarrow import compute as pc
from pyarrow import csv as pa_csv
from tfx import types
from tfx.components.example_gen import utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.write_split import DEFAULT_TF_RECORD_FILE_NAME, to_file_format_str
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils
from tfx_bsl.coders import csv_decoder, example_coder

from components import input_files

ColumnType = csv_decoder.ColumnType
# Output shards hold at most this many records, so multi-worker readers downstream can share
# the files (a .gz file is read by one worker).
RECORDS_PER_SHARD = 200_000
BATCH_ROWS = 50_000


def read_csv(path: str) -> pa.Table:
    """Every cell of ``path`` as a string, exactly as written ('' for an empty cell)."""
    names = io_utils.load_csv_column_names(path)
    try:
        return pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                null_values=[], quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise ValueError(f'{path}: cannot read it as CSV with a header row: {e}') from e


def infer_type(column: pa.ChunkedArray) -> int:
    """CsvExampleGen's column type (tfx_bsl's rule), decided on the distinct values."""
    values = pc.unique(column.filter(pc.not_equal(column, '')))
    if len(values) == 0:
        return ColumnType.UNKNOWN
    try:
        pc.cast(values, pa.int64())
        return ColumnType.INT
    except pa.ArrowInvalid:
        pass
    # Not all int64. tfx_bsl calls an integer beyond int64 a STRING; Arrow would call it a float.
    integers = values.filter(pc.match_substring_regex(values, r'^[+-]?[0-9]+$'))
    try:
        pc.cast(integers, pa.int64())
        pc.cast(values, pa.float64())
        # Arrow parses a subset of what int()/float() parse; if it parses every value,
        # so would tfx_bsl.
        return ColumnType.FLOAT
    except pa.ArrowInvalid:
        pass
    # The exact rule, in Python, only when Arrow was unsure (spaces, '1_000', overflow...).
    return max(csv_decoder._InferValueType(v.encode()) for v in values.to_pylist())  # pylint: disable=protected-access


def to_values(cells: pa.Array, column_type: int) -> pa.Array:
    """Non-empty ``cells`` converted as CsvExampleGen converts them (int(), float(), bytes)."""
    if column_type == ColumnType.STRING:
        return cells.cast(pa.binary())
    target = pa.int64() if column_type == ColumnType.INT else pa.float64()
    try:
        values = pc.cast(cells, target)
    except pa.ArrowInvalid:
        parse = int if column_type == ColumnType.INT else float
        encoded = cells.dictionary_encode()
        table = pa.array([parse(v) for v in encoded.dictionary.to_pylist()], target)
        values = table.take(encoded.indices)
    return values.cast(pa.float32(), safe=False) if column_type == ColumnType.FLOAT else values


_LIST_TYPES = {ColumnType.INT: pa.int64(), ColumnType.FLOAT: pa.float32(),
               ColumnType.STRING: pa.binary(), ColumnType.UNKNOWN: pa.binary()}


def to_record_batch(batch: pa.RecordBatch, types_by_name: Dict[str, int]) -> pa.RecordBatch:
    """Each column as a list column: one value per cell, an empty list for an empty cell."""
    columns, names = [], sorted(types_by_name)
    for name in names:
        column_type, cells = types_by_name[name], batch.column(name)
        if column_type == ColumnType.UNKNOWN:
            columns.append(pa.nulls(len(cells), pa.list_(pa.binary())))
            continue
        present = pc.not_equal(cells, '')
        offsets = np.zeros(len(cells) + 1, dtype=np.int32)
        np.cumsum(present.to_numpy(zero_copy_only=False), out=offsets[1:])
        columns.append(pa.ListArray.from_arrays(
            pa.array(offsets), to_values(cells.filter(present), column_type)))
    return pa.RecordBatch.from_arrays(columns, names)


def partition(serialized: bytes, buckets: List[int]) -> int:
    """The split index CsvExampleGen gives this record (``_PartitionFn``)."""
    bucket = int.from_bytes(hashlib.sha256(serialized).digest(), 'big') % buckets[-1]
    return bisect.bisect(buckets, bucket)


class ShardedWriter:
    """Gzipped TFRecord shards named as Beam's WriteToTFRecord names them."""

    def __init__(self, directory: str):
        self.directory, self.paths, self.count, self.writer = directory, [], 0, None
        fileio.makedirs(directory)

    def write(self, record: bytes) -> None:
        if self.writer is None or self.count >= RECORDS_PER_SHARD:
            self._close()
            self.paths.append(os.path.join(self.directory, f'.tmp-{len(self.paths):05d}.gz'))
            self.writer, self.count = tf.io.TFRecordWriter(self.paths[-1], options='GZIP'), 0
        self.writer.write(record)
        self.count += 1

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        self._close()
        if not self.paths:  # an empty split is still one (empty) file, as with Beam
            self.paths.append(os.path.join(self.directory, '.tmp-00000.gz'))
            tf.io.TFRecordWriter(self.paths[0], options='GZIP').close()
        n = len(self.paths)
        for i, path in enumerate(self.paths):
            fileio.rename(path, os.path.join(
                self.directory, f'{DEFAULT_TF_RECORD_FILE_NAME}-{i:05d}-of-{n:05d}.gz'),
                overwrite=True)


def convert(files: List[str], writers: List[ShardedWriter], buckets: List[int]) -> None:
    """Reads ``files`` (one header, checked like CsvExampleGen) and writes their records."""
    tables = [read_csv(path) for path in files]
    names = tables[0].column_names
    for path, table in zip(files[1:], tables[1:]):
        if table.column_names != names:
            raise RuntimeError(f'{path}: header {table.column_names} differs from {files[0]}\'s '
                               f'{names}; files of one split must have the same columns')
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    del tables
    if len(set(names)) != len(names):
        raise ValueError(f'{files[0]}: the header names a column twice: {names}')
    types_by_name = {name: infer_type(table.column(name)) for name in names}
    encoder = example_coder.RecordBatchToExamplesEncoder()
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        for record in encoder.encode(to_record_batch(batch, types_by_name)):
            if len(writers) > 1:
                # CsvExampleGen hashes the deterministic serialization, which is not byte
                # for byte what the C++ encoder writes.
                key = tf.train.Example.FromString(record).SerializeToString(deterministic=True)
                writers[partition(key, buckets)].write(record)
            else:
                writers[0].write(record)


def record_input_files(artifacts: List[types.Artifact], input_base: str,
                       input_config: example_gen_pb2.Input) -> None:
    """Records on each artifact the files about to be read, with their size and mtime as
    they are now, for the AnomalyGate to check again (components/input_files.py)."""
    paths = [path for split in input_config.splits
             for path in sorted(fileio.glob(os.path.join(input_base, split.pattern)))]
    for artifact in artifacts:
        input_files.record(artifact, input_files.fingerprint(paths))


class Executor(BaseExampleGenExecutor):
    """Overrides ``Do``: no Beam pipeline, the same output artifact."""

    def GetInputSourceToExamplePTransform(self):  # required by the base class; unused
        raise NotImplementedError('FastCsvExampleGen does not run a Beam pipeline')

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                                  output_config)
        artifacts = output_dict[standard_component_specs.EXAMPLES_KEY]
        split_names = utils.generate_output_split_names(input_config, output_config)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        for artifact in artifacts:
            artifact.split_names = artifact_utils.encode_split_names(split_names)
        record_input_files(artifacts, input_base, input_config)  # before reading them

        def files_of(pattern: str) -> List[str]:
            found = sorted(fileio.glob(os.path.join(input_base, pattern)))
            if not found:
                raise RuntimeError(f'Split pattern {os.path.join(input_base, pattern)} does not '
                                   f'match any files.')
            return found

        def writer(split: str) -> ShardedWriter:
            return ShardedWriter(artifact_utils.get_split_uri(artifacts, split))

        if output_config.split_config.splits:
            buckets = list(np.cumsum([s.hash_buckets for s in output_config.split_config.splits]))
            writers = [writer(name) for name in split_names]
            convert(files_of(input_config.splits[0].pattern), writers, [int(b) for b in buckets])
            for w in writers:
                w.close()
        else:
            for split, name in zip(input_config.splits, split_names):
                w = writer(name)
                convert(files_of(split.pattern), [w], [1])
                w.close()

        for artifact in artifacts:
            payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
            if payload:
                examples_utils.set_payload_format(artifact, payload)
            file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
            if file_format:
                examples_utils.set_file_format(artifact, to_file_format_str(file_format))
