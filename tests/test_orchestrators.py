"""Orchestrators over the one graph: the Kubeflow v2 spec, Airflow's DAG, Beam's portable
runner, and two runs overlapping on one metadata store.

The pipeline runs here are real (CLI subprocesses on a 400-row sample, a few training steps).
The Airflow tests need the optional Airflow environment (scripts/airflow.sh makes it) and
are skipped, saying so, without it.
"""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

from pipeline.config import ConfigError, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'taxi.yaml')
IMAGE = 'europe-docker.pkg.dev/acme/ml/taxi-pipeline:3f2a9c1'
PORTABLE = ['--runner=PortableRunner', '--job_endpoint=embed', '--environment_type=LOOPBACK']
# Small and fast; the model still passes the config's AUC threshold (0.7; ~0.85 here), so
# the first run pushes.
SMALL = ['training.train_steps=60', 'training.eval_steps=5', 'training.steps_per_epoch=30',
         'training.batch_size=64']
AIRFLOW = os.path.join(REPO, '.venv-airflow', 'bin', 'airflow')


def write_sample(directory, rows=400) -> str:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(REPO, 'data', 'taxi', 'data.csv'), encoding='utf-8') as src, \
            open(os.path.join(directory, 'data.csv'), 'w', encoding='utf-8') as dst:
        for i, line in enumerate(src):
            if i > rows:
                break
            dst.write(line)
    return str(directory)


def open_store(path):
    from pipeline.report import open_store as open_
    return open_(path)


def pushed_versions(serving_dir):
    if not os.path.isdir(serving_dir):
        return []
    return sorted(n for n in os.listdir(serving_dir) if n.isdigit()
                  and os.path.isfile(os.path.join(serving_dir, n, 'saved_model.pb')))


# --------------------------------------------------------------------------------------
# Kubeflow Pipelines v2: compile, then read the spec.

@pytest.fixture(scope='module')
def kfp(tmp_path_factory):
    from pipeline.inputs import resolve
    from pipeline.orchestrators.kubeflow import compile_pipeline
    from pipeline.pipeline import create_pipeline

    out = tmp_path_factory.mktemp('kfp') / 'pipeline.json'
    config = load_config(CONFIG, ['run.runner=kubeflow', f'run.image={IMAGE}',
                                  'paths.pipeline_root=gs://acme-ml/taxi/root',
                                  'paths.serving_dir=gs://acme-ml/taxi/serving',
                                  f'run.kfp_output={out}', 'training.train_steps=321'])
    assert compile_pipeline(config) == str(out)
    with open(out, encoding='utf-8') as f:
        job = json.load(f)
    local_config = load_config(CONFIG, [f'paths.pipeline_root={out.parent}/local'])
    local = create_pipeline(local_config, resolve(local_config))
    return config, job, local


def task_node(task: str) -> str:
    """A KFP task's TFX node: the resolver compiles to two tasks named after it."""
    return task.split('-', 1)[0]


def test_kfp_spec_runs_every_component_in_the_image(kfp):
    _, job, local = kfp
    spec = job['pipelineSpec']
    tasks = spec['root']['dag']['tasks']
    assert {task_node(t) for t in tasks} == {c.id for c in local.components}
    executors = spec['deploymentSpec']['executors']
    for name, task in tasks.items():
        executor = executors[spec['components'][task['componentRef']['name']]['executorLabel']]
        if name.startswith('BaselineModelResolver'):
            assert 'resolver' in executor  # runs in KFP's backend, not in a container
        else:
            assert executor['container']['image'] == IMAGE, name
            assert executor['container']['command'][-1].endswith('kubeflow_v2_run_executor')
    assert spec['schemaVersion'] == '2.1.0'
    assert job['runtimeConfig']['gcsOutputDirectory'] == 'gs://acme-ml/taxi/root'


def test_kfp_data_root_and_training_steps_are_runtime_parameters(kfp):
    _, job, _ = kfp
    spec = job['pipelineSpec']
    declared = spec['root']['inputDefinitions']['parameters']
    # The bundled sample, where the Dockerfile puts it; the config's steps.
    defaults = {'data_root': '/pipeline/data/taxi', 'train_args': '{"num_steps": 321}'}
    assert {k: v['defaultValue'] for k, v in declared.items()} == defaults
    assert {k: v['parameterType'] for k, v in declared.items()} == {
        'data_root': 'STRING', 'train_args': 'STRING'}
    assert job['runtimeConfig']['parameterValues'] == defaults
    tasks = spec['root']['dag']['tasks']
    assert tasks['CsvExampleGen']['inputs']['parameters']['input_base'] == {
        'componentInputParameter': 'data_root'}
    assert tasks['Trainer']['inputs']['parameters']['train_args'] == {
        'componentInputParameter': 'train_args'}


