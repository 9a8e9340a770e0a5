"""Executor of FastEvaluator: TFMA's evaluation of a small eval split, in this process.

TFX's Evaluator runs ``tfma.ExtractEvaluateAndWriteResults`` in a Beam pipeline. Up to
``MAX_ROWS`` eval rows, with an eval config whose every option ``in_memory.unsupported``
accepts (TFX's defaults and this pipeline's config: signature models, plain slices, value
and change thresholds), this executor reads the examples as TFX's Evaluator does (TFXIO
record batches with the serialized examples beside the columns), runs TFMA's own
extractors, metric computations, validation and result conversion on them without Beam
(``in_memory.py``), writes the same files, and blesses or not as TFX does. Each model
(candidate, baseline) is loaded once, and every batch goes through both.

Anything else goes to TFX's executor unchanged: a legacy ``feature_slicing_spec``,
fairness indicators, a module (custom extractors or model loader), a schema input, more
rows than ``MAX_ROWS``, or an option TFMA's Beam path alone implements.

Why: at the bundled data's size (~3,000 eval rows) Beam's fixed cost (building and running
TFMA's ~200-stage pipeline) is most of the Evaluator's time (docs/performance.md).
"""
import os
from typing import Any, Dict, List, Optional

from absl import logging
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.util import tfxio_utils
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs
from tfx.utils import io_utils, json_utils, path_utils, proto_utils
from tfx_bsl.tfxio import dataset_options

from components.fast_evaluator import in_memory

# With Beam's local runner (the default), every evaluation that ``in_memory`` supports runs
# in memory, whatever its size: on this machine it took 0.15 of TFMA's CPU time with Beam
# at 20k and at 200k eval rows (docs/performance.md), and it holds one batch at a time.
# With another runner (Dataflow, Flink, Spark: the user wants the work spread), only up to
# this many eval rows, the largest size measured here (~50 s with a baseline).
MAX_ROWS = 200_000
LOCAL_RUNNERS = ('', 'DirectRunner', 'direct', 'SwitchingDirectRunner',
                 'BundleBasedDirectRunner')
# Rows per batch read, predicted (each model) and evaluated. TFMA under Beam gets batches
# of at most 1,000 rows (tfx_bsl's BatchElements cap).
BATCH_ROWS = 10_000
# The optional input: a TFLite model in TFX's layout (``tflite`` beside the SavedModel).
TFLITE_MODEL_KEY = 'tflite_model'
# Its evaluation, under the Evaluator's output (``tfma.load_eval_result`` reads it).
TFLITE_EVALUATION = 'tflite'
TFLITE_EXTRACTORS = 'components.tflite_export.evaluation'


def eval_config_of(exec_properties: Dict[str, Any], has_baseline: bool):
    """The eval config as TFX's Evaluator completes it (None for a legacy slicing spec)."""
    if not exec_properties.get(specs.EVAL_CONFIG_KEY):
        return None
    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(exec_properties[specs.EVAL_CONFIG_KEY], eval_config)
    # rubber_stamp: change thresholds are ignored without a baseline, as in TFX's executor.
    eval_config = tfma.utils.update_eval_config_with_defaults(
        eval_config, has_baseline=has_baseline, rubber_stamp=True)
    tfma.utils.verify_eval_config(eval_config)
    return eval_config


def example_splits(exec_properties: Dict[str, Any]) -> List[str]:
    return json_utils.loads(exec_properties.get(specs.EXAMPLE_SPLITS_KEY, 'null')) or ['eval']


def split_files(examples: List[types.Artifact], split: str) -> List[str]:
    return [f for uri in artifact_utils.get_split_uris(examples, split)
            for f in tf.io.gfile.glob(io_utils.all_files_pattern(uri))]


def count_rows(examples: List[types.Artifact], splits: List[str], limit: int) -> int:
    """Records in the splits' files, counting stops past ``limit`` (they are gzipped
    TFRecords: reading them is the only exact count; ~0.5 M records/s)."""
    rows = 0
    for split in splits:
        for path in split_files(examples, split):
            compression = 'GZIP' if path.endswith('.gz') else ''
            for _ in tf.compat.v1.io.tf_record_iterator(
                    path, tf.compat.v1.io.TFRecordOptions(compression)):
                rows += 1
                if rows > limit:
                    return rows
    return rows


def model_path(model: types.Artifact) -> str:
    return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


