"""InfraValidator's spec and component class."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.infra_validator.executor import Executor


class InfraValidatorSpec(types.ComponentSpec):
    PARAMETERS = {
        # How many examples of the eval split each signature is asked about, per transport.
        'num_examples': ExecutionParameter(type=int),
        # From a server's start to the model's AVAILABLE status, at most this long.
        'load_timeout_seconds': ExecutionParameter(type=float),
        # 1: refuse the model unless tensorflow_model_server is on PATH; 0: use it when there.
        'require_tf_serving': ExecutionParameter(type=int),
        # The model's name in the servers' URLs and ModelSpecs.
        'model_name': ExecutionParameter(type=str),
    }
    INPUTS = {
        'model': ChannelParameter(type=standard_artifacts.Model),
        'examples': ChannelParameter(type=standard_artifacts.Examples),
        # The Evaluator's verdict: a model it did not bless is not worth a server start.
        'model_blessing': ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {'blessing': ChannelParameter(type=standard_artifacts.InfraBlessing)}


class InfraValidator(base_component.BaseComponent):
    """Serves the candidate with the product's model server (and TF Serving's, when on PATH),
    sends it eval examples over REST and gRPC on every signature, and writes TFX's
    ``InfraBlessing`` (custom property ``blessed``; ``reason`` says why when it is 0), which
    TFX's Pusher honours. See ``executor.py``."""
    SPEC_CLASS = InfraValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, model_name: str,
                 model_blessing: Optional[types.BaseChannel] = None, num_examples: int = 10,
                 load_timeout_seconds: float = 60.0, require_tf_serving: bool = False):
        super().__init__(spec=InfraValidatorSpec(
            model=model, examples=examples, model_blessing=model_blessing,
            num_examples=num_examples, load_timeout_seconds=float(load_timeout_seconds),
            require_tf_serving=int(require_tf_serving), model_name=model_name,
            blessing=types.Channel(type=standard_artifacts.InfraBlessing)))
