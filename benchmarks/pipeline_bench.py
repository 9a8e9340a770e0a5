"""Benchmark: our pipeline beside TFX's own Chicago-taxi example, on the same CSV and machine.

    PYTHONPATH=. .venv/bin/python benchmarks/pipeline_bench.py --work /tmp/bench [--rows N]

What it does, in one invocation:
  1. Data. The bundled ``data/taxi/data.csv`` is shuffled (seed 0); ``--holdout`` rows are
     put aside (``holdout.csv``) and no pipeline ever reads them. The rest (12,000 rows) is the
     training CSV. With ``--rows N`` the training CSV is N rows resampled from those rows with
     small jitter (fare and tips scaled by the same factor, so the label keeps its meaning).
  2. Runs. Each pipeline runs in its own subprocess, in a fresh pipeline root: TFX's example
     (``taxi_pipeline_native_keras._create_pipeline`` with our paths) as shipped
     (multi-process Beam) and tuned (in-memory Beam, one worker), then ours
     (``pipeline_runner.py``). Then each is run again unchanged (the rerun).
  3. Figures. Wall time of the subprocess; each component's time from its MLMD execution
     (create -> last update); peak RSS of the whole process tree (sampled every 0.2 s) overall
     and inside each component's window; AUC and accuracy of the pushed model on the
     held-out rows (both labels mean tip > 20% of fare: TFX's example computes it from
     tips/fare in its preprocessing_fn, ours reads ``big_tipper``); for ours, the time and
     size of the HTML run report it wrote at the end (from its run record, ``_runs/``).
It prints Markdown tables and writes everything to ``<work>/results.json``.
"""
import argparse
import csv
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(REPO, 'data', 'taxi', 'data.csv')
SCHEMA = os.path.join(REPO, 'schemas', 'taxi', 'schema.pbtxt')
EXAMPLE_ARGS = {
    # As shipped in taxi_pipeline_native_keras.py.
    'shipped': ['--direct_running_mode=multi_processing', '--direct_num_workers=0'],
    'tuned': ['--direct_running_mode=in_memory', '--direct_num_workers=1'],
}
PIPELINES = ('shipped', 'tuned', 'ours')
# 'main' (not run by default) is ours as checked out at --main-repo: the "before" of a change.
OURS_REPOS = {'ours': REPO, 'main': '/work/main'}


# ----------------------------------------------------------------------------------------
# Data


def prepare_data(work: str, holdout: int, rows: int, seed: int = 0) -> Dict[str, str]:
    """Writes ``<work>/data/train/data.csv`` and ``<work>/data/holdout.csv``; idempotent."""
    import numpy as np
    import pandas as pd

    data_dir = os.path.join(work, 'data')
    train_csv = os.path.join(data_dir, 'train', 'data.csv')
    holdout_csv = os.path.join(data_dir, 'holdout.csv')
    if os.path.exists(train_csv) and os.path.exists(holdout_csv):
        return {'train_dir': os.path.dirname(train_csv), 'holdout': holdout_csv}
    df = pd.read_csv(BUNDLED, dtype=str, keep_default_na=False)
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    held, train = df.iloc[:holdout], df.iloc[holdout:].reset_index(drop=True)
    if rows:
        train = jittered_sample(train, rows, np.random.default_rng(seed))
    os.makedirs(os.path.dirname(train_csv), exist_ok=True)
    held.to_csv(holdout_csv, index=False)
    tmp = train_csv + '.tmp'
    train.to_csv(tmp, index=False)
    os.replace(tmp, train_csv)
    return {'train_dir': os.path.dirname(train_csv), 'holdout': holdout_csv}


