"""Reading CSV: the preflight's check and FastCsvExampleGen's executor on the same file,
this checkout against a reference checkout (e.g. the commit before a change), alternating,
each in a fresh subprocess; then this checkout on the file gzipped and semicolon-delimited.

    mkdir /tmp/reference && git archive <base commit> | tar -x -C /tmp/reference
    .venv/bin/python benchmarks/reading_bench.py --reference /tmp/reference [--rows 200000]

The file is the bundled taxi data repeated to ``--rows`` rows, checked against the taxi
schema (its numeric columns are parsed) and converted into train/eval splits with pandas'
NA tokens configured (a reference that predates them ignores the setting). Prints the
seconds of each run (wall, and CPU in brackets), and the median ratios this/reference,
which is what to quote: the machine is shared, so absolute times drift (CPU time less).
"""
import argparse
import csv
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run in a subprocess with the code under test first on sys.path; prints two timings.
SNIPPET = r'''
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
path, out, kind = sys.argv[2], sys.argv[3], sys.argv[4]
from pipeline import preflight
from pipeline.schema import load_schema
types = preflight._types(load_schema(os.path.join(sys.argv[1], 'schemas/taxi/schema.pbtxt')))
start, cpu = time.perf_counter(), time.process_time()
rows = preflight.check_file(path, types)
check, check_cpu = time.perf_counter() - start, time.process_time() - cpu
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs as specs
from tfx.utils import proto_utils
from components.fast_csv_example_gen import executor
examples = standard_artifacts.Examples()
examples.uri = out
output = example_gen_pb2.Output()
output.split_config.splits.add(name='train', hash_buckets=4)
output.split_config.splits.add(name='eval', hash_buckets=1)
NA = ['', '#N/A', '#N/A N/A', '#NA', '-1.#IND', '-1.#QNAN', '-NaN', '-nan', '1.#IND',
      '1.#QNAN', '<NA>', 'N/A', 'NA', 'NULL', 'NaN', 'None', 'n/a', 'nan', 'null']
props = {specs.INPUT_BASE_KEY: os.path.dirname(path),
         specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_pb2.Input(
             splits=[example_gen_pb2.Input.Split(name='s', pattern=os.path.basename(path))])),
         specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output),
         specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
         specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
         'delimiter': ';' if kind == 'semicolon' else ',', 'encoding': 'utf-8',
         'na_values': json.dumps(NA)}
start, cpu = time.perf_counter(), time.process_time()
executor.Executor().Do({}, {specs.EXAMPLES_KEY: [examples]}, props)
print(json.dumps({'rows': rows, 'preflight': check, 'preflight_cpu': check_cpu,
                  'example_gen': time.perf_counter() - start,
                  'example_gen_cpu': time.process_time() - cpu}))
'''


def make_data(directory: str, rows: int):
    with open(os.path.join(REPO, 'data', 'taxi', 'data.csv'), newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        header, body = next(reader), list(reader)
    paths = {name: os.path.join(directory, name)
             for name in ('plain.csv', 'gzipped.csv.gz', 'semicolon.csv')}
    with open(paths['plain.csv'], 'w', newline='', encoding='utf-8') as plain, \
            gzip.open(paths['gzipped.csv.gz'], 'wt', newline='', encoding='utf-8') as gz, \
            open(paths['semicolon.csv'], 'w', newline='', encoding='utf-8') as semi:
        writers = [csv.writer(plain), csv.writer(gz), csv.writer(semi, delimiter=';')]
        for w in writers:
            w.writerow(header)
        for i in range(rows):
            for w in writers:
                w.writerow(body[i % len(body)])
    return paths


def timed(code: str, path: str, kind: str, scratch: str):
    out = tempfile.mkdtemp(dir=scratch)
    result = subprocess.run([sys.executable, '-c', SNIPPET, code, path, out, kind],
                            capture_output=True, text=True, cwd=code,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    if result.returncode:
        raise SystemExit(f'{code}: failed:\n{result.stderr[-3000:]}')
    import json
    return json.loads(result.stdout.strip().splitlines()[-1])


def times(t) -> str:
    return (f'preflight {t["preflight"]:.2f} s ({t["preflight_cpu"]:.2f}), '
            f'ExampleGen {t["example_gen"]:.2f} s ({t["example_gen_cpu"]:.2f})')


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--reference', help='a checkout to compare with (e.g. the base commit)')
    p.add_argument('--rows', type=int, default=200_000)
    p.add_argument('--repeat', type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_data(tmp, args.rows)
        print(f'{args.rows:,} taxi rows; load {os.getloadavg()[0]:.1f}', flush=True)
        keys = ('preflight', 'preflight_cpu', 'example_gen', 'example_gen_cpu')
        ratios = {k: [] for k in keys}
        for i in range(args.repeat):
            # Alternating which goes first: the first of a pair tends to be slower.
            codes = [REPO] + ([os.path.abspath(args.reference)] if args.reference else [])
            got = {code: timed(code, paths['plain.csv'], 'plain', tmp)
                   for code in (codes if i % 2 == 0 else codes[::-1])}
            ours = got[REPO]
            line = f'run {i + 1}: this {times(ours)}'
            if args.reference:
                ref = got[codes[1]]
                line += f' | reference {times(ref)}{" (first)" if i % 2 else ""}'
                for key in ratios:
                    ratios[key].append(ours[key] / ref[key])
            print(line, flush=True)
        if args.reference:
            print('median ratio this/reference: ' + ', '.join(
                f'{k} {statistics.median(v):.2f}' for k, v in ratios.items()))
        for kind, name in (('gzipped', 'gzipped.csv.gz'), ('semicolon', 'semicolon.csv')):
            got = timed(REPO, paths[name], kind, tmp)
            print(f'this, {kind}: {times(got)} ({got["rows"]:,} rows)', flush=True)
    print(f'load {os.getloadavg()[0]:.1f} at the end; {time.strftime("%Y-%m-%d %H:%M")}')


if __name__ == '__main__':
    main()