def beam_runner(beam_pipeline_args: List[str]) -> str:
    """The ``--runner`` the Beam arguments name ('' for none: Beam's default, direct)."""
    runner = ''
    for i, arg in enumerate(beam_pipeline_args):
        if arg.startswith('--runner='):
            runner = arg.split('=', 1)[1]
        elif arg == '--runner' and i + 1 < len(beam_pipeline_args):
            runner = beam_pipeline_args[i + 1]
    return runner


def not_in_memory(input_dict: Dict[str, List[types.Artifact]],
                  exec_properties: Dict[str, Any],
                  beam_pipeline_args: List[str] = ()) -> Optional[str]:
    """Why TFX's Beam executor must run this evaluation (None: it can run here)."""
    if not exec_properties.get(specs.EVAL_CONFIG_KEY):
        return 'a feature slicing spec instead of an eval config'
    if json_utils.loads(exec_properties.get(specs.FAIRNESS_INDICATOR_THRESHOLDS_KEY, 'null')):
        return 'fairness indicators'
    if exec_properties.get(specs.MODULE_FILE_KEY) or exec_properties.get(specs.MODULE_PATH_KEY):
        return 'a module'
    if input_dict.get(specs.SCHEMA_KEY):
        return 'a schema'
    if not input_dict.get(specs.MODEL_KEY):
        return 'no model'
    examples, splits = input_dict[specs.EXAMPLES_KEY], example_splits(exec_properties)
    if not count_rows(examples, splits, 0):
        return 'no rows'
    runner = beam_runner(list(beam_pipeline_args))
    if runner not in LOCAL_RUNNERS:
        if count_rows(examples, splits, MAX_ROWS) > MAX_ROWS:
            return f'more than {MAX_ROWS} rows, with the {runner}'
    return None


class Executor(evaluator_executor.Executor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self.evaluate({k: v for k, v in input_dict.items() if k != TFLITE_MODEL_KEY},
                      output_dict, exec_properties)
        if input_dict.get(TFLITE_MODEL_KEY):
            self.gate_tflite(input_dict, output_dict, exec_properties)

    def gate_tflite(self, input_dict, output_dict, exec_properties) -> None:
        """The TFLite model evaluated by TFMA (``model_type='tf_lite'``: TFMA's Beam path,
        which alone runs TFLite models; the transformed label comes from the SavedModel
        beside it) into ``<evaluation>/tflite``, on the same metrics, slices and value
        thresholds as the SavedModel; change thresholds are left out (a TFLite baseline may
        not exist; TFMA cannot mix TFLite and other models). The blessing stays blessed only
        if both pass: custom property ``tflite_blessed`` says how the TFLite model did."""
        blessing = artifact_utils.get_single_instance(output_dict[specs.BLESSING_KEY])
        if not blessing.has_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY):
            logging.info('TFLite model: no thresholds, not validated.')
            return
        evaluation = standard_artifacts.ModelEvaluation()
        evaluation.uri = os.path.join(
            artifact_utils.get_single_uri(output_dict[specs.EVALUATION_KEY]), TFLITE_EVALUATION)
        tflite_blessing = standard_artifacts.ModelBlessing()
        tflite_blessing.uri = os.path.join(evaluation.uri, 'blessing')
        for uri in (evaluation.uri, tflite_blessing.uri):
            tf.io.gfile.makedirs(uri)
        properties = dict(exec_properties)
        properties[specs.EVAL_CONFIG_KEY] = proto_utils.proto_to_json(
            tflite_eval_config(exec_properties))
        properties[specs.MODULE_PATH_KEY] = TFLITE_EXTRACTORS  # rows with missing values
        super().Do({specs.EXAMPLES_KEY: input_dict[specs.EXAMPLES_KEY],
                    specs.MODEL_KEY: input_dict[TFLITE_MODEL_KEY]},
                   {specs.EVALUATION_KEY: [evaluation], specs.BLESSING_KEY: [tflite_blessing]},
                   properties)
        ok = bool(tflite_blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY))
        blessing.set_int_custom_property('tflite_blessed', int(ok))
        if not ok and blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY):
            tf.io.gfile.remove(os.path.join(blessing.uri, constants.BLESSED_FILE_NAME))
            io_utils.write_string_file(
                os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), '')
            blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                             constants.NOT_BLESSED_VALUE)
        logging.info('TFLite model blessed: %s (%s).', ok, evaluation.uri)

    def evaluate(self, input_dict: Dict[str, List[types.Artifact]],
                 output_dict: Dict[str, List[types.Artifact]],
                 exec_properties: Dict[str, Any]) -> None:
        why = not_in_memory(input_dict, exec_properties, self._beam_pipeline_args)
        models = []
        if why is None:
            has_baseline = bool(input_dict.get(specs.BASELINE_MODEL_KEY))
            eval_config = eval_config_of(exec_properties, has_baseline)
            if len(eval_config.model_specs) > 2:
                raise ValueError(f'Cannot support more than two models. There are '
                                 f'{len(eval_config.model_specs)} models in this eval_config.')
            for spec in eval_config.model_specs:
                key = specs.BASELINE_MODEL_KEY if spec.is_baseline else specs.MODEL_KEY
                models.append(tfma.default_eval_shared_model(
                    eval_saved_model_path=model_path(
                        artifact_utils.get_single_instance(input_dict[key])),
                    model_name=spec.name, eval_config=eval_config))
            why = in_memory.unsupported(eval_config, models)
        if why is not None:
            logging.info('Evaluator: TFMA with Beam (%s).', why)
            return super().Do(input_dict, output_dict, exec_properties)

        output_uri = artifact_utils.get_single_uri(output_dict[specs.EVALUATION_KEY])
        rows = in_memory.evaluate(eval_config, models, self.record_batches(input_dict, exec_properties),
                                  output_uri)
        logging.info('Evaluation of %d rows (in memory) written to %s.', rows, output_uri)
        if tfma.metrics.metric_thresholds_from_metrics_specs(
                eval_config.metrics_specs, eval_config=eval_config):
            write_blessing(input_dict, output_dict, exec_properties, output_uri)
        else:  # As TFX: no threshold, no validation (never bless by accident).
            logging.info('No threshold configured, will not validate model.')

    @staticmethod
    def record_batches(input_dict, exec_properties):
        """The eval splits' record batches, as TFX's Evaluator reads them for TFMA."""
        factory = tfxio_utils.get_tfxio_factory_from_artifact(
            examples=input_dict[specs.EXAMPLES_KEY], telemetry_descriptors=['Evaluator'],
            schema=None, raw_record_column_name=tfma.ARROW_INPUT_COLUMN)
        options = dataset_options.RecordBatchesOptions(
            batch_size=BATCH_ROWS, drop_final_batch=False, num_epochs=1, shuffle=False)
        for split in example_splits(exec_properties):
            for uri in artifact_utils.get_split_uris(input_dict[specs.EXAMPLES_KEY], split):
                yield from factory(io_utils.all_files_pattern(uri)).RecordBatches(options)


