"""FastCsvExampleGen: a drop-in for CsvExampleGen that reads CSV with pyarrow, without Beam.

Same inputs, outputs and driver as ``CsvExampleGen`` (``FileBasedExampleGen``: spans,
input fingerprint for the cache, input/output split configs), so everything downstream sees
the same ``Examples`` artifact. Its spec adds how the files are read
(``components/csv_format.py``): ``delimiter``, ``encoding`` and ``na_values`` (a JSON list),
exec properties like the others, so they are recorded in ML Metadata and part of the cache
key. Unset, the files are read as CsvExampleGen reads them: commas, UTF-8, only empty cells
missing. ``label``: the column without which a row is left out (the training data's label). The executor differs; see ``executor.py`` for what "the same" means and why it is
faster.
"""
from typing import Optional

from tfx.components.example_gen import utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import channel, component_spec, standard_artifacts, standard_component_specs

from components.csv_format import CsvFormat
from components.fast_csv_example_gen import executor


class FastCsvExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = dict(
        standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        **{key: component_spec.ExecutionParameter(type=str, optional=True)
           for key in [*CsvFormat().exec_properties(), executor.LABEL_KEY]})


class FastCsvExampleGen(FileBasedExampleGen):
    """``FastCsvExampleGen(input_base=..., output_config=..., csv_format=CsvFormat(...))``."""

    SPEC_CLASS = FastCsvExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base: Optional[str] = None, input_config=None, output_config=None,
                 range_config=None, csv_format: Optional[CsvFormat] = None,
                 label: Optional[str] = None):
        # FileBasedExampleGen.__init__ builds its own spec; this is the same, with the format.
        input_config = input_config or utils.make_default_input_config()
        spec = FastCsvExampleGenSpec(
            input_base=input_base, input_config=input_config,
            output_config=output_config or utils.make_default_output_config(input_config),
            range_config=range_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            examples=channel.Channel(type=standard_artifacts.Examples),
            **(csv_format or CsvFormat()).exec_properties(), **{executor.LABEL_KEY: label})
        base_component.BaseComponent.__init__(self, spec=spec)
