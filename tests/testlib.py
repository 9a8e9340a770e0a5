"""Helpers shared by the tests: small data and configs in temporary directories."""
import csv
import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI_CSV = os.path.join(REPO, 'data', 'taxi', 'data.csv')
sys.path.insert(0, REPO)

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def taxi_rows(n, every=25):
    """The header and n rows, taking every ``every``-th row of the bundled data."""
    with open(TAXI_CSV, newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [r for i, r in enumerate(reader) if i % every == 0][:n]
    return header, rows


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_config(directory, base='taxi', **sections):
    """A YAML config in ``directory``: the bundled one for ``base``, with sections updated.

    ``sections`` maps a top-level key to a dict merged into it (or a scalar replacing it).
    Paths default to subdirectories of ``directory``.
    """
    with open(os.path.join(REPO, 'configs', f'{base}.yaml'), encoding='utf-8') as f:
        raw = yaml.safe_load(f)
    raw['data']['schema'] = os.path.join(REPO, raw['data']['schema'])
    raw['paths'] = {'pipeline_root': os.path.join(directory, 'root'),
                    'metadata': os.path.join(directory, 'metadata', 'metadata.sqlite'),
                    'serving_dir': os.path.join(directory, 'serving')}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key].update(value)
        else:
            raw[key] = value
    path = os.path.join(directory, f'{raw["name"]}.yaml')
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(raw, f)
    return path


# Few steps and small batches: the end-to-end tests check the plumbing, not the model.
FAST_TRAINING = {'train_steps': 150, 'eval_steps': 10, 'steps_per_epoch': 50, 'batch_size': 32}


def rerun_node(config, node_id, out_dir, beam_args):
    """Runs again the executor of ``node_id``'s execution in the latest run of ``config``:
    the same executor class, exec properties and input artifacts, with ``beam_args``,
    writing fresh output artifacts under ``out_dir``. Returns (the execution, its inputs,
    its recorded outputs, the new outputs), each output as {key: [artifact]}."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import artifact_utils

    from pipeline.inputs import resolve
    from pipeline.pipeline import create_pipeline
    from pipeline.report import latest_run, open_store

    node = next(n for n in create_pipeline(config, resolve(config)).components if n.id == node_id)
    store = open_store(config.paths.metadata)
    execution = None
    for e in store.get_executions_by_context(latest_run(store, config.name).id):
        if any(c.type == 'node' and c.name.split('.', 1)[-1] == node_id
               for c in store.get_contexts_by_execution(e.id)):
            execution = e
    inputs, outputs, fresh = {}, {}, {}
    for event in store.get_events_by_execution_ids([execution.id]):
        [artifact] = store.get_artifacts_by_id([event.artifact_id])
        [kind] = store.get_artifact_types_by_id([artifact.type_id])
        key = event.path.steps[0].key
        if event.type == mlmd.Event.INPUT:
            inputs.setdefault(key, []).append(artifact_utils.deserialize_artifact(kind, artifact))
        elif event.type == mlmd.Event.OUTPUT:
            outputs.setdefault(key, []).append(artifact_utils.deserialize_artifact(kind, artifact))
            new = artifact_utils.deserialize_artifact(kind, mlmd.Artifact(type_id=kind.id))
            new.uri = os.path.join(out_dir, key)
            os.makedirs(new.uri, exist_ok=True)
            fresh.setdefault(key, []).append(new)
    if execution.last_known_state == mlmd.Execution.CACHED:
        return execution, inputs, outputs, fresh
    executor = node.executor_spec.executor_class(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(beam_args), tmp_dir=os.path.join(out_dir, 'tmp'), unique_id='1'))
    executor.Do(inputs, fresh, {k: v for k, v in node.exec_properties.items() if v is not None})
    return execution, inputs, outputs, fresh
