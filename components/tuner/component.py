"""The Tuner node: TFX's Tuner component, run by this package's executor."""
from tfx.components.tuner import component as tfx_tuner
from tfx.dsl.components.base import executor_spec

from components.tuner.executor import Executor


class Tuner(tfx_tuner.Tuner):
    """TFX's Tuner (same spec, inputs and outputs: ``best_hyperparameters`` for the
    Trainer, ``tuner_results``), with an executor that also records each trial's time and
    outcome and that works for every KerasTuner algorithm (``executor.write_results``)."""
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
