"""Reading ML Metadata: a pipeline's runs, their executions and artifacts, without TFX.

The terminal summary (``pipeline/report.py``), the HTML report (``pipeline/html_report``)
and the run browser (``pipeline/runs.py``) read the store through these functions. Nothing
here imports TFX or TensorFlow, so ``pipeline_runner.py runs`` answers at once; the readers
that need TFX's artifact objects convert with :func:`tfx_artifact`.

A run is TFX's ``pipeline_run`` context; its name (an ISO timestamp, e.g.
``2026-12-01T11:32:34.133398``) is the run id users see. :func:`find_run` accepts that id
(or its file-name form, as in the report's name), any unique prefix of it, ``latest`` or
``latest~N`` (the N-th run before the latest).
"""
import dataclasses
import json
import re
from typing import Any, Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

Execution = metadata_store_pb2.Execution
STATES = {Execution.COMPLETE: 'ran', Execution.CACHED: 'cached', Execution.FAILED: 'failed',
          Execution.RUNNING: 'running', Execution.CANCELED: 'canceled', Execution.NEW: 'new'}
_INPUT = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_OUTPUT = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def file_stem(run_id: str) -> str:
    """A run id as a file name (the run's report and record): ``2026-12-01T11:32:34.1`` ->
    ``2026-12-01T11-32-34.1``. :func:`find_run` accepts either."""
    return re.sub(r'[^A-Za-z0-9._-]', '-', run_id)


class RunNotFound(LookupError):
    """No run of the pipeline matches the id given; the message says which ids exist."""


def open_store(path: str, read_only: bool = False) -> metadata_store.MetadataStore:
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = path
    connection.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if read_only else
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    return metadata_store.MetadataStore(connection)


def pipeline_runs(store, pipeline_name: str) -> List[metadata_store_pb2.Context]:
    """The pipeline_run contexts of the pipeline, oldest first."""
    pipeline = store.get_context_by_type_and_name('pipeline', pipeline_name)
    if pipeline is None:
        return []
    runs = [c for c in store.get_children_contexts_by_context(pipeline.id)
            if c.type == 'pipeline_run'] or store.get_contexts_by_type('pipeline_run')
    return sorted(runs, key=lambda r: r.id)


def latest_run(store, pipeline_name: str, since_ms: int = 0):
    """The newest pipeline_run context of the pipeline, created at or after ``since_ms``."""
    runs = [r for r in pipeline_runs(store, pipeline_name) if r.create_time_since_epoch >= since_ms]
    return runs[-1] if runs else None


