"""FastEvaluator: TFX's Evaluator, with a small eval split evaluated in memory, without Beam.

Same spec, inputs, outputs and options as ``Evaluator``, so the Pusher, the report and
``tfma.load_eval_result`` read the same ``ModelEvaluation`` and ``ModelBlessing``
artifacts. Only the executor differs; see ``executor.py`` for when it skips Beam and
``in_memory.py`` for how it computes what TFMA computes. One input more, optional:
``tflite_model`` (TFX's TFLite layout, a ``tflite`` file beside the SavedModel), evaluated
too with TFMA's ``model_type='tf_lite'`` and gated on the same value thresholds
(``executor.gate_tflite``).
"""
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator.component import Evaluator
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from components.fast_evaluator import executor


class FastEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    INPUTS = {**standard_component_specs.EvaluatorSpec.INPUTS,
              executor.TFLITE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model,
                                                          optional=True)}


class FastEvaluator(Evaluator):
    """``FastEvaluator(examples=..., model=..., eval_config=...)``, as ``Evaluator``, plus
    ``tflite_model``."""

    SPEC_CLASS = FastEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 eval_config: tfma.EvalConfig,
                 baseline_model: Optional[types.BaseChannel] = None,
                 example_splits: Optional[List[str]] = None,
                 tflite_model: Optional[types.BaseChannel] = None):
        base_component.BaseComponent.__init__(self, spec=FastEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            tflite_model=tflite_model, eval_config=eval_config,
            example_splits=json_utils.dumps(example_splits),
            fairness_indicator_thresholds=json_utils.dumps(None),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
