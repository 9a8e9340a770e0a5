"""Pusher executor: each model appears in the serving directory once, whole, as the last step.

TFX's filesystem Pusher copies files straight into ``<base>/<unix time>/``, so a model server
polling the directory can see a half-written version, and two pushes in the same second
collide. Here the model is copied to a hidden sibling directory (``.tmp-<version>-<pid>``,
which TF Serving ignores because the name is not an integer) and then renamed into place in
one step. The version is the Unix time, or one more than the newest existing version if
that is later (``components.model_versions``: ASCII digits only). Earlier versions are never
touched.

The rename is the executor's last action: the copy TFX keeps in the PushedModel artifact is
written before it. TFX records the push in ML Metadata only after the executor returns, so
a run that dies in between leaves a published version that ML Metadata does not know, and
the rerun's Pusher runs again with the same model. Each version therefore names the model
it holds (``pushed_model.json``: the sha256 of the model's files, and the artifact it came
from), and a push whose model is the one the newest version holds adopts that version
instead of publishing another. Only the newest: a model that is no longer the one served
(another was pushed after it) is published again as a new version, so serving moves to it.
Staging directories left by a push that died (``.tmp-*`` whose process is gone) are
removed before each push.
"""
import hashlib
import json
import os
import shutil
import time
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import warmup
from components.model_versions import version_number

MARKER = 'pushed_model.json'
STAGING = '.tmp-'


def model_digest(model_dir: str) -> str:
    """sha256 over the relative path and bytes of every file of a SavedModel directory."""
    h = hashlib.sha256()
    for directory, dirs, names in os.walk(model_dir):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(directory, name)
            h.update(os.path.relpath(path, model_dir).encode() + b'\0')
            with open(path, 'rb') as f:
                for block in iter(lambda: f.read(1 << 20), b''):
                    h.update(block)
    return h.hexdigest()


def versions(base_dir: str) -> List[int]:
    names = os.listdir(base_dir) if os.path.isdir(base_dir) else []
    return sorted(v for v in map(version_number, names) if v is not None)


def next_version(base_dir: str) -> int:
    return max([int(time.time())] + [v + 1 for v in versions(base_dir)])


def pushed_digest(version_dir: str) -> Optional[str]:
    """The model digest a version's marker names (None: no marker, e.g. pushed by hand)."""
    try:
        with open(os.path.join(version_dir, MARKER), encoding='utf-8') as f:
            return json.load(f).get('model_digest')
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_staging(base_dir: str) -> List[str]:
    """Removes ``.tmp-<version>-<pid>`` directories whose process is gone; returns them."""
    removed = []
    for name in os.listdir(base_dir):
        pid = name.rsplit('-', 1)[-1]
        if name.startswith(STAGING) and pid.isascii() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(base_dir, name), ignore_errors=True)
            removed.append(name)
    return removed


def publish(model_dir: str, base_dir: str, source: str = '', prepare=None) -> Tuple[str, bool]:
    """Publishes a SavedModel as ``base_dir/<version>``, atomically, unless the newest
    version holds the same model already. Returns (version, adopted). ``prepare(copy)``
    adds files to the copy before it is published (the warmup requests)."""
    os.makedirs(base_dir, exist_ok=True)
    for name in remove_stale_staging(base_dir):
        logging.info('Removed %s, left by a push that did not finish', name)
    digest = model_digest(model_dir)
    existing = versions(base_dir)
    if existing and pushed_digest(os.path.join(base_dir, str(existing[-1]))) == digest:
        return str(existing[-1]), True
    version = next_version(base_dir)
    staging = os.path.join(base_dir, f'{STAGING}{version}-{os.getpid()}')
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(model_dir, staging)
        with open(os.path.join(staging, MARKER), 'w', encoding='utf-8') as f:
            json.dump({'model_digest': digest, 'model': source,
                       'pushed_at': time.strftime('%Y-%m-%dT%H:%M:%S%z')}, f, indent=1)
        if prepare is not None:
            prepare(staging)
        while True:
            try:
                os.rename(staging, os.path.join(base_dir, str(version)))
                return str(version), False
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
        # Everything this executor writes besides the version comes first...
        io_utils.copy_dir(model_path, model_push.uri)
        # ... and publishing is the last step (see the module docstring).
        version, adopted = publish(model_path, base_dir, source=model_path,
                                   prepare=warmup.writer(input_dict))
        serving_path = os.path.join(base_dir, version)
        logging.info('Model %s %s', 'already published as' if adopted else 'pushed to',
                     serving_path)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