def find_run(store, pipeline_name: str, ref: Optional[str] = None):
    """The run named by ``ref``: its id, a unique prefix of it, ``latest`` (also for None or
    ''), or ``latest~N``. Raises :class:`RunNotFound` with the ids that exist."""
    runs = pipeline_runs(store, pipeline_name)
    if not runs:
        raise RunNotFound(f'pipeline {pipeline_name!r} has no runs recorded in this metadata store')
    ref = (ref or 'latest').strip()
    if ref == 'latest' or ref.startswith('latest~'):
        back = ref[len('latest~'):] if '~' in ref else '0'
        if not back.isascii() or not back.isdigit():
            raise RunNotFound(f'run {ref!r}: expected latest or latest~N with N a whole number')
        if int(back) >= len(runs):
            raise RunNotFound(f'run {ref!r}: pipeline {pipeline_name!r} has only {len(runs)} '
                              f'run{"s" if len(runs) != 1 else ""}')
        return runs[-1 - int(back)]
    exact = [r for r in runs if ref in (r.name, file_stem(r.name))]
    matches = exact or [r for r in runs if r.name.startswith(ref)
                        or file_stem(r.name).startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    known = ', '.join(r.name for r in runs[-5:])
    if not matches:
        raise RunNotFound(f'run {ref!r}: no run of pipeline {pipeline_name!r} has that id or '
                          f'prefix (latest runs: {known}; or say latest, latest~1)')
    raise RunNotFound(f'run {ref!r}: matches {len(matches)} runs ({", ".join(r.name for r in matches[:5])}'
                      f'{", ..." if len(matches) > 5 else ""}); give more of the id')


@dataclasses.dataclass
class NodeExecution:
    """One node's execution in a run, with the MLMD artifacts it read and wrote."""
    node: str
    execution: Any  # metadata_store_pb2.Execution
    inputs: Dict[str, List[Any]]  # key -> [metadata_store_pb2.Artifact]
    outputs: Dict[str, List[Any]]

    @property
    def state(self) -> str:
        return STATES.get(self.execution.last_known_state, 'unknown')

    @property
    def started_ms(self) -> int:
        return self.execution.create_time_since_epoch

    @property
    def ended_ms(self) -> int:
        return self.execution.last_update_time_since_epoch

    def prop(self, name: str, default: Any = None) -> Any:
        """An exec property (TFX records them as execution properties), decoded from JSON
        when it is a JSON string."""
        for props in (self.execution.properties, self.execution.custom_properties):
            if name in props:
                value = props[name]
                kind = value.WhichOneof('value')
                if kind == 'string_value':
                    try:
                        return json.loads(value.string_value)
                    except ValueError:
                        return value.string_value
                return getattr(value, kind) if kind else default
        return default


def node_names(store) -> Dict[int, str]:
    """{execution id: node id} over the whole store (TFX's ``node`` contexts,
    ``<pipeline>.<node id>``)."""
    names = {}
    for context in store.get_contexts_by_type('node'):
        node = context.name.split('.', 1)[-1]
        for execution in store.get_executions_by_context(context.id):
            names[execution.id] = node
    return names


def read_runs(store, runs: List[Any], with_artifacts: bool = True
              ) -> Dict[int, Dict[str, NodeExecution]]:
    """{run context id: {node id: NodeExecution}} for several runs, in a few batched queries
    (a node executed twice in one run keeps its newest execution)."""
    names = node_names(store)
    executions = {run.id: store.get_executions_by_context(run.id) for run in runs}
    every = [e for found in executions.values() for e in found]
    events: Dict[int, List[Any]] = {}
    artifacts: Dict[int, Any] = {}
    if with_artifacts and every:
        for event in store.get_events_by_execution_ids([e.id for e in every]):
            events.setdefault(event.execution_id, []).append(event)
        ids = sorted({ev.artifact_id for found in events.values() for ev in found})
        artifacts = {a.id: a for a in store.get_artifacts_by_id(ids)} if ids else {}
    result = {}
    for run_id, found in executions.items():
        nodes: Dict[str, NodeExecution] = {}
        for execution in sorted(found, key=lambda e: e.id):
            entry = NodeExecution(names.get(execution.id, execution.type), execution, {}, {})
            for event in events.get(execution.id, []):
                side = entry.inputs if event.type in _INPUT else (
                    entry.outputs if event.type in _OUTPUT else None)
                if side is None or event.artifact_id not in artifacts:
                    continue
                key = event.path.steps[0].key if event.path.steps else ''
                side.setdefault(key, []).append(artifacts[event.artifact_id])
            nodes[entry.node] = entry
        result[run_id] = nodes
    return result


def run_nodes(store, run) -> Dict[str, NodeExecution]:
    return read_runs(store, [run])[run.id]


def producer(store, artifact) -> Optional[Dict[str, Any]]:
    """The execution that wrote ``artifact``: {'node', 'execution_id', 'run'} (its run's id),
    or None."""
    for event in store.get_events_by_artifact_ids([artifact.id]):
        if event.type in _OUTPUT:
            contexts = store.get_contexts_by_execution(event.execution_id)
            node = next((c.name.split('.', 1)[-1] for c in contexts if c.type == 'node'), '')
            run = next((c.name for c in contexts if c.type == 'pipeline_run'), '')
            return {'node': node, 'execution_id': event.execution_id, 'run': run}
    return None


def string_property(artifact, name: str) -> str:
    for props in (artifact.custom_properties, artifact.properties):
        if name in props:
            value = props[name]
            kind = value.WhichOneof('value')
            return str(getattr(value, kind)) if kind else ''
    return ''


def tfx_artifact(artifact_proto, store):
    """A TFX artifact object for an MLMD artifact proto (for the TFX readers). Imports TFX."""
    from tfx.types import artifact_utils
    [artifact_type] = store.get_artifact_types_by_id([artifact_proto.type_id])
    return artifact_utils.deserialize_artifact(artifact_type, artifact_proto)
