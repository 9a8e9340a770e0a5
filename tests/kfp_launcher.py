"""A small Kubeflow Pipelines v2 launcher, for tests: runs a compiled PipelineJob here.

kfp's own local runner cannot run this spec: kfp 2.x needs protobuf >= 4.21 (kfp >= 2.7,
which runs pipelines locally), while TFX 1.15's stack needs protobuf < 4.21 on Python 3.10
(tensorflow-metadata 1.15) and kfp-pipeline-spec < 0.2, so the two cannot share an
environment; and kfp.local runs KFP SDK components in subprocesses or Docker, not TFX's
container tasks with a driver (``lifecycle.preCacheCheck``) or ``resolver`` executors.
(Open-source KFP's backend does not run resolvers either: its Argo compiler answers
"resolver executors not implemented". Vertex AI Pipelines runs them.)

So this does, task by task in dependency order, what the backend and KFP v2's launcher do:

* **the image**: ``build_image`` makes the image's file system from the ``Dockerfile``: its
  ``COPY`` lines, and its ``RUN`` lines other than the package installs (the environment
  running the tests already holds ``requirements.lock``), with the ``WORKDIR`` mapped to a
  local directory (``ENV`` likewise);
* **containers**: the task's ``command`` + ``args`` with ``{{$}}`` replaced by the
  ``ExecutorInput`` as JSON (the launcher's ``compileCmdAndArgs``), run in the image's
  directory with its environment; the driver of a ``lifecycle.preCacheCheck`` first, with
  the same executor input, its output file left for the executor (as TFX's
  ``kubeflow_v2_run_executor`` expects) and its parameters and artifact metadata merged in;
* **artifacts**: output URIs ``<root>/<pipeline>/<run>/<task>/<output key>``, names shaped
  as Vertex ML Metadata's (``projects/.../artifacts/<run>.<task>.<key>``); the executor
  output's artifacts merged into them (``mergeRuntimeArtifacts``: the URI if given, the
  metadata key by key) and recorded in a metadata store kept under ``<root>`` across runs;
* **resolvers**: each ``outputArtifactQueries`` filter (``schema_title=``, ``state=``,
  ``name=``, ``uri=``, ``metadata.<key>.<kind>_value=``, joined by ``AND``) answered from
  that store, within the pipeline's context, newest first, ``limit`` (default 1) artifacts;
  placeholders of the task's input artifacts (``{{$.inputs.artifacts['input'].metadata[...]}}``)
  filled in first; a query that cannot be filled in (no input) finds nothing;
* **caching**: a task with ``cachingOptions.enableCache`` whose cache key (its input
  artifacts' names, its parameter values after the driver, its output definitions, image,
  command and args: KFP's ``CacheKey``) matches an earlier successful execution reuses that
  execution's output artifacts and does not run.

Anything else in a spec (importers, conditions, loops, other placeholders) is refused with
``NotImplementedError`` rather than run differently.
"""
import hashlib
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import yaml

VENV_BIN = os.path.dirname(sys.executable)
STORE_PREFIX = 'projects/local/locations/local/metadataStores/default'


class TaskFailed(RuntimeError):
    """A task's process exited with an error; the message has the end of its log."""

    def __init__(self, task: str, log: str, tail: str):
        super().__init__(f'{task} failed (log {log}):\n{tail}')
        self.task, self.log, self.tail = task, log, tail


# --------------------------------------------------------------------------------------
# The image

def dockerfile_steps(path: str) -> List[List[str]]:
    """The Dockerfile's instructions, continuation lines joined: [[INSTRUCTION, rest]]."""
    steps, current = [], ''
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.rstrip('\n')
            if not current and (not line.strip() or line.lstrip().startswith('#')):
                continue
            if line.endswith('\\'):
                current += line[:-1] + ' '
                continue
            current += line
            instruction, _, rest = current.strip().partition(' ')
            steps.append([instruction.upper(), rest.strip()])
            current = ''
    return steps


