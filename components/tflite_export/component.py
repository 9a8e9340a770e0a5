"""TFLiteExport's spec and component class."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.tflite_export.executor import Executor


class TFLiteExportSpec(types.ComponentSpec):
    PARAMETERS = {
        # 'none', or 'dynamic_range' (weights as int8; tf.lite.Optimize.DEFAULT).
        'quantization': ExecutionParameter(type=str),
        # The TFLite model's outputs may differ from the SavedModel's by at most this much
        # (absolute) on the eval examples checked, or the export fails.
        'tolerance': ExecutionParameter(type=float),
        # Eval examples compared (the first this many).
        'num_examples': ExecutionParameter(type=int),
    }
    INPUTS = {'model': ChannelParameter(type=standard_artifacts.Model),
              'examples': ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {'exported_model': ChannelParameter(type=standard_artifacts.Model),
               # TFX's TFLite layout (TFX's rewriter, TFMA's tf_lite model type): the same
               # SavedModel with the TFLite model as a file named ``tflite`` beside it. What
               # the Evaluator gates with export.tflite_gate; not pushed.
               'tflite_model': ChannelParameter(type=standard_artifacts.Model)}


class TFLiteExport(base_component.BaseComponent):
    """The Trainer's SavedModel, unchanged, with ``assets.extra/model.tflite`` and
    ``assets.extra/model_tflite.json`` added (TF Serving ignores ``assets.extra``). The
    Pusher pushes this artifact. See ``executor.py``."""
    SPEC_CLASS = TFLiteExportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 quantization: str = 'none', tolerance: float = 1e-5, num_examples: int = 1000):
        super().__init__(spec=TFLiteExportSpec(
            model=model, examples=examples, quantization=quantization,
            tolerance=float(tolerance), num_examples=num_examples,
            exported_model=types.Channel(type=standard_artifacts.Model),
            tflite_model=types.Channel(type=standard_artifacts.Model)))
