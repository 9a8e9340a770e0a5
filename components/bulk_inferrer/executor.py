"""BulkInferrer's executor: the predict command's Beam job on the run's pushed model.

The model is the PushedModel artifact's copy (the Pusher copies the pushed version into it).
A run that pushed nothing scores nothing: the artifact records ``skipped`` and why. The files
are ``infer_dir``'s CSV files (sorted; read as the run reads its data); a file without a column the model takes fails the node,
naming the file and the column; bad rows go to the rejects file as in ``predict``. Beam runs
with the pipeline's Beam arguments.
"""
import json
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components import batch_inference
from components.csv_format import CsvFormat, is_csv_name

PREDICTIONS = 'predictions'
SUMMARY_FILE = 'summary.json'


def csv_files(directory: str) -> List[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if is_csv_name(n)) if os.path.isdir(directory) else []


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        pushed = artifact_utils.get_single_instance(input_dict['pushed_model'])
        result = artifact_utils.get_single_instance(output_dict['inference_result'])
        summary: Dict[str, Any]
        if not pushed.get_int_custom_property('pushed'):
            summary = {'skipped': 'this run pushed no model'}
        else:
            files = csv_files(exec_properties['infer_dir'])
            if not files:
                raise ValueError(f'inference.infer_dir: no CSV files in '
                                 f'{exec_properties["infer_dir"]}')
            features = json.loads(exec_properties['features'])
            keep = tuple(json.loads(exec_properties['keep']))
            fmt = CsvFormat.from_exec_properties(exec_properties)
            job = batch_inference.Job(
                model_path=pushed.uri, files=tuple(files),
                file_names=tuple(os.path.basename(f) for f in files), features=features,
                output=os.path.join(result.uri, f'{PREDICTIONS}.{exec_properties["output_format"]}'),
                keep=keep, delimiter=exec_properties['delimiter'], encoding=fmt.encoding,
                na_values=fmt.na_values)
            batch_inference.check_inputs(job)
            summary = batch_inference.run(job, self._beam_pipeline_args)
            summary['version'] = pushed.get_string_custom_property('pushed_version')
            result.set_int_custom_property('rows', summary['rows'])
            result.set_int_custom_property('rejected', summary['rejected'])
        os.makedirs(result.uri, exist_ok=True)
        with open(os.path.join(result.uri, SUMMARY_FILE), 'w', encoding='utf-8') as f:
            json.dump(summary, f, indent=2)
        logging.info('BulkInferrer: %s', summary)


def read_summary(artifact: types.Artifact) -> Dict[str, Any]:
    with open(os.path.join(artifact.uri, SUMMARY_FILE), encoding='utf-8') as f:
        return json.load(f)