def build_image(repo: str, image_root: str) -> Dict[str, str]:
    """Lays out the image's WORKDIR at ``image_root`` as the Dockerfile builds it; returns
    the image's environment (``ENV``), with the WORKDIR mapped to ``image_root``."""
    workdir, env = '/', {}

    def local(path: str) -> str:
        absolute = os.path.normpath(os.path.join(workdir, path))
        if absolute != workdir and not absolute.startswith(workdir + os.sep):
            raise NotImplementedError(f'Dockerfile: {path} is outside the WORKDIR {workdir}')
        return os.path.join(image_root, os.path.relpath(absolute, workdir))

    ignored = shutil.ignore_patterns('__pycache__', '*.egg-info')  # as in .dockerignore
    for instruction, rest in dockerfile_steps(os.path.join(repo, 'Dockerfile')):
        if instruction == 'WORKDIR':
            workdir = rest
            os.makedirs(image_root, exist_ok=True)
        elif instruction == 'ENV':
            for pair in shlex.split(rest):
                key, _, value = pair.partition('=')
                env[key] = value.replace(workdir, image_root) if workdir != '/' else value
        elif instruction == 'COPY':
            *sources, destination = shlex.split(rest)
            target = local(destination)
            into = destination.endswith('/') or len(sources) > 1
            for source in sources:
                src = os.path.join(repo, source)
                if os.path.isdir(src):  # a directory's contents, as Docker copies it
                    shutil.copytree(src, target, ignore=ignored, dirs_exist_ok=True)
                else:
                    dest = os.path.join(target, os.path.basename(source)) if into else target
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    shutil.copy2(src, dest)
        elif instruction == 'RUN':
            if 'pip install' in rest:  # the dependencies: this environment has them
                continue
            subprocess.run(['sh', '-c', rest.replace(workdir, image_root)], cwd=image_root,
                           env=task_env(env), check=True, capture_output=True)
        elif instruction not in ('FROM', 'LABEL', 'ARG', 'CMD', 'ENTRYPOINT', 'EXPOSE'):
            raise NotImplementedError(f'Dockerfile: {instruction} is not handled')
    return env


def task_env(image_env: Dict[str, str]) -> Dict[str, str]:
    """This machine's environment with the image's on top; ``python`` is this one."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(image_env)
    env['PATH'] = VENV_BIN + os.pathsep + env.get('PATH', '')
    return env


# --------------------------------------------------------------------------------------
# ML Metadata, as far as the resolvers need it

class Store:
    """The artifacts every run recorded (newest last) and the cache keys of its successful
    executions, in ``<root>/metadata.json``."""

    def __init__(self, root: str):
        self.path = os.path.join(root, 'metadata.json')
        self.artifacts: List[Dict[str, Any]] = []
        self.executions: Dict[str, Dict[str, Any]] = {}  # cache key -> outputs
        if os.path.exists(self.path):
            with open(self.path, encoding='utf-8') as f:
                saved = json.load(f)
            self.artifacts, self.executions = saved['artifacts'], saved['executions']

    def add(self, outputs: Dict[str, List[Dict[str, Any]]], cache_key: str, pipeline: str,
            run: str, task: str) -> None:
        for listed in outputs.values():
            self.artifacts += [dict(a, pipeline=pipeline, run=run, task=task, state='LIVE',
                                    schema_title=schema_title(a['type'])) for a in listed]
        self.executions[cache_key] = outputs
        with open(self.path, 'w', encoding='utf-8') as f:
            json.dump({'artifacts': self.artifacts, 'executions': self.executions}, f, indent=1)

    def query(self, pipeline: str, query: str, limit: int) -> List[Dict[str, Any]]:
        tests = [_clause(c) for c in re.split(r'\s+AND\s+', query.strip())]
        found = [a for a in self.artifacts if a['pipeline'] == pipeline
                 and all(test(a) for test in tests)]
        return [runtime_artifact(a) for a in found[::-1][:limit]]


def schema_title(artifact_type: Dict[str, str]) -> str:
    if 'schemaTitle' in artifact_type:
        return artifact_type['schemaTitle']
    return yaml.safe_load(artifact_type['instanceSchema'])['title']


def runtime_artifact(record: Dict[str, Any]) -> Dict[str, Any]:
    return {k: record[k] for k in ('name', 'type', 'uri', 'metadata')}


def _clause(clause: str) -> Callable[[Dict[str, Any]], bool]:
    """One condition of a resolver's filter, as a test of a stored artifact."""
    match = re.fullmatch(r'([\w.]+)\s*=\s*("(?:[^"\\]|\\.)*"|[\w.+-]+)', clause.strip())
    if not match:
        raise NotImplementedError(f'resolver filter: cannot read {clause!r}')
    key, literal = match.groups()
    value = json.loads(literal) if literal.startswith('"') else literal
    if key in ('schema_title', 'name', 'uri', 'state'):
        return lambda a: a[key] == value
    meta = re.fullmatch(r'metadata\.(\w+)\.(number|string|bool)_value', key)
    if not meta:
        raise NotImplementedError(f'resolver filter: {key!r} is not handled')
    field, kind = meta.groups()
    expected = {'number': float, 'string': str, 'bool': lambda v: v == 'true'}[kind](value)
    return lambda a: a['metadata'].get(field) == expected


# --------------------------------------------------------------------------------------
# The run

