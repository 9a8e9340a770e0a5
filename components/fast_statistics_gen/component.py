"""FastStatisticsGen: TFX's StatisticsGen, with small data computed in memory, without Beam.

Same spec, inputs, outputs and options as ``StatisticsGen``, so ExampleValidator, SchemaGen
and the drift check read the same ``ExampleStatistics`` artifact. Only the executor differs;
see ``executor.py`` for when it skips Beam and what "the same" means.
"""
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.dsl.components.base import executor_spec

from components.fast_statistics_gen import executor


class FastStatisticsGen(StatisticsGen):
    """``FastStatisticsGen(examples=..., stats_options=...)``, as ``StatisticsGen``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
