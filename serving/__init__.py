"""A model server that speaks TensorFlow Serving's REST and gRPC APIs.

It serves the SavedModel versions the pipeline pushes (`<serving_dir>/<version>/`), picks up
new versions without a restart, and batches concurrent requests. Entry point:
`serving.server.main(argv)` or `python -m serving --serving-dir DIR --model-name NAME`.
"""

import os
import warnings

# google-api-core (which TensorFlow imports) warns at import that Python 3.10 is no longer
# supported by it; the pins choose 3.10 (TFX 1.15).
_PY310_WARNING = 'You are using a non-supported Python version'


def quiet_tensorflow() -> None:
    """Keeps library noise off the server's output, in this process and in those it starts
    (the forkserver and the model processes inherit the environment): TensorFlow's C++ lines
    at import (CUDA plugins that register twice on a machine without a GPU, at ERROR level)
    and google-api-core's FutureWarning. Call it before TensorFlow is imported. A user's own
    TF_CPP_MIN_LOG_LEVEL or PYTHONWARNINGS wins. A model's errors still reach the log: they
    are Python exceptions."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    os.environ.setdefault('PYTHONWARNINGS', f'ignore:{_PY310_WARNING}:FutureWarning')
    warnings.filterwarnings('ignore', message=_PY310_WARNING, category=FutureWarning)