def test_kfp_dag_edges_are_the_local_graphs(kfp):
    _, job, local = kfp
    tasks = job['pipelineSpec']['root']['dag']['tasks']
    kfp_edges = {}
    for name, task in tasks.items():
        ups = {task_node(t) for t in task.get('dependentTasks', [])} - {task_node(name)}
        kfp_edges.setdefault(task_node(name), set()).update(ups)
    local_edges = {c.id: {u.id for u in c.upstream_nodes} for c in local.components}
    # The one intended difference: on KFP the baseline is TFX's latest blessed model,
    # resolved before training, so the resolver does not wait for the Trainer.
    assert local_edges.pop('BaselineModelResolver') == {'Trainer'}
    assert kfp_edges.pop('BaselineModelResolver') == set()
    assert kfp_edges == local_edges
    assert local_edges['Transform'] >= {'AnomalyGate'}  # the gate holds Transform back


def test_kfp_spec_points_into_the_image_and_writes_nothing_at_compile_time(kfp):
    from pipeline.schema import staged_schema_path

    config, job, _ = kfp
    params = {name: task.get('inputs', {}).get('parameters', {})
              for name, task in job['pipelineSpec']['root']['dag']['tasks'].items()
              }
    schema = params['ImportSchemaGen']['schema_file']['runtimeValue']['constant']
    assert schema == staged_schema_path(config.data.schema, '/pipeline')
    assert params['Transform']['preprocessing_fn']['runtimeValue']['constant'] == \
        'components.transform.preprocessing_fn'
    assert params['Trainer']['run_fn']['runtimeValue']['constant'] == 'components.trainer.run_fn'
    assert 'module_file' not in params['Transform']  # no wheel built and uploaded
    # The pipeline root is gs:// and nothing here could write there: compiling wrote the
    # spec only, and no local directory named like the URI appeared.
    assert not os.path.exists('gs:') and not os.path.exists(os.path.join(REPO, 'gs:'))


def test_kubeflow_refuses_local_roots_and_a_missing_image():
    base = ['run.runner=kubeflow', 'paths.pipeline_root=gs://b/root',
            'paths.serving_dir=gs://b/serving', f'run.image={IMAGE}']
    with pytest.raises(ConfigError, match=r'run\.image: the kubeflow runner needs the container'):
        load_config(CONFIG, base[:3])
    with pytest.raises(ConfigError, match=r'paths\.pipeline_root: .*URI the cluster can reach'):
        load_config(CONFIG, base + ['paths.pipeline_root=output/root'])
    with pytest.raises(ConfigError, match=r'paths\.serving_dir: .*URI'):
        load_config(CONFIG, base + ['paths.serving_dir=/srv/models'])
    # Remote data is not looked at on this machine.
    assert load_config(CONFIG, base + ['data.root=gs://b/data']).data.root == 'gs://b/data'


def test_kubeflow_cli_writes_the_spec_and_refuses_data_outside_the_repository(tmp_path, capsys):
    import yaml

    import pipeline_runner

    common = ['--runner', 'kubeflow', '--image', IMAGE, '--pipeline-root', 'gs://b/root',
              '--serving-dir', 'gs://b/serving']
    spec = tmp_path / 'spec.yaml'
    assert pipeline_runner.main(common + ['--kfp-output', str(spec)]) == 0
    assert f'Wrote the Kubeflow pipeline spec {spec}' in capsys.readouterr().out
    with open(spec, encoding='utf-8') as f:
        bare = yaml.safe_load(f)  # .yaml: the bare PipelineSpec that KFP uploads
    assert bare['pipelineInfo']['name'] == 'taxi' and 'root' in bare
    assert bare['root']['inputDefinitions']['parameters']['data_root']['defaultValue'] == \
        '/pipeline/data/taxi'
    # Data the run would refuse (no label column): refused first for where it is, by the
    # config check, before the data is read.
    data = str(tmp_path / 'data')
    os.makedirs(data)
    with open(os.path.join(data, 'data.csv'), 'w', encoding='utf-8') as f:
        f.write('a,b\n1,2\n')
    assert pipeline_runner.main(common + ['--kfp-output', str(tmp_path / 'x.json'),
                                          '--data-root', data]) == 2
    err = capsys.readouterr().err
    assert f'data.root: {data} is on this machine, not in the image' in err
    assert not (tmp_path / 'x.json').exists()


