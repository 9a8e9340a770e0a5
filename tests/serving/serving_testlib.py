"""Helpers shared by the model server's tests."""

import os
import shutil

import tensorflow as tf

from serving.server import ModelServer, ServerConfig

MODEL_NAME = "taxi"
MAX_REQUEST_BYTES = 256 * 1024  # small, so the size-limit test stays fast
MAX_INSTANCES = 500


def push_copy(model_path: str, serving_dir: str, version: int) -> str:
    """Pushes a built SavedModel as `version`, atomically (copy to a temp dir, then rename)."""
    os.makedirs(serving_dir, exist_ok=True)
    tmp = os.path.join(serving_dir, f".tmp-{version}")
    shutil.copytree(model_path, tmp)
    final = os.path.join(serving_dir, str(version))
    os.rename(tmp, final)
    return final


def start_server(serving_dir: str, **overrides) -> ModelServer:
    config = dict(
        serving_dir=serving_dir,
        model_name=MODEL_NAME,
        rest_port=0,
        grpc_port=0,
        poll_seconds=0.2,
        max_request_bytes=MAX_REQUEST_BYTES,
        max_instances=MAX_INSTANCES,
    )
    config.update(overrides)
    return ModelServer(ServerConfig(**config)).start()


class Reference:
    """Calls a SavedModel directly, to check what the server answers."""

    def __init__(self, path: str):
        self._model = tf.saved_model.load(path)

    def raw(self, rows: list[dict]) -> dict:
        fn = self._model.signatures["serving_json"]
        out = fn(
            trip_miles=tf.constant([r["trip_miles"] for r in rows], tf.float32),
            company=tf.constant([r["company"] for r in rows]),
            trip_start_hour=tf.constant([r["trip_start_hour"] for r in rows], tf.int64),
        )
        return {k: v.numpy() for k, v in out.items()}


ROWS = [
    {"trip_miles": 1.5, "company": "Sun Taxi", "trip_start_hour": 7},
    {"trip_miles": 12.0, "company": "Flash Cab", "trip_start_hour": 23},
    {"trip_miles": 0.2, "company": "Unknown Co", "trip_start_hour": 0},
]


def example_bytes(row: dict) -> bytes:
    feature = {
        "trip_miles": tf.train.Feature(float_list=tf.train.FloatList(value=[row["trip_miles"]])),
        "company": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["company"].encode()])),
        "trip_start_hour": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["trip_start_hour"]])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