def cache_key(inputs: Dict[str, Any], component: Dict[str, Any],
              container: Dict[str, Any]) -> str:
    """KFP's cache key of a container task: what it is given, what it makes, what runs."""
    return hashlib.sha256(json.dumps({
        'artifacts': {k: [a['name'] for a in v['artifacts']]
                      for k, v in inputs['artifacts'].items()},
        'parameters': inputs['parameterValues'],
        'outputs': component.get('outputDefinitions', {}),
        'container': {k: container.get(k) for k in ('image', 'command', 'args')},
    }, sort_keys=True).encode()).hexdigest()


def execution_order(tasks: Dict[str, Dict[str, Any]]) -> List[str]:
    """The tasks in an order where each comes after every task it depends on."""
    upstream = {}
    for name, task in tasks.items():
        ups = set(task.get('dependentTasks', []))
        for spec in task.get('inputs', {}).get('artifacts', {}).values():
            if 'taskOutputArtifact' not in spec:
                raise NotImplementedError(f'{name}: input artifact {spec} is not handled')
            ups.add(spec['taskOutputArtifact']['producerTask'])
        for key in ('triggerPolicy', 'iteratorPolicy', 'parameterIterator', 'artifactIterator'):
            if key in task:
                raise NotImplementedError(f'{name}: {key} is not handled')
        upstream[name] = ups
    order, done = [], set()
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in done and upstream[n] <= done)
        if not ready:
            raise ValueError(f'the DAG has a cycle among {sorted(set(tasks) - done)}')
        order += ready
        done |= set(ready)
    return order