def jittered_sample(df, rows: int, rng):
    """``rows`` rows drawn with replacement, numeric columns jittered a little.

    Fare and tips are scaled by the same factor, so ``big_tipper`` (tip > 20% of fare) stays
    right; integer columns stay integers; empty cells stay empty.
    """
    import numpy as np
    import pandas as pd

    out = df.iloc[rng.integers(0, len(df), rows)].reset_index(drop=True)

    def num(col):
        return pd.to_numeric(out[col], errors='coerce')

    def put(col, values, decimals):
        values = pd.Series(values)
        text = values.round(decimals).astype(str) if decimals else values.round().astype('Int64').astype(str)
        out[col] = text.where(values.notna(), '')

    scale = 1 + 0.02 * rng.standard_normal(rows)
    put('fare', num('fare') * scale, 2)
    put('tips', num('tips') * scale, 2)
    put('trip_miles', (num('trip_miles') * (1 + 0.02 * rng.standard_normal(rows))).clip(lower=0), 2)
    put('trip_seconds', (num('trip_seconds') * (1 + 0.02 * rng.standard_normal(rows))).clip(lower=0), 0)
    for col in ('pickup_latitude', 'pickup_longitude', 'dropoff_latitude', 'dropoff_longitude'):
        put(col, num(col) + 0.002 * rng.standard_normal(rows), 6)
    put('trip_start_timestamp', num('trip_start_timestamp') + rng.integers(-900, 900, rows), 0)
    return out


# ----------------------------------------------------------------------------------------
# Running one pipeline in a subprocess, sampling the process tree's memory


def sample_rss(proc: subprocess.Popen, samples: List, stop: threading.Event) -> None:
    import psutil
    root = psutil.Process(proc.pid)
    while not stop.is_set():
        total = 0
        try:
            for p in [root] + root.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        samples.append((time.time(), total))
        stop.wait(0.2)


def pipeline_paths(work: str, name: str) -> Dict[str, str]:
    base = os.path.join(work, name)
    return {'pipeline_root': os.path.join(base, 'pipeline'),
            'metadata': os.path.join(base, 'metadata.sqlite'),
            'serving_dir': os.path.join(base, 'serving'),
            'log': os.path.join(base, 'bench.log')}


def command(name: str, data_root: str, paths: Dict[str, str], ours_args: List[str]) -> List[str]:
    if name in OURS_REPOS:
        return [sys.executable, os.path.join(OURS_REPOS[name], 'pipeline_runner.py'),
                '--data-root', data_root, '--pipeline-root', paths['pipeline_root'],
                '--metadata', paths['metadata'], '--serving-dir', paths['serving_dir'],
                *ours_args]
    return [sys.executable, os.path.abspath(__file__), 'example', '--mode', name,
            '--data-root', data_root, '--pipeline-root', paths['pipeline_root'],
            '--metadata', paths['metadata'], '--serving-dir', paths['serving_dir']]


