"""The Pusher's spec and component class: TFX's Pusher, plus the examples its warmup file is
made from (``components/warmup.py``)."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.proto import pusher_pb2
from tfx.utils import json_utils

from components.pusher.executor import Executor

EXAMPLES_KEY = 'examples'


class PusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {**standard_component_specs.PusherSpec.INPUTS,
              # Eval examples: the pushed version carries TF Serving's warmup file made from them.
              EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True)}


class Pusher(base_component.BaseComponent):
    """Publishes a blessed model atomically (``executor.publish``), with a warmup file."""
    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 push_destination: pusher_pb2.PushDestination,
                 examples: Optional[types.BaseChannel] = None,
                 infra_blessing: Optional[types.BaseChannel] = None):
        super().__init__(spec=PusherSpec(
            model=model, model_blessing=model_blessing, push_destination=push_destination,
            examples=examples, infra_blessing=infra_blessing,
            custom_config=json_utils.dumps(None),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
