"""Executor of FastCsvExampleGen: CSV files -> gzipped TFRecords of tf.Examples, with pyarrow.

It reads the files as ``components/csv_format.py`` says (the exec properties ``delimiter``,
``encoding`` and ``na_values``; ``*.csv`` and ``*.csv.gz``; quoted fields may hold line
breaks), and writes what ``CsvExampleGen`` writes for the same table, record for record:
  * column types inferred as CsvExampleGen infers them (tfx_bsl's rule, over all the rows:
    INT if every present cell is an int64, else FLOAT if every one is a float, else STRING;
    a column with no value at all gets features with no kind);
  * a missing cell (empty, or an NA token) is a feature with an empty value list of the
    column's type;
  * the same hash split: a record's bucket is sha256 of its deterministic serialization,
    modulo the total of hash buckets (``base_example_gen_executor._PartitionFn``), so a row
    lands in the same split as with CsvExampleGen;
  * with the ``label`` exec property, a row without a label is left out (counted);
  * files ``Split-<name>/data_tfrecord-NNNNN-of-MMMMM.gz`` and the artifact's split names,
    payload format and file format properties.
Record order inside a split differs (CsvExampleGen shuffles; this keeps file order), which
no consumer relies on.

Why it is faster: CsvExampleGen parses every cell and builds every proto in Python inside a
Beam pipeline. Here pyarrow parses the CSV in C++, types are inferred on each column's
distinct values, and tfx_bsl's C++ encoder and numpy build the serialized tf.Examples in
their deterministic form, the one the split hashes (``serialize.py``).
"""
import bisect
import hashlib
import math
import os
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.write_split import DEFAULT_TF_RECORD_FILE_NAME, to_file_format_str
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils
from tfx_bsl.coders import example_coder

from components import csv_format, input_files
from components.fast_csv_example_gen import serialize

# The exec property naming the label column: rows without a value in it (an empty cell or
# an NA token) are left out, for a row without a label can be neither trained nor evaluated
# on (a missing label would be mean-filled, or read as the negative class); their number is
# the artifact's custom property ``rows_without_label``, which the run's summary shows.
LABEL_KEY = 'label'
UNLABELLED_PROPERTY = 'rows_without_label'

# A split of more records than this is written as several shards of equal size: a .gz file
# is read by one worker, so a multi-worker runner shares the split file by file.
RECORDS_PER_SHARD = 50_000
BATCH_ROWS = 50_000


def partition(serialized: bytes, buckets: List[int]) -> int:
    """The split index CsvExampleGen gives this record (``_PartitionFn``)."""
    bucket = int.from_bytes(hashlib.sha256(serialized).digest(), 'big') % buckets[-1]
    return bisect.bisect(buckets, bucket)


class ShardedWriter:
    """Gzipped TFRecord shards named as Beam's WriteToTFRecord names them: ``expect(n)``
    records make ceil(n / RECORDS_PER_SHARD) shards, which take the records in turn, so
    that each holds an equal share. A worker reads a .gz file whole: filled one after the
    other, the 1M benchmark's 200,188 eval records were a shard of 200,000 and one of 188,
    and a second worker had nearly nothing to read."""

    def __init__(self, directory: str):
        self.directory, self.shards, self.writers, self.count = directory, 1, [], 0
        fileio.makedirs(directory)

    def expect(self, records: int) -> None:
        self.shards = max(1, math.ceil(records / RECORDS_PER_SHARD))

    def path(self, i: int) -> str:
        return os.path.join(self.directory, f'.tmp-{i:05d}.gz')

    def write(self, record: bytes) -> None:
        if not self.writers:
            self.writers = [tf.io.TFRecordWriter(self.path(i), options='GZIP')
                            for i in range(self.shards)]
        self.writers[self.count % self.shards].write(record)
        self.count += 1

    def close(self) -> None:
        if not self.writers:  # an empty split is still one (empty) file, as with Beam
            self.shards, self.writers = 1, [tf.io.TFRecordWriter(self.path(0), options='GZIP')]
        for writer in self.writers:
            writer.close()
        n = len(self.writers)
        for i in range(n):
            fileio.rename(self.path(i), os.path.join(
                self.directory, f'{DEFAULT_TF_RECORD_FILE_NAME}-{i:05d}-of-{n:05d}.gz'),
                overwrite=True)


def convert(files: List[str], writers: List[ShardedWriter], buckets: List[int],
            fmt: csv_format.CsvFormat = csv_format.CsvFormat(), label: str = '') -> int:
    """Reads ``files`` (one header, checked like CsvExampleGen) and writes their records;
    with ``label``, only the rows that have one. Returns the number of rows left out."""
    from pyarrow import compute as pc

    table, types_by_name = csv_format.read_tables(files, fmt)
    for writer, share in zip(writers, np.diff([0] + buckets) / buckets[-1]):
        writer.expect(round(table.num_rows * share))
    encoder = example_coder.RecordBatchToExamplesEncoder()
    unlabelled = 0
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        if label in types_by_name:
            labelled = pc.is_valid(batch.column(label))
            unlabelled += len(batch) - pc.sum(labelled).as_py() if len(batch) else 0
            batch = batch.filter(labelled)
        batch = csv_format.to_record_batch(batch, types_by_name)
        if len(writers) > 1:
            # The deterministic serialization, which CsvExampleGen hashes for the split,
            # is what is written.
            for record in serialize.deterministic_examples(batch).to_pylist():
                writers[partition(record, buckets)].write(record)
        else:
            for record in encoder.encode(batch):
                writers[0].write(record)
    return unlabelled


def record_input_files(artifacts: List[types.Artifact], input_base: str,
                       input_config: example_gen_pb2.Input) -> None:
    """Records on each artifact the files about to be read, with their size and mtime as
    they are now, for the AnomalyGate to check again (components/input_files.py)."""
    paths = [path for split in input_config.splits
             for path in sorted(fileio.glob(os.path.join(input_base, split.pattern)))
             if csv_format.is_csv_name(path)]
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
        fmt = csv_format.CsvFormat.from_exec_properties(exec_properties)
        label = exec_properties.get(LABEL_KEY) or ''
        for artifact in artifacts:
            artifact.split_names = artifact_utils.encode_split_names(split_names)
        record_input_files(artifacts, input_base, input_config)  # before reading them

        def files_of(pattern: str) -> List[str]:
            found = sorted(f for f in fileio.glob(os.path.join(input_base, pattern))
                           if csv_format.is_csv_name(f))
            if not found:
                raise RuntimeError(f'Split pattern {os.path.join(input_base, pattern)} does not '
                                   f'match any *.csv or *.csv.gz files.')
            return found

        def writer(split: str) -> ShardedWriter:
            return ShardedWriter(artifact_utils.get_split_uri(artifacts, split))

        if output_config.split_config.splits:
            buckets = list(np.cumsum([s.hash_buckets for s in output_config.split_config.splits]))
            writers = [writer(name) for name in split_names]
            unlabelled = convert(files_of(input_config.splits[0].pattern), writers,
                                 [int(b) for b in buckets], fmt, label)
            for w in writers:
                w.close()
        else:
            unlabelled = 0
            for split, name in zip(input_config.splits, split_names):
                w = writer(name)
                unlabelled += convert(files_of(split.pattern), [w], [1], fmt, label)
                w.close()
        for artifact in artifacts:
            artifact.set_int_custom_property(UNLABELLED_PROPERTY, unlabelled)

        for artifact in artifacts:
            payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
            if payload:
                examples_utils.set_payload_format(artifact, payload)
            file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
            if file_format:
                examples_utils.set_file_format(artifact, to_file_format_str(file_format))
