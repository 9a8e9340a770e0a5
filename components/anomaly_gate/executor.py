"""AnomalyGate's executor, and the reader of ExampleValidator's anomalies artifact."""
import json
import os
from typing import Any, Dict, List, NamedTuple

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components import input_files


class Anomaly(NamedTuple):
    split: str
    feature: str
    kind: str
    description: str


class AnomaliesFound(RuntimeError):
    """The data failed validation; the message lists every anomaly and the artifact's path."""


class InputChanged(RuntimeError):
    """A CSV file the run read is not the one the preflight checked, or changed since it was
    read (``components/input_files.changes``)."""


def read_anomalies(artifact: types.Artifact) -> List[Anomaly]:
    """Every anomaly in an ExampleAnomalies artifact, over all its splits (local or gs://)."""
    found = []
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact.uri, f'Split-{split}', 'SchemaDiff.pb')
        with fileio.open(path, 'rb') as f:
            proto = anomalies_pb2.Anomalies.FromString(f.read())
        for feature, info in sorted(proto.anomaly_info.items()):
            kinds = sorted({anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason})
            found.append(Anomaly(split, feature, ', '.join(kinds) or info.short_description,
                                 info.description or info.short_description))
        if proto.HasField('dataset_anomaly_info'):
            info = proto.dataset_anomaly_info
            found.append(Anomaly(split, '(dataset)', info.short_description, info.description))
    return found


def format_anomalies(anomalies: List[Anomaly], uri: str) -> str:
    lines = [f'{len(anomalies)} data anomal{"y" if len(anomalies) == 1 else "ies"} '
             f'(artifact: {uri}):']
    lines += [f'  [{a.split}] {a.feature}: {a.kind}: {a.description}' for a in anomalies]
    return '\n'.join(lines)


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        messages = []
        for key in ('anomalies', 'drift'):
            for artifact in input_dict.get(key) or []:
                anomalies = read_anomalies(artifact)
                if anomalies:
                    messages.append(format_anomalies(anomalies, artifact.uri))
        checked = exec_properties.get('input_files')
        examples = (input_dict.get('examples') or []) + (input_dict.get('drift_examples') or [])
        read = [r for r in map(input_files.recorded, examples) if r]
        changed = input_files.changes(read, json.loads(checked) if checked else None)
        if changed:
            raise InputChanged('\n'.join(
                ['data files changed while the run read them, so the examples may mix old and '
                 'new rows; expected them to stay put during a run. Rerun once they are '
                 'complete:'] + [f'  {line}' for line in changed] + messages))
        if not messages:
            return
        message = '\n'.join(messages)
        if exec_properties['on_anomalies'] == 'warn':
            logging.warning('Continuing despite %s', message)
            return
        raise AnomaliesFound(message + '\nFix the data, or update the curated schema if the '
                             'change is expected, or run with --allow-anomalies.')
