"""A small SavedModel with the pipeline's serving contract, for tests and the benchmark.

It has the signatures the pipeline exports: `serving_default` (serialized tf.Examples),
`serving_json` (one tensor per raw feature) and `transform_features`, over three raw features
shaped like the taxi data's. Weights come from a seed, so two seeds give two distinguishable
versions of one model.
"""

import os

import tensorflow as tf

from components.signatures import raw_features_from_json

FEATURES = {"trip_miles": tf.float32, "company": tf.string, "trip_start_hour": tf.int64}
COMPANIES = ["Flash Cab", "Sun Taxi", "Taxi Affiliation Services"]
CLASSES = ["cash", "card", "other"]
TASKS = ("binary", "multiclass", "regression")

# How serving_default parses an example: missing strings are "", missing floats NaN (as in the
# pipeline's contract); trip_start_hour has no default, so an example without it is refused.
# serving_json reads missing values through the pipeline's own code, so the two agree.
_PARSE_SPEC = {
    "trip_miles": tf.io.FixedLenFeature([], tf.float32, default_value=float("nan")),
    "company": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "trip_start_hour": tf.io.FixedLenFeature([], tf.int64),
}


class _DemoModel(tf.Module):
    def __init__(self, task: str, seed: int):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task = task
        tf.keras.utils.set_random_seed(seed)
        self.company_lookup = tf.keras.layers.StringLookup(vocabulary=COMPANIES, output_mode="one_hot")
        units = len(CLASSES) if task == "multiclass" else 1
        self.net = tf.keras.Sequential(
            [tf.keras.layers.Dense(8, activation="relu"), tf.keras.layers.Dense(units)]
        )
        self.net.build((None, 1 + len(COMPANIES) + 1 + 24))
        self.classes = tf.constant(CLASSES)

    def _transform(self, trip_miles, company, trip_start_hour):
        miles = tf.where(tf.math.is_nan(trip_miles), tf.zeros_like(trip_miles), trip_miles)
        return {
            "trip_miles_xf": tf.math.log1p(tf.maximum(miles, 0.0)),
            "company_xf": self.company_lookup(company),
            "trip_start_hour_xf": tf.one_hot(tf.clip_by_value(trip_start_hour, 0, 23), 24),
        }

    def _predict(self, trip_miles, company, trip_start_hour):
        xf = self._transform(trip_miles, company, trip_start_hour)
        x = tf.concat([xf["trip_miles_xf"][:, None], xf["company_xf"], xf["trip_start_hour_xf"]], axis=1)
        logits = self.net(x)
        if self.task == "binary":
            return {"probability": tf.sigmoid(logits[:, 0])}
        if self.task == "regression":
            return {"value": logits[:, 0]}
        batch = tf.shape(logits)[0]
        return {
            "probabilities": tf.nn.softmax(logits),
            "classes": tf.tile(self.classes[None, :], [batch, 1]),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        features = tf.io.parse_example(examples, _PARSE_SPEC)
        return self._predict(**features)

    @tf.function(
        input_signature=[tf.TensorSpec([None], dtype, name=name) for name, dtype in FEATURES.items()]
    )
    def serve_json(self, trip_miles, company, trip_start_hour):
        raw = dict(trip_miles=trip_miles, company=company, trip_start_hour=trip_start_hour)
        return self._predict(**raw_features_from_json(raw, _PARSE_SPEC))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        features = tf.io.parse_example(examples, _PARSE_SPEC)
        return self._transform(**features)


def write_model(path: str, task: str = "binary", seed: int = 0) -> str:
    """Writes a SavedModel for `task` ("binary", "multiclass" or "regression") to `path`."""
    model = _DemoModel(task, seed)
    tf.saved_model.save(
        model,
        path,
        signatures={
            "serving_default": model.serve_examples,
            "serving_json": model.serve_json,
            "transform_features": model.transform_features,
        },
    )
    return path


def push(serving_dir: str, version: int, task: str = "binary", seed: int = 0) -> str:
    """Writes version `version` the way the Pusher does: into a temporary directory, then renamed
    into place, so a server never sees half a version."""
    os.makedirs(serving_dir, exist_ok=True)
    final = os.path.join(serving_dir, str(version))
    tmp = os.path.join(serving_dir, f".tmp-{version}-{os.getpid()}")
    write_model(tmp, task, seed)
    os.rename(tmp, final)
    return final
