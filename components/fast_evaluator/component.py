"""FastEvaluator: TFX's Evaluator, with a small eval split evaluated in memory, without Beam.

Same spec, inputs, outputs and options as ``Evaluator``, so the Pusher, the report and
``tfma.load_eval_result`` read the same ``ModelEvaluation`` and ``ModelBlessing``
artifacts. Only the executor differs; see ``executor.py`` for when it skips Beam and
``in_memory.py`` for how it computes what TFMA computes.
"""
from tfx.components.evaluator.component import Evaluator
from tfx.dsl.components.base import executor_spec

from components.fast_evaluator import executor


class FastEvaluator(Evaluator):
    """``FastEvaluator(examples=..., model=..., eval_config=...)``, as ``Evaluator``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
