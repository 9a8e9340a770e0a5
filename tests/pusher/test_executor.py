"""The Pusher publishes each model once, whole, as its last step, and cleans up after a
push that died; on tiny SavedModels and real TFX artifacts."""
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.pusher import executor as pusher

TIME_VERSION = 1_000_000_000  # every version pushed here is a Unix time after this


def saved_model(tmp_path, name, value):
    """A Model artifact holding a real (tiny) SavedModel that returns ``value``."""
    module = tf.Module()
    module.value = tf.Variable(value)
    module.f = tf.function(lambda: module.value, input_signature=[])
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / name)
    tf.saved_model.save(module, os.path.join(model.uri, 'Format-Serving'))
    return model


def push(tmp_path, model, serving, name, output_uri=''):
    """One execution of the Pusher, as TFX runs it: a blessed model, a new output artifact."""
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / f'blessing-{name}')
    blessing.set_int_custom_property('blessed', 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = output_uri or str(tmp_path / f'pushed-{name}')
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving)))
    pusher.Executor().Do(
        {standard_component_specs.MODEL_KEY: [model],
         standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)})
    return pushed


def versions(serving):
    return sorted(n for n in os.listdir(serving) if not n.startswith('.'))


def test_a_rerun_after_a_death_between_publishing_and_recording_adopts_the_version(tmp_path):
    """The run published the version and died before TFX recorded the push: ML Metadata
    knows no push, so the rerun's Pusher runs again, on the same model. It must not publish
    the model a second time."""
    serving = tmp_path / 'serving'
    model = saved_model(tmp_path, 'model', 1.0)
    first = push(tmp_path, model, serving, 'first')
    [version] = versions(serving)
    assert first.get_string_custom_property('pushed_version') == version
    assert int(version) > TIME_VERSION
    # What the version says it holds, and that TF Serving's layout still loads.
    with open(serving / version / pusher.MARKER, encoding='utf-8') as f:
        marker = json.load(f)
    assert marker['model_digest'] == pusher.model_digest(os.path.join(model.uri, 'Format-Serving'))
    assert tf.saved_model.load(str(serving / version)).f().numpy() == 1.0

    rerun = push(tmp_path, model, serving, 'rerun')  # the first push was never recorded
    assert versions(serving) == [version]
    assert rerun.get_int_custom_property('pushed') == 1
    assert rerun.get_string_custom_property('pushed_version') == version
    assert rerun.get_string_custom_property('pushed_destination') == str(serving / version)


def test_a_push_that_fails_before_publishing_publishes_nothing(tmp_path):
    serving = tmp_path / 'serving'
    model = saved_model(tmp_path, 'model', 1.0)
    blocked = tmp_path / 'blocked'
    blocked.write_text('a file where the PushedModel artifact directory has to go')
    with pytest.raises(Exception):  # copying the model into the PushedModel artifact fails
        push(tmp_path, model, serving, 'blocked', output_uri=str(blocked / 'pushed'))
    assert not serving.exists() or versions(serving) == []
    push(tmp_path, model, serving, 'retry')
    assert len(versions(serving)) == 1


def test_another_model_or_one_no_longer_served_is_published_anew(tmp_path):
    serving = tmp_path / 'serving'
    a, b = saved_model(tmp_path, 'a', 1.0), saved_model(tmp_path, 'b', 2.0)
    va = push(tmp_path, a, serving, 'a').get_string_custom_property('pushed_version')
    vb = push(tmp_path, b, serving, 'b').get_string_custom_property('pushed_version')
    assert int(vb) > int(va)
    # a again (say, blessed again after b was rolled back): serving must move to it, so it
    # gets a new version rather than adopting the old one behind b.
    again = push(tmp_path, a, serving, 'a-again').get_string_custom_property('pushed_version')
    assert int(again) > int(vb) and versions(serving) == sorted([va, vb, again])
    assert tf.saved_model.load(str(serving / again)).f().numpy() == 1.0


def test_staging_left_by_a_dead_push_is_removed_and_a_live_ones_kept(tmp_path):
    serving = tmp_path / 'serving'
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True, check=True)
    stale = serving / f'.tmp-1700000000-{dead.stdout.strip()}'
    live = serving / f'.tmp-1700000001-{os.getppid()}'
    for staging in (stale, live):
        (staging / 'variables').mkdir(parents=True)
        (staging / 'saved_model.pb').write_bytes(b'half written')
    push(tmp_path, saved_model(tmp_path, 'model', 1.0), serving, 'next')
    assert not stale.exists()
    assert live.exists()  # its process may still be copying
    assert len(versions(serving)) == 1
