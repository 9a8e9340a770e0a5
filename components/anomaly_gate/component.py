"""AnomalyGate's spec and component class."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.anomaly_gate.executor import Executor


class AnomalyGateSpec(types.ComponentSpec):
    PARAMETERS = {
        # 'fail' stops the run on any anomaly; 'warn' records them and lets the run go on.
        'on_anomalies': ExecutionParameter(type=str),
    }
    INPUTS = {'anomalies': ChannelParameter(type=standard_artifacts.ExampleAnomalies)}
    OUTPUTS = {}


class AnomalyGate(base_component.BaseComponent):
    """Fails the run, listing every anomaly, unless ``on_anomalies`` is 'warn'.

    Downstream components (Transform) depend on it, so nothing is trained or pushed from
    data that did not pass validation.
    """
    SPEC_CLASS = AnomalyGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, anomalies: types.BaseChannel, on_anomalies: str = 'fail'):
        if on_anomalies not in ('fail', 'warn'):
            raise ValueError(f"on_anomalies: expected 'fail' or 'warn', got {on_anomalies!r}")
        super().__init__(spec=AnomalyGateSpec(anomalies=anomalies, on_anomalies=on_anomalies))
