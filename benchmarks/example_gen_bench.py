"""ExampleGen alone: CsvExampleGen's executor (Beam, in-memory, one worker) against
FastCsvExampleGen's, on the same CSV directory; prints seconds and checks the splits' sizes.

    PYTHONPATH=. .venv/bin/python benchmarks/example_gen_bench.py DATA_DIR [--skip-csv]

With ``--serialization N``: FastCsvExampleGen's hash split (``executor.convert``, a train/eval
split of the directory's files) with the deterministic serialization the split hashes made
by ``serialize.py`` against the way it was made before (every record parsed and serialized
again by protobuf), alternating, N times each, in this one process; prints each run's CPU
and wall seconds, the split sizes (they must be equal) and the median CPU ratio new/old.
"""
import argparse
import glob
import os
import sys
import tempfile
import time

import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import csv_format
from components.fast_csv_example_gen import executor as fast_executor


def run(executor, data_dir, out):
    examples = standard_artifacts.Examples()
    examples.uri = out
    output = example_gen_pb2.Output()
    output.split_config.splits.add(name='train', hash_buckets=4)
    output.split_config.splits.add(name='eval', hash_buckets=1)
    props = {
        standard_component_specs.INPUT_BASE_KEY: data_dir,
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='s', pattern='*.csv')])),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    start, cpu = time.time(), time.process_time()
    ex = executor(executor.Context(beam_pipeline_args=[
        '--direct_running_mode=in_memory', '--direct_num_workers=1']))
    ex.Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, props)
    seconds, cpu = time.time() - start, time.process_time() - cpu
    counts = {s: sum(1 for _ in tf.data.TFRecordDataset(
        glob.glob(os.path.join(out, f'Split-{s}', '*')), compression_type='GZIP'))
        for s in ('train', 'eval')}
    return seconds, cpu, counts


def convert_before(files, writers, buckets, fmt=csv_format.CsvFormat()):
    """``executor.convert`` before serialize.py: protobuf's deterministic serialization of
    each record, parsed again from the C++ encoder's bytes, hashed; the encoder's written."""
    from tfx_bsl.coders import example_coder

    table, types_by_name = csv_format.read_tables(files, fmt)
    encoder = example_coder.RecordBatchToExamplesEncoder()
    for batch in table.to_batches(max_chunksize=fast_executor.BATCH_ROWS):
        for record in encoder.encode(csv_format.to_record_batch(batch, types_by_name)):
            key = tf.train.Example.FromString(record).SerializeToString(deterministic=True)
            writers[fast_executor.partition(key, buckets)].write(record)


def count(files) -> int:
    """Records in gzipped TFRecord files, counted inside TensorFlow's graph."""
    dataset = tf.data.TFRecordDataset(files, compression_type='GZIP')
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def serialization(data_dir: str, repeat: int) -> None:
    import statistics

    files = sorted(glob.glob(os.path.join(data_dir, '*.csv')))
    cpu = {'before': [], 'serialize.py': []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            for name, convert in (('before', convert_before),
                                  ('serialize.py', fast_executor.convert)):
                out = os.path.join(tmp, f'{name}-{i}')
                writers = [fast_executor.ShardedWriter(os.path.join(out, s))
                           for s in ('train', 'eval')]
                start, cpu0 = time.time(), time.process_time()
                convert(files, writers, [4, 5])
                for w in writers:
                    w.close()
                seconds, used = time.time() - start, time.process_time() - cpu0
                cpu[name].append(used)
                counts = [count(glob.glob(os.path.join(out, s, '*'))) for s in ('train', 'eval')]
                print(f'{name}: {used:.1f} s CPU, {seconds:.1f} s wall, train/eval records '
                      f'{counts} (load {os.getloadavg()[0]:.1f})', flush=True)
    print(f'median CPU serialize.py / before: '
          f'{statistics.median(cpu["serialize.py"]) / statistics.median(cpu["before"]):.3f}')


def main():
    p = argparse.ArgumentParser()
    p.add_argument('data_dir')
    p.add_argument('--skip-csv', action='store_true')
    p.add_argument('--serialization', type=int, default=0, metavar='N',
                   help="time the hash split's serialization, old and new, N times each")
    args = p.parse_args()
    if args.serialization:
        return serialization(os.path.abspath(args.data_dir), args.serialization)
    with tempfile.TemporaryDirectory() as tmp:
        for name, executor in (('FastCsvExampleGen', fast_executor.Executor),
                               ('CsvExampleGen', csv_executor.Executor)):
            if name == 'CsvExampleGen' and args.skip_csv:
                continue
            seconds, cpu, counts = run(executor, os.path.abspath(args.data_dir),
                                       os.path.join(tmp, name))
            print(f'{name}: {seconds:.1f} s wall, {cpu:.1f} s CPU, records {counts} '
                  f'(load {os.getloadavg()[0]:.1f})', flush=True)


if __name__ == '__main__':
    sys.exit(main())
