"""Cache keys follow the code, and the fast rerun follows what a run started on.

In a temporary copy of the repository, on two tiny spans (drift checked, so DriftCheck and
the previous span's nodes are in the graph), the real pipeline runs through the command
line; each run edits modules first (a comment appended: new code, same behaviour), and ML
Metadata says which components ran. Edits whose components are apart in the graph share a
run, so that each component's key is shown by a run where everything upstream of it was
cached:

  baseline   everything runs;
  during     ``--set run.fast_rerun=false``; components/model_versions.py and
             components/drift/executor.py are edited while it runs (once its first component
             has started): every component comes from the cache, as it started on the old code;
  code       the next run, fast rerun on: it must not answer from the record of the run
             before (it started on other code), and runs exactly the Pusher (it imports
             model_versions; it adopts the version it pushed, the model being the same), the
             DriftCheck and the gate (which reads DriftCheck's new anomalies);
  stats+transform, model+gate, metrics, example_gen: the components that run each, or read
             what those wrote;
  span, schema  a new span and a schema edit land during a run (``fast_rerun=false``): the
             fast rerun's record keeps the key of the start, so the lookup after it misses,
             and hits again once the edit is undone.

Nine runs of the pipeline: 469 s on the shared 2-core machine at load 4-7 (882 s at 11-12).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from testlib import REPO, taxi_rows, write_csv

ROWS = 150
CONFIG = '''
name: taxi
data:
  root: data/taxi
  label: big_tipper
  task: binary
  exclude: [tips]
  schema: schemas/taxi/schema.pbtxt
training: {train_steps: 20, eval_steps: 5, steps_per_epoch: 10, batch_size: 32}
evaluation:
  thresholds: [{metric: auc, lower: 0.0}]
validation:
  on_anomalies: warn
  drift: {default_linf: 1.0, default_js: 1.0}
paths: {pipeline_root: output/p, metadata: output/metadata.sqlite, serving_dir: output/serving}
'''
RESOLVER = 'BaselineModelResolver'  # resolves its inputs on every run: never cached
EVERYTHING = {'CsvExampleGen', 'ExampleGen_span1', 'StatisticsGen', 'StatisticsGen_span1',
              'ImportSchemaGen', 'InferredSchemaGen', 'ExampleValidator', 'DriftCheck',
              'AnomalyGate', 'Transform', 'Trainer', 'Evaluator', 'Pusher'}
LOOKUP = ('from pipeline.config import load_config; from pipeline.inputs import resolve; '
          'from pipeline import fast_rerun; c = load_config("configs/tiny.yaml"); '
          'print(fast_rerun.lookup(c, fast_rerun.run_key(c, resolve(c))) is not None)')


def edit(path):
    with open(path, 'a', encoding='utf-8') as f:
        f.write(f'\n# edited at {time.time_ns()}\n')


class Copy:
    def __init__(self, root):
        self.root = root

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def run(self, *args, during=None):
        """pipeline_runner.py in the copy; ``during()`` is called once the first component has
        started. Returns {'code', 'output', 'ran': nodes that executed (MLMD), 'states'}."""
        proc = subprocess.Popen(
            [sys.executable, 'pipeline_runner.py', '--config', 'configs/tiny.yaml', *args],
            cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if during and re.match(r'\[ *1/\d+\] ', line):
                during()
                during = None
        proc.wait(timeout=1800)
        output = ''.join(lines)
        assert proc.returncode == 0, output[-3000:]
        fast = 'checked without starting TFX' in output
        states = {} if fast else self.states()
        return {'code': proc.returncode, 'output': output, 'fast': fast, 'states': states,
                'ran': {n for n, s in states.items() if s == 'ran'} - {RESOLVER}}

    def states(self):
        """{node: state} of the newest pipeline run in the copy's ML Metadata."""
        from pipeline.report import latest_run, open_store, run_outputs
        store = open_store(self.path('output', 'metadata.sqlite'))
        return {n: v['state'] for n, v in run_outputs(store, latest_run(store, 'taxi')).items()}

    def fast_rerun_would_answer(self):
        done = subprocess.run([sys.executable, '-c', LOOKUP], cwd=self.root, check=True,
                              capture_output=True, text=True)
        return done.stdout.strip().splitlines()[-1] == 'True'

    def versions(self):
        return sorted(n for n in os.listdir(self.path('output', 'serving')) if n.isdigit())


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    start = time.time()
    root = str(tmp_path_factory.mktemp('code_cache') / 'repo')
    for part in ('components', 'pipeline', 'configs', 'schemas'):
        shutil.copytree(os.path.join(REPO, part), os.path.join(root, part),
                        ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('pipeline_runner.py', 'setup.py'):
        shutil.copy(os.path.join(REPO, name), root)
    header, rows = taxi_rows(2 * ROWS, every=7)
    for span in (1, 2):
        write_csv(os.path.join(root, 'data', 'taxi', f'span-{span}', 'trips.csv'), header,
                  rows[(span - 1) * ROWS:span * ROWS])
    with open(os.path.join(root, 'configs', 'tiny.yaml'), 'w', encoding='utf-8') as f:
        f.write(CONFIG)
    copy = Copy(root)
    result = {'copy': copy, 'seconds': {}}

    def timed(name, *args, **kwargs):
        begin = time.time()
        result[name] = copy.run(*args, **kwargs)
        result['seconds'][name] = round(time.time() - begin, 1)

    timed('baseline')
    result['versions_after_baseline'] = copy.versions()
    timed('during', '--set', 'run.fast_rerun=false', during=lambda: [
        edit(copy.path('components', 'model_versions.py')),
        edit(copy.path('components', 'drift', 'executor.py'))])
    timed('code')
    result['versions_after_code'] = copy.versions()
    edit(copy.path('components', 'fast_statistics_gen', 'executor.py'))
    edit(copy.path('components', 'transform.py'))
    timed('stats_transform')
    edit(copy.path('components', 'model.py'))
    edit(copy.path('components', 'anomaly_gate', 'executor.py'))
    timed('model_gate')
    edit(copy.path('components', 'metrics.py'))
    timed('metrics')
    edit(copy.path('components', 'fast_csv_example_gen', 'executor.py'))
    timed('example_gen')

    span3 = copy.path('data', 'taxi', 'span-3')
    timed('span', '--set', 'run.fast_rerun=false', during=lambda: shutil.copytree(
        copy.path('data', 'taxi', 'span-2'), span3))
    result['after_span'] = copy.fast_rerun_would_answer()
    shutil.rmtree(span3)
    result['span_undone'] = copy.fast_rerun_would_answer()

    schema = copy.path('schemas', 'taxi', 'schema.pbtxt')
    with open(schema, encoding='utf-8') as f:
        original = f.read()
    timed('schema', '--set', 'run.fast_rerun=false', during=lambda: edit(schema))
    result['after_schema'] = copy.fast_rerun_would_answer()
    with open(schema, 'w', encoding='utf-8') as f:
        f.write(original)
    result['schema_undone'] = copy.fast_rerun_would_answer()
    result['seconds']['total'] = round(time.time() - start, 1)
    print('test_code_cache run times (s):', json.dumps(result['seconds']))
    return result


def test_the_baseline_runs_every_component(runs):
    assert set(runs['baseline']['states']) == EVERYTHING | {RESOLVER}
    assert runs['baseline']['ran'] == EVERYTHING
    assert len(runs['versions_after_baseline']) == 1


def test_an_edit_during_a_run_does_not_change_what_that_run_ran(runs):
    assert runs['during']['ran'] == set()
    assert set(runs['during']['states'].values()) == {'cached', 'ran'}  # the resolver ran


def test_code_edited_during_a_run_is_not_answered_by_the_fast_rerun(runs):
    assert not runs['code']['fast'], runs['code']['output'][-2000:]


def test_editing_a_module_reruns_exactly_the_components_that_run_it(runs):
    # The Pusher imports model_versions; the gate reads DriftCheck's new anomalies.
    assert runs['code']['ran'] == {'Pusher', 'DriftCheck', 'AnomalyGate'}
    # The Pusher ran again on the same model: it adopted its version, pushed no other.
    assert runs['versions_after_code'] == runs['versions_after_baseline']
    assert runs['stats_transform']['ran'] == {
        'StatisticsGen', 'StatisticsGen_span1', 'InferredSchemaGen', 'ExampleValidator',
        'DriftCheck', 'AnomalyGate',                       # what reads the new statistics
        'Transform', 'Trainer', 'Evaluator', 'Pusher'}     # what reads the new transform graph
    # components/model.py, imported by components/trainer.py.
    assert runs['model_gate']['ran'] == {'Trainer', 'Evaluator', 'Pusher', 'AnomalyGate'}
    # components/metrics.py runs inside TFMA, in the Evaluator.
    assert runs['metrics']['ran'] == {'Evaluator', 'Pusher'}
    # A fix in the ExampleGen executor: new examples, and everything that reads them.
    assert runs['example_gen']['ran'] == EVERYTHING - {'ImportSchemaGen'}


def test_a_span_that_lands_during_a_run_makes_the_next_run_go_through_tfx(runs):
    assert runs['span']['ran'] == set()  # the run read the spans it started on
    assert runs['after_span'] is False
    assert runs['span_undone'] is True   # the record is there, for the state it started on


def test_a_schema_edit_during_a_run_makes_the_next_run_go_through_tfx(runs):
    assert runs['schema']['ran'] == set()
    assert runs['after_schema'] is False
    assert runs['schema_undone'] is True
