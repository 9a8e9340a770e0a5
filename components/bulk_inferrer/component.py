"""BulkInferrer's spec and component class."""
import json
from typing import Dict, List, Sequence

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.bulk_inferrer.executor import Executor
from components.csv_format import CsvFormat


class BulkInferrerSpec(types.ComponentSpec):
    PARAMETERS = {
        'infer_dir': ExecutionParameter(type=str),
        # JSON {feature: float|int|string}: the feature plan's raw features.
        'features': ExecutionParameter(type=str),
        'output_format': ExecutionParameter(type=str),  # csv or parquet
        'keep': ExecutionParameter(type=str),  # JSON list of input columns copied over
        # JSON {path: [size, mtime_ns]} of the files: new or changed files rerun the node.
        'input_files': ExecutionParameter(type=str),
        # How the files are read (components/csv_format.CsvFormat.exec_properties); an
        # empty delimiter is detected in each file.
        'delimiter': ExecutionParameter(type=str),
        'encoding': ExecutionParameter(type=str),
        'na_values': ExecutionParameter(type=str),
    }
    INPUTS = {'pushed_model': ChannelParameter(type=standard_artifacts.PushedModel)}
    OUTPUTS = {'inference_result': ChannelParameter(type=standard_artifacts.InferenceResult)}


class BulkInferrer(base_beam_component.BaseBeamComponent):
    """Scores ``infer_dir``'s CSV files with the model this run pushed (nothing when it
    pushed none), with the predict command's Beam job (components/batch_inference.py), and
    records ``predictions.<format>`` and ``predictions.rejects.csv`` as an InferenceResult."""
    SPEC_CLASS = BulkInferrerSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, pushed_model: types.BaseChannel, infer_dir: str,
                 features: Dict[str, str], input_files: Dict[str, List[int]],
                 csv: CsvFormat, output_format: str = 'csv', keep: Sequence[str] = ()):
        reading = csv.exec_properties()
        if csv.detected:
            reading['delimiter'] = ''
        super().__init__(spec=BulkInferrerSpec(**reading,
            pushed_model=pushed_model, infer_dir=infer_dir,
            features=json.dumps(features, sort_keys=True), output_format=output_format,
            keep=json.dumps(list(keep)), input_files=json.dumps(input_files, sort_keys=True),
            inference_result=types.Channel(type=standard_artifacts.InferenceResult)))
