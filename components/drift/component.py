"""DriftCheck's spec and component class."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.drift.executor import Executor


class DriftCheckSpec(types.ComponentSpec):
    PARAMETERS = {
        # JSON: {"default_linf": x|null, "default_js": x|null, "per_feature": {name: x|null}}
        'thresholds': ExecutionParameter(type=str),
        # The split of both statistics that is compared.
        'split': ExecutionParameter(type=str),
    }
    INPUTS = {
        'statistics': ChannelParameter(type=standard_artifacts.ExampleStatistics),
        'previous_statistics': ChannelParameter(type=standard_artifacts.ExampleStatistics),
        'schema': ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {'anomalies': ChannelParameter(type=standard_artifacts.ExampleAnomalies)}


class DriftCheck(base_component.BaseComponent):
    """Writes the drift anomalies (only those) in ExampleValidator's format, for the gate."""
    SPEC_CLASS = DriftCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, statistics: types.BaseChannel, previous_statistics: types.BaseChannel,
                 schema: types.BaseChannel, thresholds: str, split: str = 'train'):
        super().__init__(spec=DriftCheckSpec(
            statistics=statistics, previous_statistics=previous_statistics, schema=schema,
            thresholds=thresholds, split=split,
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies)))