def test_kfp_compiles_drift_against_the_previous_span_and_refuses_a_window_of_spans(tmp_path):
    from pipeline.orchestrators.kubeflow import compile_pipeline
    from testlib import write_config

    for span in (1, 2):
        write_sample(tmp_path / 'data' / f'span-{span}', rows=20)
    # The config's directory is its repository: the spans are "in the image".
    path = write_config(str(tmp_path), data={'root': str(tmp_path / 'data')},
                        validation={'drift': {'default_linf': 0.3}})
    kubeflow = ['run.runner=kubeflow', f'run.image={IMAGE}', 'paths.pipeline_root=gs://b/root',
                'paths.serving_dir=gs://b/serving', f'run.kfp_output={tmp_path}/spec.json']
    compile_pipeline(load_config(path, kubeflow))
    with open(tmp_path / 'spec.json', encoding='utf-8') as f:
        tasks = json.load(f)['pipelineSpec']['root']['dag']['tasks']
    gate = {key: spec['taskOutputArtifact']['producerTask']
            for key, spec in tasks['AnomalyGate']['inputs']['artifacts'].items()}
    # The gate checks the files of both spans' ExampleGens (each input one channel).
    assert gate == {'anomalies': 'ExampleValidator', 'drift': 'DriftCheck',
                    'examples': 'CsvExampleGen', 'drift_examples': 'ExampleGen_span1'}
    with pytest.raises(ConfigError, match=r'data\.spans: 2 spans cannot be trained on with the '
                                          r'kubeflow runner'):
        compile_pipeline(load_config(path, kubeflow + ['data.spans=2']))


# --------------------------------------------------------------------------------------
# setup.py: what Beam stages for remote workers with --setup_file.

def test_setup_file_ships_the_pipeline_and_component_code(tmp_path):
    import tarfile

    from apache_beam.runners.portability.stager import Stager

    sdist = Stager._build_setup_package(os.path.join(REPO, 'setup.py'), str(tmp_path), None)
    with tarfile.open(sdist) as tar:
        names = {n.split('/', 1)[1] for n in tar.getnames() if '/' in n}
    for module in ('components/transform.py', 'components/trainer.py', 'components/features.py',
                   'components/anomaly_gate/executor.py', 'components/pusher/executor.py',
                   'pipeline/config.py', 'pipeline/orchestrators/kubeflow.py'):
        assert module in names, module


# --------------------------------------------------------------------------------------
# The run lock, at the smallest level: two processes.

HOLD = ('import sys, time; from pipeline.lock import run_lock\n'
        'with run_lock(sys.argv[1]):\n'
        '    print("held", flush=True); time.sleep(float(sys.argv[2]))\n')


def hold_lock(metadata, seconds):
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(metadata), str(seconds)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO))
    assert holder.stdout.readline().strip() == 'held'
    return holder


