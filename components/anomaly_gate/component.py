"""AnomalyGate's spec and component class."""
import json
from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.anomaly_gate.executor import Executor


class AnomalyGateSpec(types.ComponentSpec):
    PARAMETERS = {
        # 'fail' stops the run on any anomaly; 'warn' records them and lets the run go on.
        'on_anomalies': ExecutionParameter(type=str),
        # JSON {path: [size, mtime_ns]} of the CSV files as the preflight checked them, on
        # the machine that starts a run (components/input_files.py). None where the run's
        # components run elsewhere (Kubeflow): the gate then checks ExampleGen's record alone.
        'input_files': ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {'anomalies': ChannelParameter(type=standard_artifacts.ExampleAnomalies),
              # DriftCheck's anomalies (newest span against the previous one), when there are spans.
              'drift': ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
              # The examples of every ExampleGen: each records the files it read, as it read
              # them. Those trained on, and the previous span's that DriftCheck compared with
              # (apart: Kubeflow compiles only single channels, no union).
              'examples': ChannelParameter(type=standard_artifacts.Examples, optional=True),
              'drift_examples': ChannelParameter(type=standard_artifacts.Examples,
                                                 optional=True)}
    OUTPUTS = {}


class AnomalyGate(base_component.BaseComponent):
    """Fails the run, listing every anomaly, unless ``on_anomalies`` is 'warn'.

    Downstream components (Transform) depend on it, so nothing is trained or pushed from
    data that did not pass validation. It also fails, even on 'warn', when a file the run
    read (``examples``' records) was not the file the preflight checked (``input_files``) or
    changed since ExampleGen read it.
    """
    SPEC_CLASS = AnomalyGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, anomalies: types.BaseChannel, on_anomalies: str = 'fail',
                 drift: Optional[types.BaseChannel] = None,
                 examples: Optional[types.BaseChannel] = None,
                 drift_examples: Optional[types.BaseChannel] = None,
                 input_files: Optional[Dict[str, List[int]]] = None):
        if on_anomalies not in ('fail', 'warn'):
            raise ValueError(f"on_anomalies: expected 'fail' or 'warn', got {on_anomalies!r}")
        super().__init__(spec=AnomalyGateSpec(
            anomalies=anomalies, on_anomalies=on_anomalies, drift=drift, examples=examples,
            drift_examples=drift_examples,
            input_files=json.dumps(input_files, sort_keys=True) if input_files else None))
