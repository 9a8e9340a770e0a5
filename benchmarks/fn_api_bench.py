"""What a Beam element costs on worker processes of their own, against in-process (issue 24),
and how much work an element must carry before two workers beat one process.

    PYTHONPATH=. .venv/bin/python benchmarks/fn_api_bench.py [--rows 200000] \\
        [--work-us 0,25,100,400] [--workers 0,1,2] [--bytes 400]

One Beam job per (work, workers): ``--rows`` elements of ``--bytes`` bytes (a taxi
tf.Example is ~400) made on the workers, each given ``--work-us`` microseconds of CPU
(SHA-256 rounds, calibrated here), then a shuffle (every element crosses from one stage to
the next, as between TFT's or TFMA's stages) and a count. 0 workers is the pipeline's
in-process default (``DEFAULT_BEAM_ARGS``); N is ``run.beam_workers: N``
(``pipeline/beam_workers.py``: the local job service in this process, N SDK harnesses over
the Fn API). Prints each job's wall and CPU seconds (this process's, and the harnesses'),
the time per element beyond its work, and each worker count's ratio to in-process.
"""
import argparse
import hashlib
import os
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import beam_workers
from pipeline.pipeline import DEFAULT_BEAM_ARGS

SPLITS = 64  # the seeds the elements are made from (what the workers share out)


def rounds_for(work_us: float, size: int) -> int:
    """SHA-256 rounds over ``size`` bytes that take ``work_us`` microseconds here."""
    data, n = b'x' * size, 20_000
    start = time.perf_counter()
    for _ in range(n):
        hashlib.sha256(data).digest()
    return round(work_us / ((time.perf_counter() - start) / n * 1e6))


def job(pipeline, rows: int, size: int, rounds: int):
    per_split = rows // SPLITS

    def make(seed):
        for i in range(per_split):
            yield (seed * per_split + i).to_bytes(8, 'little') * (size // 8)

    def work(element):
        for _ in range(rounds):
            hashlib.sha256(element).digest()
        return element

    return (pipeline | beam.Create(range(SPLITS)) | beam.FlatMap(make) | beam.Map(work)
            | beam.Reshuffle() | beam.combiners.Count.Globally())


def run(rows: int, size: int, rounds: int, workers: int):
    """(wall s, this process's CPU s, the harnesses' CPU s, count) of one job."""
    with beam_workers.worker_pool(workers) as pool:
        args = list(DEFAULT_BEAM_ARGS) + (beam_workers.beam_args(pool) if pool else [])
        harnesses = pool.harness_cpu() if pool else 0.0
        start, cpu = time.time(), time.process_time()
        with beam.Pipeline(options=PipelineOptions(args)) as p:
            job(p, rows, size, rounds)
        wall, cpu = time.time() - start, time.process_time() - cpu
        harnesses = (pool.harness_cpu() if pool else 0.0) - harnesses
    return wall, cpu, harnesses


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--rows', type=int, default=200_000)
    p.add_argument('--bytes', type=int, default=400)
    p.add_argument('--work-us', default='0,25,100,400')
    p.add_argument('--workers', default='0,1,2')
    args = p.parse_args()
    rows = args.rows // SPLITS * SPLITS
    print(f'{rows} elements of {args.bytes} bytes; {os.cpu_count()} cores; '
          f'load {os.getloadavg()[0]:.1f}', flush=True)
    print('| work per element µs | workers | wall s | launcher CPU s | harness CPU s | '
          'µs per element beyond its work (wall) | wall / in-process |')
    print('|---|---|---|---|---|---|---|')
    for work_us in (float(w) for w in args.work_us.split(',')):
        rounds = rounds_for(work_us, args.bytes)
        base = None
        for workers in (int(w) for w in args.workers.split(',')):
            wall, cpu, harnesses = run(rows, args.bytes, rounds, workers)
            base = wall if workers == 0 else base
            overhead = (wall - work_us * 1e-6 * rows / max(workers, 1)) / rows * 1e6
            ratio = f'{wall / base:.2f}' if base else ''
            print(f'| {work_us:g} | {workers or "in-process"} | {wall:.1f} | {cpu:.1f} | '
                  f'{harnesses:.1f} | {overhead:.1f} | {ratio} |', flush=True)


if __name__ == '__main__':
    main()