class Run:
    """One submission of a compiled PipelineJob; ``run()`` executes it."""

    def __init__(self, job_path: str, root: str, image_root: str, image_env: Dict[str, str],
                 parameter_values: Optional[Dict[str, Any]] = None, run_id: str = '',
                 timeout: float = 1800):
        with open(job_path, encoding='utf-8') as f:
            job = json.load(f)
        self.spec = job['pipelineSpec']
        self.pipeline = self.spec['pipelineInfo']['name']
        declared = self.spec['root'].get('inputDefinitions', {}).get('parameters', {})
        self.parameters = {k: v['defaultValue'] for k, v in declared.items()
                           if 'defaultValue' in v}
        self.parameters.update(job.get('runtimeConfig', {}).get('parameterValues', {}))
        for name, value in (parameter_values or {}).items():
            if name not in declared:
                raise ValueError(f'{name}: not a parameter of the pipeline ({sorted(declared)})')
            self.parameters[name] = value
        self.root, self.image_root, self.env = root, image_root, task_env(image_env)
        self.run_id = run_id or time.strftime('run-%Y%m%d-%H%M%S')
        self.run_root = os.path.join(root, self.pipeline, self.run_id)
        self.store = Store(root)
        self.timeout = timeout
        # Per task: the executor input it got, its outputs, whether from the cache, its
        # time (wall and the CPU of its processes); also written to <run root>/tasks.json.
        self.tasks: Dict[str, Dict[str, Any]] = {}

    def run(self) -> 'Run':
        os.makedirs(self.run_root, exist_ok=True)
        tasks = self.spec['root']['dag']['tasks']
        for name in execution_order(tasks):
            start, cpu = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
            component = self.spec['components'][tasks[name]['componentRef']['name']]
            executor = self.spec['deploymentSpec']['executors'][component['executorLabel']]
            inputs = self._inputs(name, tasks[name])
            if 'container' in executor:
                outputs, executor_input, cached = self._container(
                    name, component, executor['container'], inputs,
                    tasks[name].get('cachingOptions', {}).get('enableCache', False))
            elif 'resolver' in executor:
                outputs = self._resolve(component, executor['resolver'], inputs)
                executor_input, cached = None, False
            else:
                raise NotImplementedError(f'{name}: executor {sorted(executor)} is not handled')
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_seconds = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
            self.tasks[name] = {
                'executor_input': executor_input, 'outputs': outputs, 'cached': cached,
                'seconds': round(time.time() - start, 1), 'cpu_seconds': round(cpu_seconds, 1)}
        with open(os.path.join(self.run_root, 'tasks.json'), 'w', encoding='utf-8') as f:
            json.dump({n: {k: t[k] for k in ('cached', 'seconds', 'cpu_seconds')}
                       for n, t in self.tasks.items()}, f, indent=1)
        return self

    def _inputs(self, name: str, task: Dict[str, Any]) -> Dict[str, Any]:
        parameters = {}
        for key, spec in task.get('inputs', {}).get('parameters', {}).items():
            if 'runtimeValue' in spec:
                parameters[key] = spec['runtimeValue']['constant']
            elif 'componentInputParameter' in spec:
                parameters[key] = self.parameters[spec['componentInputParameter']]
            else:
                raise NotImplementedError(f'{name}: input parameter {spec} is not handled')
        artifacts = {}
        for key, spec in task.get('inputs', {}).get('artifacts', {}).items():
            producer = spec['taskOutputArtifact']
            artifacts[key] = {'artifacts': self.tasks[producer['producerTask']]['outputs'].get(
                producer['outputArtifactKey'], [])}
        return {'parameterValues': parameters, 'artifacts': artifacts}

    def _container(self, name, component, container, inputs, caching):
        task_root = os.path.join(self.run_root, name)
        outputs = {'artifacts': {}, 'outputFile': os.path.join(task_root, 'executor_output.json')}
        for key, spec in component.get('outputDefinitions', {}).get('artifacts', {}).items():
            outputs['artifacts'][key] = {'artifacts': [{
                'name': f'{STORE_PREFIX}/artifacts/{self.run_id}.{name}.{key}',
                'type': spec['artifactType'],
                'uri': os.path.join(task_root, key), 'metadata': {}}]}
        if component.get('outputDefinitions', {}).get('parameters'):
            raise NotImplementedError(f'{name}: output parameters are not handled')
        executor_input = {'inputs': inputs, 'outputs': outputs}
        os.makedirs(task_root, exist_ok=True)

        driver = container.get('lifecycle', {}).get('preCacheCheck')
        if driver:
            self._process(f'{name}.driver', driver['command'], driver['args'], executor_input)
            with open(outputs['outputFile'], encoding='utf-8') as f:
                driven = json.load(f)
            inputs['parameterValues'].update(driven.get('parameterValues', {}))
            self._merge(outputs, driven)
        key = cache_key(inputs, component, container)
        if caching and key in self.store.executions:
            return self.store.executions[key], executor_input, True
        self._process(name, container['command'], container.get('args', []), executor_input)
        with open(outputs['outputFile'], encoding='utf-8') as f:
            self._merge(outputs, json.load(f))
        result = {k: listed['artifacts'] for k, listed in outputs['artifacts'].items()}
        self.store.add(result, key, self.pipeline, self.run_id, name)
        return result, executor_input, False

    def rerun(self, name: str) -> None:
        """Runs a task's container again with the executor input it had (a retry)."""
        task = self.spec['root']['dag']['tasks'][name]
        component = self.spec['components'][task['componentRef']['name']]
        container = self.spec['deploymentSpec']['executors'][component['executorLabel']][
            'container']
        self._process(f'{name}.retry', container['command'], container.get('args', []),
                      self.tasks[name]['executor_input'])

    @staticmethod
    def _merge(outputs: Dict[str, Any], executor_output: Dict[str, Any]) -> None:
        for key, listed in executor_output.get('artifacts', {}).items():
            for dst, src in zip(outputs['artifacts'][key]['artifacts'], listed['artifacts']):
                dst['uri'] = src.get('uri') or dst['uri']
                dst['metadata'].update(src.get('metadata', {}))

    def _process(self, name: str, command: List[str], args: List[str],
                 executor_input: Dict[str, Any]) -> None:
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        # Checked against the proto: the JSON the backend's protojson would write.
        json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput())
        text = json.dumps(executor_input)
        argv = [part.replace('{{$}}', text) for part in command + args]
        for part in argv:
            left = re.search(r'\{\{\$[^}]*\}\}', part.replace(text, ''))
            if left:
                raise NotImplementedError(f'{name}: placeholder {left.group(0)} is not handled')
        log = os.path.join(self.run_root, f'{name}.log')
        with open(log, 'w', encoding='utf-8') as out:
            done = subprocess.run(argv, cwd=self.image_root, env=self.env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=self.timeout)
        if done.returncode:
            with open(log, encoding='utf-8', errors='replace') as f:
                raise TaskFailed(name, log, ''.join(f.readlines()[-60:]))

    def _resolve(self, component, resolver, inputs) -> Dict[str, List[Dict[str, Any]]]:
        def fill(match):
            key, field = match.groups()
            found = inputs['artifacts'].get(key, {}).get('artifacts', [])
            if not found or field not in found[0]['metadata']:
                raise LookupError
            return str(found[0]['metadata'][field])

        result = {}
        for key, query in resolver['outputArtifactQueries'].items():
            try:
                text = re.sub(r"\{\{\$\.inputs\.artifacts\['(\w+)'\]\.metadata\['(\w+)'\]\}\}",
                              fill, query['filter'])
            except LookupError:  # nothing to look up: the query finds nothing
                result[key] = []
                continue
            found = self.store.query(self.pipeline, text, int(query.get('limit', 1)))
            artifact_type = component['outputDefinitions']['artifacts'][key]['artifactType']
            result[key] = [dict(a, type=artifact_type) for a in found]
        return result

