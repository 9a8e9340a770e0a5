"""ExampleGen alone: CsvExampleGen's executor (Beam, in-memory, one worker) against
FastCsvExampleGen's, on the same CSV directory; prints seconds and checks the splits' sizes.

    PYTHONPATH=. .venv/bin/python benchmarks/example_gen_bench.py DATA_DIR [--skip-csv]
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument('data_dir')
    p.add_argument('--skip-csv', action='store_true')
    args = p.parse_args()
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