def test_a_second_run_waits_for_the_first_and_names_it(tmp_path):
    from pipeline.lock import run_lock

    holder = hold_lock(tmp_path / 'metadata.sqlite', 2)
    messages, start = [], time.time()
    with run_lock(str(tmp_path / 'metadata.sqlite'), log=messages.append):
        waited = time.time() - start
    holder.wait(timeout=30)
    assert waited > 1.0
    assert f'pid {holder.pid} on {socket.gethostname()}, started ' in messages[0]
    assert str(tmp_path / 'metadata.sqlite.lock') in messages[0]
    assert 'Waiting for it to finish' in messages[0] and 'this run starts now' in messages[1]


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    from pipeline.lock import run_lock

    holder = hold_lock(tmp_path / 'metadata.sqlite', 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    messages, start = [], time.time()
    with run_lock(str(tmp_path / 'metadata.sqlite'), log=messages.append):
        assert time.time() - start < 1.0
    assert messages == []


# --------------------------------------------------------------------------------------
# Beam's portable runner, and a second run overlapping the first on the same store.

@pytest.fixture(scope='module')
def overlapping_portable_runs(tmp_path_factory):
    """Run A on the portable runner; B, identical, started while A holds the lock."""
    tmp = tmp_path_factory.mktemp('portable')
    paths = dict(data=write_sample(tmp / 'data'), root=str(tmp / 'root'),
                 metadata=str(tmp / 'metadata.sqlite'), serving=str(tmp / 'serving'))
    args = [sys.executable, 'pipeline_runner.py', '--data-root', paths['data'],
            '--pipeline-root', paths['root'], '--metadata', paths['metadata'],
            '--serving-dir', paths['serving']]
    args += [f'--set={s}' for s in SMALL] + [f'--beam-arg={a}' for a in PORTABLE]
    runs = {}
    for name in ('A', 'B'):
        log = open(tmp / f'{name}.out', 'w+', encoding='utf-8')
        # B through TFX: two orchestrators on one store. (By default, B would look for an
        # unchanged run under the lock, after A recorded itself, and be answered from A's
        # record: tests/fast_rerun.)
        own = ['--set', 'run.fast_rerun=false'] if name == 'B' else []
        runs[name] = (subprocess.Popen(args + own + ['--summary-json', str(tmp / f'{name}.json')],
                                       cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log)
        if name == 'A':  # B starts once A holds the lock (i.e. A's run has begun)
            lock = paths['metadata'] + '.lock'
            deadline = time.time() + 120
            while not (os.path.exists(lock) and f'"pid": {runs["A"][0].pid}' in open(lock).read()):
                assert time.time() < deadline and runs['A'][0].poll() is None, 'A did not start'
                time.sleep(0.2)
    result = dict(paths, tmp=tmp)
    for name, (proc, log) in runs.items():
        proc.wait(timeout=2400)
        log.seek(0)
        result[name] = dict(code=proc.returncode, out=log.read(), pid=proc.pid)
        log.close()
        if proc.returncode == 0:
            with open(tmp / f'{name}.json', encoding='utf-8') as f:
                result[name]['summary'] = json.load(f)
    return result


def test_portable_runner_runs_the_pipeline_and_pushes(overlapping_portable_runs):
    a = overlapping_portable_runs['A']
    assert a['code'] == 0, a['out'][-3000:]
    summary = a['summary']
    assert summary['status'] == 'succeeded', summary
    assert {c['state'] for c in summary['components']} == {'ran'}
    [version] = pushed_versions(overlapping_portable_runs['serving'])
    assert summary['push']['version'] == version
    # It was Beam's portable runner, through its embedded job service, that ran the jobs
    # (A's log is the first; B's comes after it).
    logs = os.path.join(overlapping_portable_runs['root'], '_logs')
    with open(os.path.join(logs, sorted(os.listdir(logs))[0]), encoding='utf-8') as f:
        log = f.read()
    # Transform (ExampleGen reads with pyarrow, and StatisticsGen and the Evaluator compute
    # small data's statistics and metrics in memory, without Beam).
    assert len(re.findall(r'portable_runner:\s?Job state changed to DONE', log)) >= 1
    assert 'Environment "LOOPBACK" has started' in log
    assert 'DirectRunner' not in log


def test_overlapping_runs_are_serialized_and_the_store_stays_whole(overlapping_portable_runs):
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    a, b = overlapping_portable_runs['A'], overlapping_portable_runs['B']
    assert b['code'] == 0, b['out'][-3000:]
    assert f'Another run holds {overlapping_portable_runs["metadata"]}.lock: pid {a["pid"]} on ' \
        in b['out']
    # B ran on A's finished state: every component from the cache (the resolver only
    # looks up the baseline), nothing pushed twice.
    assert {c['id']: c['state'] for c in b['summary']['components']
            if c['id'] != 'BaselineModelResolver'} == {c['id']: 'cached' for c in
                                                       a['summary']['components']
                                                       if c['id'] != 'BaselineModelResolver'}
    assert len(pushed_versions(overlapping_portable_runs['serving'])) == 1

    store = open_store(overlapping_portable_runs['metadata'])
    runs = sorted(store.get_contexts_by_type('pipeline_run'), key=lambda c: c.id)
    assert len(runs) == 2
    executions = [store.get_executions_by_context(r.id) for r in runs]
    assert {e.last_known_state for e in executions[0]} == {mlmd.Execution.COMPLETE}
    assert {e.last_known_state for e in executions[1]} == {mlmd.Execution.COMPLETE,
                                                          mlmd.Execution.CACHED}
    assert len(executions[0]) == len(executions[1]) == len(a['summary']['components'])
    # Serialized: B's first execution began after A's last one ended.
    assert min(e.create_time_since_epoch for e in executions[1]) >= \
        max(e.last_update_time_since_epoch for e in executions[0])
    assert len(store.get_artifacts_by_type('Model')) == 1


# --------------------------------------------------------------------------------------
# Airflow: the shipped DAG, in the optional Airflow environment.

needs_airflow = pytest.mark.skipif(
    not os.access(AIRFLOW, os.X_OK),
    reason='Airflow is optional: run scripts/airflow.sh once to install it (.venv-airflow)')


@pytest.fixture(scope='module')
def airflow_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('airflow')
    paths = dict(data=write_sample(tmp / 'data'), root=str(tmp / 'root'),
                 metadata=str(tmp / 'metadata.sqlite'), serving=str(tmp / 'serving'))
    overrides = [f'data.root={paths["data"]}', f'paths.pipeline_root={paths["root"]}',
                 f'paths.metadata={paths["metadata"]}', f'paths.serving_dir={paths["serving"]}']
    env = dict(os.environ, AIRFLOW_HOME=str(tmp / 'home'),
               PIPELINE_SET=' '.join(shlex.quote(o) for o in overrides + SMALL))
    env.pop('PYTHONPATH', None)
    return dict(paths, env=env, tmp=tmp)


def airflow(env, *args, timeout=2400):
    return subprocess.run([os.path.join(REPO, 'scripts', 'airflow.sh'), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_airflow_dag_follows_the_configs_schedule_without_catchup():
    from pipeline.orchestrators.airflow import dag_args

    config = load_config(CONFIG)
    assert dag_args(config)['schedule'] == config.run.schedule == '@daily'
    assert dag_args(config.replace(run=config.run.__class__(schedule='')))['schedule'] is None
    assert dag_args(config)['catchup'] is False and dag_args(config)['max_active_runs'] == 1


@needs_airflow
def test_airflow_lists_the_dag_with_the_configs_schedule(airflow_env):
    listed = airflow(airflow_env['env'], 'dags', 'list', '--output', 'json', '--columns',
                     'dag_id,schedule_interval,max_active_runs,fileloc')
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert 'Failed to load all files' not in listed.stderr, listed.stderr[-3000:]
    dags = {d['dag_id']: d for d in json.loads(listed.stdout.strip().splitlines()[-1])}
    assert dags['taxi'] == {'dag_id': 'taxi', 'schedule_interval': '@daily', 'max_active_runs': '1',
                            'fileloc': os.path.join(REPO, 'dags', 'taxi_dag.py')}


@needs_airflow
def test_airflow_parses_the_dag_reading_nothing_but_the_config(airflow_env, tmp_path):
    """Parsing reads no data and imports neither TensorFlow nor TFX; the tasks do the rest."""
    env = dict(airflow_env['env'], PIPELINE_SET=airflow_env['env']['PIPELINE_SET']
               + f' data.root={tmp_path}/not-there-yet')
    parse = subprocess.run([os.path.join(REPO, '.venv-airflow', 'bin', 'python'), '-X', 'importtime',
                            '-c', 'import runpy; dag = runpy.run_path("dags/taxi_dag.py")["dag"]; '
                                  'print(sorted(dag.task_ids))'],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert parse.returncode == 0, parse.stderr[-3000:]
    assert parse.stdout.split('\n')[-2] == "['resolve_inputs', 'run']"
    imported = {re.match(r'import time:\s+\d+ \|\s+\d+ \|\s+(\w+)', line).group(1)
                for line in parse.stderr.splitlines() if re.match(r'import time:\s+\d', line)}
    assert 'tensorflow' not in imported and 'tfx' not in imported


@needs_airflow
def test_airflow_dag_runs_the_pipeline_end_to_end(airflow_env):
    done = airflow(airflow_env['env'], 'dags', 'test', 'taxi', '2024-06-01')
    output = airflow_env['tmp'] / 'dags-test.log'
    output.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f'{(done.stdout + done.stderr)[-3000:]}\nwhole output: {output}'

    [version] = pushed_versions(airflow_env['serving'])
    [push] = open_store(airflow_env['metadata']).get_artifacts_by_type('PushedModel')
    assert push.custom_properties['pushed'].int_value == 1
    assert push.custom_properties['pushed_version'].string_value == version
    # Every component of the graph ran, InferredSchemaGen included, in one pipeline run,
    # and the run task's log has their progress lines.
    store = open_store(airflow_env['metadata'])
    [run] = store.get_contexts_by_type('pipeline_run')
    assert len(store.get_executions_by_context(run.id)) == 11
    assert 'InferredSchemaGen done in' in done.stdout + done.stderr
