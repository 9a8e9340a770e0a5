"""Batch predictions: ``pipeline_runner.py predict`` against the model called in process.

    .venv/bin/python benchmarks/predict_bench.py [--serving-dir output/serving/taxi]
        [--rows 100000,1000000] [--reference-rows 200000] [--workers 2]
        [--compare-tfx-bsl 50000]

It makes CSV files of the bundled taxi rows repeated (label included, as new data may have
it), then, alternating, in one invocation:

- the reference: in this process, the CSV read by pyarrow in batches of 1,000 rows, each
  batch encoded as tf.Examples (the encoder ExampleGen uses) and given to the pushed model's
  ``serving_default``: the model called in process in batches of 1,000, CSV parsing included;
- ``pipeline_runner.py predict`` on each row count, as a user runs it (a new process: Beam's
  in-process runner, model load, CSV output), with its wall time and the peak memory (RSS)
  of its process tree, and its CPU time (user + system, its workers included: above the wall
  time, it used more than one core);
- with ``--workers N``, the largest row count again, split into N files of a directory and
  scored on N Beam worker processes (``--beam-workers N``): the other way to use the cores.

It prints rows/s of each, predict's rate as a fraction of the reference's (target >= 0.5),
the 1M-row time (target <= 30 s) and the peak memory per row count (target: flat). With
``--compare-tfx-bsl N`` it also scores N rows with tfx-bsl's ``CreateModelHandler`` under
Beam's RunInference (one element per example) beside ours in the same process. The model must
have been pushed first (``./run.sh``). On a shared machine, read the ratios, not the times.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
TAXI = os.path.join(REPO, 'data', 'taxi', 'data.csv')


def make_csv(path: str, rows: int) -> str:
    with open(TAXI, 'rb') as f:
        header = f.readline()
        body = f.read().splitlines(keepends=True)
    with open(path, 'wb') as out:
        out.write(header)
        for i in range(rows // len(body)):
            out.writelines(body)
        out.writelines(body[:rows % len(body)])
    return path


def newest_model(serving_dir: str) -> str:
    from pipeline.predict import resolve_model
    return resolve_model(serving_dir, None)[0]


def features(model_path: str):
    from pipeline.config import load_config
    from pipeline.predict import model_features
    return model_features(load_config(os.path.join(REPO, 'configs', 'taxi.yaml'),
                                      check_data=False), model_path)


def reference(model_path: str, csv_path: str, batch_rows: int = 1000) -> float:
    """Seconds to score the file in process, 1,000 rows per model call, parsing included."""
    import pyarrow as pa
    import tensorflow as tf
    from pyarrow import csv as pa_csv
    from tfx_bsl.coders import example_coder
    from tfx_bsl.coders.csv_decoder import ColumnType

    from components.csv_format import to_record_batch
    kinds = features(model_path)
    types = {n: {'int': ColumnType.INT, 'float': ColumnType.FLOAT,
                 'string': ColumnType.STRING}[k] for n, k in kinds.items()}
    function = tf.saved_model.load(model_path).signatures['serving_default']
    encoder = example_coder.RecordBatchToExamplesEncoder()
    start = time.perf_counter()
    reader = pa_csv.open_csv(csv_path, convert_options=pa_csv.ConvertOptions(
        include_columns=list(kinds), column_types={n: pa.string() for n in kinds},
        strings_can_be_null=True, null_values=['']))  # an empty cell is missing
    for block in reader:
        for offset in range(0, block.num_rows, batch_rows):
            batch = block.slice(offset, batch_rows)
            function(examples=tf.constant(encoder.encode(to_record_batch(batch, types))))
    return time.perf_counter() - start


def tree_rss(pid: int) -> int:
    import psutil
    try:
        parent = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [parent] + parent.children(recursive=True))
    except psutil.Error:
        return 0


def predict(serving_dir: str, csv_path: str, out: str, *args: str) -> dict:
    """Runs the command; its wall time, CPU time and the peak RSS of its process tree."""
    import resource
    command = [sys.executable, os.path.join(REPO, 'pipeline_runner.py'), 'predict',
               '--data', csv_path, '--out', out, '--serving-dir', serving_dir, *args]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss(process.pid))
            time.sleep(0.2)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0].decode()
    seconds = time.perf_counter() - start
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode:
        raise SystemExit(f'predict failed:\n{output}')
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return {'seconds': seconds, 'cpu': cpu, 'peak_mb': peak[0] / 2**20, 'output': output.strip()}


def compare_tfx_bsl(model_path: str, csv_path: str, rows: int, tmp: str) -> None:
    """tfx-bsl's CreateModelHandler (one element per example) against ours, in process."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from tfx_bsl.public.beam.run_inference import CreateModelHandler
    from tfx_bsl.public.proto import model_spec_pb2

    from components import batch_inference

    kinds = features(model_path)
    args = ['--direct_running_mode=in_memory', '--direct_num_workers=1']
    job = batch_inference.Job(model_path=model_path, files=(csv_path,), file_names=(),
                              features=kinds, output=os.path.join(tmp, 'ours.csv'))
    start = time.perf_counter()
    batch_inference.run(job, args)
    ours = time.perf_counter() - start

    def examples(index):
        for batch, _, _ in batch_inference.read_chunks(csv_path, list(kinds), job.reading(csv_path)):
            yield from batch_inference.encode(batch, kinds)[1]

    spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
        model_path=model_path, signature_name=['serving_default']))
    start = time.perf_counter()
    from apache_beam.options.pipeline_options import PipelineOptions
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        _ = (p | beam.Create([0]) | beam.FlatMap(examples)
             | RunInference(CreateModelHandler(spec)) | beam.combiners.Count.Globally())
    theirs = time.perf_counter() - start
    print(f'tfx-bsl CreateModelHandler, {rows:,} rows: {theirs:.1f} s; ours {ours:.1f} s '
          f'(tfx-bsl takes {theirs / ours:.1f}x as long)')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--serving-dir', default=os.path.join(REPO, 'output', 'serving', 'taxi'))
    p.add_argument('--rows', default='100000,1000000')
    p.add_argument('--reference-rows', type=int, default=200_000)
    p.add_argument('--workers', type=int, default=0, metavar='N',
                   help='also score the largest row count as N files on N Beam workers')
    p.add_argument('--compare-tfx-bsl', type=int, default=0, metavar='ROWS')
    args = p.parse_args()
    model_path = newest_model(args.serving_dir)
    counts = [int(n) for n in args.rows.split(',')]
    with tempfile.TemporaryDirectory(prefix='predict-bench-') as tmp:
        ref_csv = make_csv(os.path.join(tmp, 'reference.csv'), args.reference_rows)
        files = {n: make_csv(os.path.join(tmp, f'rows-{n}.csv'), n) for n in counts}
        print(f'model {model_path}; shared machine: compare the ratios')
        ref_rates, results = [], {}
        for n in counts:  # alternating: the reference, then predict on n rows
            ref_rates.append(args.reference_rows / reference(model_path, ref_csv))
            results[n] = predict(args.serving_dir, files[n], os.path.join(tmp, f'out-{n}.csv'))
            rate = n / results[n]['seconds']
            print(f'reference (in process, 1,000-row batches): {ref_rates[-1]:,.0f} rows/s | '
                  f'predict, {n:,} rows: {results[n]["seconds"]:.1f} s, {rate:,.0f} rows/s '
                  f'({rate / ref_rates[-1]:.2f} of the reference), CPU '
                  f'{results[n]["cpu"]:.1f} s, peak RSS {results[n]["peak_mb"]:,.0f} MB')
        largest = max(counts)
        print(f'{largest:,} rows in {results[largest]["seconds"]:.1f} s (target <= 30 s for 1M), '
              f'{largest / results[largest]["seconds"] / ref_rates[-1]:.2f} of the reference\'s '
              'rows/s; peak RSS by rows: ' + ', '.join(f'{n:,}: {r["peak_mb"]:,.0f} MB'
                                                     for n, r in sorted(results.items())))
        if args.workers:
            split = os.path.join(tmp, 'split')
            os.makedirs(split)
            for i in range(args.workers):
                make_csv(os.path.join(split, f'part-{i}.csv'),
                         largest // args.workers + (i < largest % args.workers))
            one = predict(args.serving_dir, files[largest], os.path.join(tmp, 'one.csv'))
            many = predict(args.serving_dir, split, os.path.join(tmp, 'many.csv'),
                           '--beam-workers', str(args.workers))
            print(f'{largest:,} rows, one file in this process: {one["seconds"]:.1f} s (CPU '
                  f'{one["cpu"]:.1f} s) | {args.workers} files on --beam-workers '
                  f'{args.workers}: {many["seconds"]:.1f} s (CPU {many["cpu"]:.1f} s, peak RSS '
                  f'{many["peak_mb"]:,.0f} MB): {one["seconds"] / many["seconds"]:.2f}x the speed')
        if args.compare_tfx_bsl:
            compare_tfx_bsl(model_path, make_csv(os.path.join(tmp, 'tfx-bsl.csv'),
                                                 args.compare_tfx_bsl),
                            args.compare_tfx_bsl, tmp)


if __name__ == '__main__':
    main()
