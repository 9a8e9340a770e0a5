"""Shared state for tests/test_validation.py and tests/test_bad_input.py.

``baseline()`` builds, once per test session (memoised here, so both modules share it):

1. run A: two spans, the newer with injected drift, ``on_anomalies: fail`` — the gate stops it;
2. run B: the same with ``--allow-anomalies``, as a subprocess killed while Transform runs;
3. run C: run B again, to completion — one model pushed.

Its final state (a pushed version, an ML Metadata store with executions) is the "earlier
state" the bad-input cases must leave untouched.
"""
import atexit
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(REPO, 'data', 'taxi', 'data.csv')
ROWS_PER_SPAN = 300
# Small, quick training, and a threshold any model meets (with none, TFX's Evaluator does
# not bless at all), so the model is pushed.
FAST = ['--train-steps', '60', '--set', 'training.eval_steps=5',
        '--set', 'training.steps_per_epoch=30', '--set', 'training.batch_size=32',
        '--set', 'evaluation.thresholds=[{metric: auc, lower: 0.0}]',
        '--set', 'evaluation.change_thresholds=[]', '--set', 'evaluation.slices=[]',
        '--set', 'features.bucketize={}']
DRIFT = ['--set', 'validation.drift.default_linf=0.3', '--set', 'validation.drift.default_js=0.3']

_STATE: Dict[str, Any] = {}
_ROOT: List[str] = []


def scratch(name: str) -> str:
    """A new directory under this session's own temporary root.

    Not pytest's tmp_path: other pytest sessions on the same machine prune old basetemp
    directories, which would delete the shared baseline under a long run.
    """
    if not _ROOT:
        _ROOT.append(tempfile.mkdtemp(prefix='validation-tests-'))
        atexit.register(shutil.rmtree, _ROOT[0], True)
    return tempfile.mkdtemp(prefix=f'{name[:60]}-', dir=_ROOT[0])


def bundled_rows(n: int, skip: int = 0) -> List[List[str]]:
    """The bundled CSV's header and ``n`` rows after the first ``skip``."""
    with open(BUNDLED, encoding='utf-8', newline='') as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [r for _, r in zip(range(skip + n), reader)][skip:]
    return [header] + rows


def write_csv(path: str, rows: List[List[str]]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8', newline='') as f:
        csv.writer(f, lineterminator='\n').writerows(rows)
    return path


def drifted(rows: List[List[str]]) -> List[List[str]]:
    """Every trip paid by card (3 in 4 are cash in the sample), fares tripled: valid for the
    schema, but drifted."""
    header = rows[0]
    pay, fare = header.index('payment_type'), header.index('fare')
    out = [header]
    for r in rows[1:]:
        r = list(r)
        r[pay] = 'Credit Card'
        r[fare] = f'{float(r[fare]) * 3 + 20:.2f}'
        out.append(r)
    return out


def paths_args(root: str, data_root: str) -> List[str]:
    return ['--data-root', data_root, '--pipeline-root', os.path.join(root, 'pipeline'),
            '--metadata', os.path.join(root, 'metadata.sqlite'),
            '--serving-dir', os.path.join(root, 'serving')]


def run_cli(args: List[str]) -> Dict[str, Any]:
    """pipeline_runner.main in this process; returns the exit code and the summary."""
    import pipeline_runner
    summary_path = os.path.join(os.path.dirname(args[args.index('--metadata') + 1]),
                                f'summary-{time.time_ns()}.json')
    code = pipeline_runner.main(args + ['--summary-json', summary_path])
    summary = {}
    if os.path.exists(summary_path):
        with open(summary_path, encoding='utf-8') as f:
            summary = json.load(f)
    return {'code': code, 'summary': summary}


def transform_running(metadata_path: str) -> bool:
    """Whether ML Metadata holds a Transform execution in state RUNNING (TFX records it
    just before the executor starts)."""
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import metadata
    try:
        store = metadata.open_store(metadata_path, read_only=True)
        names = metadata.node_names(store)
        return any(names.get(e.id) == 'Transform'
                   and e.last_known_state == metadata_store_pb2.Execution.RUNNING
                   for e in store.get_executions())
    except Exception:  # noqa: BLE001 - the run is writing the store (locked): ask again
        return False


def run_and_kill_in_transform(args: List[str], timeout: float = 120.0) -> Dict[str, Any]:
    """Runs pipeline_runner.py as a subprocess and SIGKILLs it once Transform's execution is
    RUNNING in ML Metadata: its executor has started and not finished. (Killing a fixed 3 s
    after Transform's line failed on a fast machine, where Transform on a few rows had
    already completed by then.)"""
    metadata_path = args[args.index('--metadata') + 1]
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'pipeline_runner.py')] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=REPO))
    lines = []
    killed = False
    try:
        for line in proc.stdout:
            lines.append(line)
            if '] Transform ...' in line:
                deadline = time.time() + timeout
                while not transform_running(metadata_path) and time.time() < deadline:
                    time.sleep(0.05)
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
    finally:
        if not killed and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    return {'killed': killed, 'output': ''.join(lines), 'code': proc.returncode}


def tree(path: str) -> Dict[str, str]:
    """{relative path: sha256} of every file under ``path``."""
    found = {}
    for dirpath, _, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, 'rb') as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return found


def executions(metadata: str) -> Dict[int, Any]:
    """{execution id: (type, state)} of the ML Metadata store (opened the usual way)."""
    from pipeline.report import open_store
    store = open_store(metadata)
    types = {t.id: t.name for t in store.get_execution_types()}
    return {e.id: (types.get(e.type_id, e.type), e.last_known_state) for e in store.get_executions()}


def baseline() -> Dict[str, Any]:
    """The shared state described in the module docstring (built on first call)."""
    if _STATE:
        return _STATE
    root = scratch('baseline')
    data = os.path.join(root, 'data')
    write_csv(os.path.join(data, 'span-1', 'trips.csv'), bundled_rows(ROWS_PER_SPAN))
    write_csv(os.path.join(data, 'span-2', 'trips.csv'),
              drifted(bundled_rows(ROWS_PER_SPAN, skip=ROWS_PER_SPAN)))
    args = paths_args(root, data) + FAST + DRIFT
    timings = {}
    start = time.time()
    failed = run_cli(args)
    timings['drift_fail'] = time.time() - start
    start = time.time()
    killed = run_and_kill_in_transform(args + ['--allow-anomalies'])
    timings['killed'] = time.time() - start
    after_kill = {'serving': tree(os.path.join(root, 'serving')),
                  'executions': executions(os.path.join(root, 'metadata.sqlite'))}
    start = time.time()
    rerun = run_cli(args + ['--allow-anomalies'])
    timings['rerun'] = time.time() - start
    print('validation baseline timings (s):', {k: round(v, 1) for k, v in timings.items()})
    _STATE.update(root=root, data=data, args=args, failed=failed, killed=killed,
                  after_kill=after_kill, rerun=rerun, timings=timings,
                  metadata=os.path.join(root, 'metadata.sqlite'),
                  serving=os.path.join(root, 'serving'),
                  pipeline_root=os.path.join(root, 'pipeline'))
    return _STATE