def run_one(name: str, data_root: str, work: str, ours_args: List[str], fresh: bool) -> Dict:
    paths = pipeline_paths(work, name)
    if fresh:
        shutil.rmtree(os.path.dirname(paths['log']), ignore_errors=True)
    os.makedirs(os.path.dirname(paths['log']), exist_ok=True)
    env = dict(os.environ, PYTHONPATH=OURS_REPOS.get(name, REPO))
    samples: List = []
    stop = threading.Event()
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    with open(paths['log'], 'a') as log:
        proc = subprocess.Popen(command(name, data_root, paths, ours_args), cwd=OURS_REPOS.get(name, REPO), env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=sample_rss, args=(proc, samples, stop), daemon=True)
        sampler.start()
        code = proc.wait()
        stop.set()
        sampler.join()
    end = time.time()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (cpu.ru_utime + cpu.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    result = {'pipeline': name, 'exit_code': code, 'seconds': round(end - start, 1),
              # CPU time of the whole tree (waited-for children included): steadier than wall
              # time when other jobs share the machine; and the 1-minute load average around it.
              'cpu_seconds': round(cpu_seconds, 1),
              'load': [round(load_before, 1), round(os.getloadavg()[0], 1)],
              'peak_rss_mb': round(max((s for _, s in samples), default=0) / 2**20),
              'components': component_times(paths['metadata'], start, samples)}
    result.update(report_figures(paths['pipeline_root'], start))
    print(f'  {name}: exit {code}, {result["seconds"]} s, {result["cpu_seconds"]} CPU s, peak {result["peak_rss_mb"]} MB '
          + (f'(HTML report {result["report_seconds"]} s, {result["report_cpu_seconds"]} CPU s, '
             f'{result["report_mb"]} MB) '
             if result.get('report_seconds') is not None else '')
          + f'(log: {paths["log"]})', flush=True)
    return result


def report_figures(pipeline_root: str, since: float) -> Dict:
    """The time and size of the HTML report our run wrote (from its run record), if any."""
    records = [p for p in glob.glob(os.path.join(pipeline_root, '_runs', '*.json'))
               if os.path.getmtime(p) >= since]
    if not records:
        return {}
    with open(max(records, key=os.path.getmtime)) as f:
        record = json.load(f)
    if record.get('report_seconds') is None:
        return {}
    return {'report_seconds': record['report_seconds'],
            'report_cpu_seconds': record.get('report_cpu_seconds'),
            'report_mb': round(record.get('report_bytes', 0) / 2**20, 2)}


def component_times(metadata_path: str, since: float, samples: List) -> List[Dict]:
    """One row per node executed since ``since``: state, seconds and peak RSS, from MLMD."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    if not os.path.exists(metadata_path):
        return []
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    states = metadata_store_pb2.Execution.State
    rows = []
    for ctx in store.get_contexts_by_type('node'):
        for ex in store.get_executions_by_context(ctx.id):
            t0, t1 = ex.create_time_since_epoch / 1000, ex.last_update_time_since_epoch / 1000
            if t0 < since:
                continue
            window = [s for t, s in samples if t0 - 0.2 <= t <= t1 + 0.2]
            rows.append({'node': ctx.name.split('.', 1)[-1], 'start': t0,
                         'state': states.Name(ex.last_known_state),
                         'seconds': round(t1 - t0, 1),
                         'peak_rss_mb': round(max(window, default=0) / 2**20)})
    rows.sort(key=lambda r: r['start'])
    for r in rows:
        r['start'] = round(r['start'] - since, 1)
    return rows


def run_example(args: argparse.Namespace) -> None:
    """Subprocess entry: TFX's example pipeline, built by its own ``_create_pipeline``."""
    import absl
    from tfx.examples.chicago_taxi_pipeline import taxi_pipeline_native_keras as example
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    absl.logging.set_verbosity(absl.logging.INFO)
    module_file = os.path.join(os.path.dirname(example.__file__), 'taxi_utils_native_keras.py')
    BeamDagRunner().run(example._create_pipeline(  # pylint: disable=protected-access
        pipeline_name='chicago_taxi_native_keras', pipeline_root=args.pipeline_root,
        data_root=args.data_root, module_file=module_file,
        serving_model_dir=args.serving_dir, metadata_path=args.metadata,
        beam_pipeline_args=EXAMPLE_ARGS[args.mode]))


# ----------------------------------------------------------------------------------------
# Scoring the pushed models on the held-out rows


def pipeline_schema(name: str, work: str) -> str:
    """The schema a pipeline's model parses with: our curated one, or the example's inferred."""
    if name in OURS_REPOS:
        return SCHEMA
    found = glob.glob(os.path.join(pipeline_paths(work, name)['pipeline_root'], 'SchemaGen',
                                   'schema', '*', 'schema.pbtxt'))
    return max(found, key=os.path.getmtime)


def holdout_examples(holdout_csv: str, schema_path: str):
    """Serialized tf.Examples of the held-out rows, encoded as CsvExampleGen does (an empty
    cell is a feature with no values), typed by ``schema_path``; and the labels."""
    import tensorflow as tf
    from pipeline.schema import load_schema
    from tensorflow_metadata.proto.v0 import schema_pb2

    types = {f.name: f.type for f in load_schema(schema_path).feature}
    serialized, labels = [], []
    with open(holdout_csv, newline='') as f:
        for row in csv.DictReader(f):
            ex = tf.train.Example()
            for name, value in row.items():
                feature = ex.features.feature[name]
                t = types.get(name, schema_pb2.BYTES)
                if t == schema_pb2.INT:
                    feature.int64_list.value.extend([int(value)] if value else [])
                elif t == schema_pb2.FLOAT:
                    feature.float_list.value.extend([float(value)] if value else [])
                else:
                    feature.bytes_list.value.extend([value.encode()] if value else [])
            serialized.append(ex.SerializeToString())
            labels.append(int(row['big_tipper']))
    return serialized, labels


def auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties averaged)."""
    import numpy as np
    from scipy.stats import rankdata
    labels, ranks = np.asarray(labels), rankdata(scores)
    pos = labels.sum()
    neg = len(labels) - pos
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def score(serving_dir: str, serialized, labels) -> Dict:
    import numpy as np
    import tensorflow as tf
    try:  # a gbt model (--ours-arg=--trainer --ours-arg=gbt) needs TF-DF's ops to load
        import tensorflow_decision_forests  # noqa: F401
    except ImportError:
        pass

    versions = sorted((d for d in glob.glob(os.path.join(serving_dir, '*'))
                       if os.path.basename(d).isdigit()), key=lambda d: int(os.path.basename(d)))
    if not versions:
        return {'model': None}
    predict = tf.saved_model.load(versions[-1]).signatures['serving_default']
    scores = []
    for i in range(0, len(serialized), 1024):
        out = predict(examples=tf.constant(serialized[i:i + 1024]))
        scores.append(np.reshape(next(iter(out.values())).numpy(), [-1]))
    scores = np.concatenate(scores)
    accuracy = float(np.mean((scores > 0.5).astype(int) == np.asarray(labels)))
    return {'model': versions[-1], 'auc': round(auc(labels, scores), 4),
            'accuracy': round(accuracy, 4), 'rows': len(labels)}


# ----------------------------------------------------------------------------------------
# Report


def table(headers, rows) -> str:
    lines = ['| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
    lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(lines)


def ratio(a, b):
    return f'{a / b:.3f}' if a and b else '-'


def report(results: Dict) -> str:
    out = []
    runs = results['runs']
    for phase in ('cold', 'rerun'):
        rows = [[r['pipeline'], r['exit_code'], r['seconds'], r.get('cpu_seconds', '-'),
                 '/'.join(map(str, r.get('load', []))), r['peak_rss_mb'],
                 sum(c['state'] == 'COMPLETE' for c in r['components']),
                 sum(c['state'] == 'CACHED' for c in r['components']),
                 r.get('report_seconds', '-'), r.get('report_cpu_seconds', '-'),
                 r.get('report_mb', '-')]
                for r in runs.get(phase, [])]
        out.append(f'### {phase}: whole run (subprocess wall time, peak RSS of the process tree)\n')
        out.append(table(['pipeline', 'exit', 'wall s', 'CPU s', 'load before/after', 'peak MB',
                          'ran', 'cached', 'HTML report s', 'report CPU s', 'report MB'], rows))
        for r in runs.get(phase, []):
            out.append(f'\n{phase}, {r["pipeline"]}: per component (MLMD execution times)\n')
            out.append(table(['component', 'state', 'start s', 'seconds', 'peak MB'],
                             [[c['node'], c['state'], c['start'], c['seconds'], c['peak_rss_mb']]
                              for c in r['components']]))
        out.append('')
    scores = results.get('scores', {})
    if scores:
        out.append('### held-out rows: pushed model quality\n')
        out.append(table(['pipeline', 'AUC', 'accuracy', 'rows'],
                         [[k, v.get('auc'), v.get('accuracy'), v.get('rows')]
                          for k, v in scores.items()]))
    by = {(p, r['pipeline']): r for p in runs for r in runs[p]}
    if ('cold', 'ours') in by:
        out.append('\n### ratios ours / theirs\n')
        rows = []
        for other in ('shipped', 'tuned', 'main'):
            if ('cold', other) not in by:
                continue
            o, t = by[('cold', 'ours')], by[('cold', other)]
            row = [other, ratio(o['seconds'], t['seconds']),
                   ratio(o['peak_rss_mb'], t['peak_rss_mb'])]
            if ('rerun', 'ours') in by:
                row.append(ratio(by[('rerun', 'ours')]['seconds'], t['seconds']))
            else:
                row.append('-')
            so, st = scores.get('ours', {}), scores.get(other, {})
            row.append(f'{so.get("auc", 0) - st.get("auc", 0):+.4f}' if so.get('auc') and st.get('auc') else '-')
            rows.append(row)
        out.append(table(['vs', 'cold time', 'cold peak memory', 'our rerun / their cold',
                          'AUC ours - theirs'], rows))
    return '\n'.join(out)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'example':
        p = argparse.ArgumentParser()
        for flag in ('--mode', '--data-root', '--pipeline-root', '--metadata', '--serving-dir'):
            p.add_argument(flag, required=True)
        run_example(p.parse_args(argv[1:]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work', required=True, help='scratch directory (data, pipeline roots, results)')
    p.add_argument('--rows', type=int, default=0,
                   help='resample the training CSV to this many rows (default: the 12,000 kept rows)')
    p.add_argument('--holdout', type=int, default=3002, help='rows put aside for scoring')
    p.add_argument('--pipelines', default=','.join(PIPELINES), help='subset of ' + ','.join(PIPELINES))
    p.add_argument('--reruns', type=int, default=1, help='unchanged reruns of each (default 1)')
    p.add_argument('--ours-arg', action='append', default=[],
                   help='extra argument for pipeline_runner.py (repeatable), e.g. --ours-arg=--verbose')
    p.add_argument('--score-only', action='store_true',
                   help='only score the pushed models of an earlier run in --work')
    p.add_argument('--main-repo', default=OURS_REPOS['main'],
                   help='checkout whose pipeline runs as "main" (default: %(default)s)')
    args = p.parse_args(argv)
    OURS_REPOS['main'] = os.path.abspath(args.main_repo)
    names = [n for n in args.pipelines.split(',') if n]
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    t = time.time()
    data = prepare_data(work, args.holdout, args.rows)
    print(f'data: {data["train_dir"]} (ready in {time.time() - t:.0f}s), '
          f'held out: {data["holdout"]}', flush=True)
    results = {'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
               'machine': f'{os.cpu_count()} cores, '
                          f'{os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30:.0f} GB',
               'rows': args.rows or 'bundled minus holdout', 'argv': argv, 'runs': {}}
    phases = [('cold', names)] + [('rerun', names)] * args.reruns
    if args.score_only:  # score the models of an earlier invocation, keep its timings
        with open(os.path.join(work, 'results.json')) as f:
            results = json.load(f)
        phases = []
    for phase, batch in phases:
        print(f'{phase}:', flush=True)
        for name in batch:
            results['runs'].setdefault(phase, []).append(
                run_one(name, data['train_dir'], work, args.ours_arg, fresh=phase == 'cold'))
        with open(os.path.join(work, 'results.json'), 'w') as f:
            json.dump(results, f, indent=1)
    results['scores'] = {}
    for n in names:
        serialized, labels = holdout_examples(data['holdout'], pipeline_schema(n, work))
        results['scores'][n] = score(pipeline_paths(work, n)['serving_dir'], serialized, labels)
    with open(os.path.join(work, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    text = report(results)
    with open(os.path.join(work, 'results.md'), 'w') as f:
        f.write(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
