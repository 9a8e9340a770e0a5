"""FastCsvExampleGen: a drop-in for CsvExampleGen that reads CSV with pyarrow, without Beam.

Same spec, inputs, outputs and driver as ``CsvExampleGen`` (``FileBasedExampleGen``: spans,
input fingerprint for the cache, input/output split configs), so everything downstream sees
the same ``Examples`` artifact. Only the executor differs; see ``executor.py`` for what
"the same" means and why it is faster.
"""
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec

from components.fast_csv_example_gen import executor


class FastCsvExampleGen(FileBasedExampleGen):
    """``FastCsvExampleGen(input_base=..., output_config=...)``, as ``CsvExampleGen``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
