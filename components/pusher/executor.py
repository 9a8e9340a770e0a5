"""Pusher executor: a new version appears whole, or not at all.

TFX's filesystem Pusher copies files straight into ``<base>/<unix time>/``, so a model server
polling the directory can see a half-written version, and two pushes in the same second
collide. Here the model is copied to a hidden sibling directory (``.tmp-<version>``, which
TF Serving ignores because the name is not an integer) and then renamed into place in one
step. The version is the Unix time, or one more than the newest existing version if that is
later. Earlier versions are never touched.
"""
import os
import shutil
import time
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import warmup
from components.model_versions import version_number


def next_version(base_dir: str) -> int:
    names = os.listdir(base_dir) if os.path.isdir(base_dir) else []
    existing = [v for v in map(version_number, names) if v is not None]
    return max([int(time.time())] + [v + 1 for v in existing])


def publish(model_dir: str, base_dir: str, prepare=None) -> str:
    """Copies a SavedModel to ``base_dir/<version>`` atomically; returns the version.
    ``prepare(copy)`` adds files to the copy before it is published (the warmup file)."""
    os.makedirs(base_dir, exist_ok=True)
    version = next_version(base_dir)
    staging = os.path.join(base_dir, f'.tmp-{version}-{os.getpid()}')
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(model_dir, staging)
        if prepare is not None:
            prepare(staging)
        while True:
            try:
                os.rename(staging, os.path.join(base_dir, str(version)))
                return str(version)
            except OSError:  # another push took this version meanwhile
                if not os.path.exists(os.path.join(base_dir, str(version))):
                    raise
                version += 1
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Executor(tfx_pusher.Executor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base_dir = destination.filesystem.base_directory
        if '://' in base_dir:  # object stores (Kubeflow: gs://) have no atomic rename
            return super().Do(input_dict, output_dict, exec_properties)
        model_path = self.GetModelPath(input_dict)
        version = publish(model_path, base_dir, warmup.writer(input_dict))
        serving_path = os.path.join(base_dir, version)
        logging.info('Model pushed to %s', serving_path)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
