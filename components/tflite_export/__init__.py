"""TFLiteExport: the model as TFLite beside the SavedModel, checked against it."""
from components.tflite_export.component import TFLiteExport  # noqa: F401