def tflite_eval_config(exec_properties: Dict[str, Any]):
    """The candidate's eval config for its TFLite model: ``model_type='tf_lite'``, the same
    label, preprocessing (the transformed label) and slices, value thresholds only."""
    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(exec_properties[specs.EVAL_CONFIG_KEY], eval_config)
    candidate = next(s for s in eval_config.model_specs if not s.is_baseline)
    candidate.model_type = tfma.TF_LITE
    candidate.ClearField('signature_name')
    del eval_config.model_specs[:]
    eval_config.model_specs.append(candidate)
    for metrics_spec in eval_config.metrics_specs:
        for metric in metrics_spec.metrics:
            metric.threshold.ClearField('change_threshold')
            for per_slice in metric.per_slice_thresholds:
                per_slice.threshold.ClearField('change_threshold')
            for cross in metric.cross_slice_thresholds:
                cross.threshold.ClearField('change_threshold')
    return eval_config


def write_blessing(input_dict, output_dict, exec_properties, output_uri: str) -> None:
    """The blessing, as TFX's Evaluator writes it from the validation result."""
    blessing = artifact_utils.get_single_instance(output_dict[specs.BLESSING_KEY])
    model = input_dict[specs.MODEL_KEY][0]
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                        model.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    if input_dict.get(specs.BASELINE_MODEL_KEY):
        baseline = input_dict[specs.BASELINE_MODEL_KEY][0]
        blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                            baseline.uri)
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY,
                                         baseline.id)
    if 'current_component_id' in exec_properties:
        blessing.set_string_custom_property('component_id',
                                            exec_properties['current_component_id'])
    ok = tfma.load_validation_result(output_uri).validation_ok
    name, value = ((constants.BLESSED_FILE_NAME, constants.BLESSED_VALUE) if ok
                   else (constants.NOT_BLESSED_FILE_NAME, constants.NOT_BLESSED_VALUE))
    io_utils.write_string_file(os.path.join(blessing.uri, name), '')
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, value)
    logging.info('Blessing result %s written to %s.', ok, blessing.uri)
