"""The data-change guard wherever the data lives (components/input_files.py).

ExampleGen records the files it reads on its Examples artifact; the AnomalyGate compares
that record with the preflight's (where the run has one) and with the files as they are
when it runs. Tested on the real executors and tiny artifacts. ``ram://`` is TensorFlow's
in-memory filesystem: a real non-local filesystem, read through ``tf.io.gfile`` as a
``gs://`` file is, where ``open()`` and ``os.stat`` do not work.
"""
import json
import os
import uuid

import pytest
import tensorflow as tf
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import input_files
from components.anomaly_gate.executor import Executor as GateExecutor, InputChanged
from components.fast_csv_example_gen import executor as example_gen

CSV = 'fare,company,big_tipper\n1.5,A,0\n2.5,B,1\n3.5,A,0\n'


def ram_dir() -> str:
    return f'ram://guard-{uuid.uuid4().hex}'


def write(path: str, text: str) -> str:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, 'w') as f:
        f.write(text)
    return path


def append(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, 'r') as f:
        old = f.read()
    write(path, old + text)


def recorded_examples(data_root: str, out_uri: str):
    """An Examples artifact with the record ExampleGen's executor makes before it reads.

    The whole executor is run on local files; for remote ones only its recording step,
    since the executor reads CSV with pyarrow's local-file reader (see the report).
    """
    examples = standard_artifacts.Examples()
    examples.uri = out_uri
    example_gen.record_input_files([examples], data_root, example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name='single_split', pattern='*.csv')]))
    return examples


def run_example_gen(data_root: str, out_uri: str, pattern: str = '*.csv'):
    """FastCsvExampleGen's executor on ``data_root``; returns its Examples artifact."""
    examples = standard_artifacts.Examples()
    examples.uri = out_uri
    output = example_gen_pb2.Output()
    output.split_config.splits.add(name='train', hash_buckets=2)
    output.split_config.splits.add(name='eval', hash_buckets=1)
    example_gen.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, {
        standard_component_specs.INPUT_BASE_KEY: data_root,
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='single_split',
                                                                      pattern=pattern)])),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    })
    return examples


def clean_anomalies(uri: str):
    """An ExampleAnomalies artifact with no anomaly in either split, written at ``uri``."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = uri
    artifact.split_names = artifact_utils.encode_split_names(['train', 'eval'])
    for split in ('train', 'eval'):
        tf.io.gfile.makedirs(os.path.join(uri, f'Split-{split}'))
        with tf.io.gfile.GFile(os.path.join(uri, f'Split-{split}', 'SchemaDiff.pb'), 'wb') as f:
            f.write(anomalies_pb2.Anomalies().SerializeToString())
    return artifact


def gate(anomalies, examples=(), checked=None, on_anomalies='fail'):
    props = {'on_anomalies': on_anomalies}
    if checked is not None:
        props['input_files'] = json.dumps(checked)
    GateExecutor().Do({'anomalies': [anomalies], 'examples': list(examples)}, {}, props)


# ----------------------------------------------------------------------------------------
# ExampleGen's record

def test_example_gen_records_each_file_it_read_with_size_and_mtime(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'a.csv').write_text(CSV)
    (data / 'b.csv').write_text(CSV + '4.5,C,1\n')
    (data / 'notes.txt').write_text('not read')
    examples = run_example_gen(str(data), str(tmp_path / 'examples'))
    record = input_files.recorded(examples)
    assert record == {str(data / n): [os.stat(data / n).st_size, os.stat(data / n).st_mtime_ns]
                      for n in ('a.csv', 'b.csv')}
    # The record is a string property: Kubeflow carries it as artifact metadata unchanged
    # (a number there would be a double, which cannot hold a time in nanoseconds).
    assert json.loads(examples.get_string_custom_property(input_files.RECORD_PROPERTY)) == record


def test_the_record_names_remote_files_as_read_and_survives_kubeflows_metadata(tmp_path):
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as kfp_utils

    root = ram_dir()
    path = write(f'{root}/data/trips.csv', CSV)
    examples = recorded_examples(f'{root}/data', f'{root}/examples')
    assert input_files.recorded(examples) == {path: [len(CSV), tf.io.gfile.stat(path).mtime_nsec]}
    # Out of one container as executor output metadata, into the next as input metadata.
    out = kfp_utils.to_runtime_artifact(examples, {})
    out.type.instance_schema = 'title: tfx.Examples\ntype: object\n'
    [back] = kfp_utils.parse_raw_artifact_dict(
        {'examples': pipeline_spec_pb2.ArtifactList(artifacts=[out])})['examples']
    assert input_files.recorded(back) == input_files.recorded(examples)


# ----------------------------------------------------------------------------------------
# The gate, against the record

def test_gate_passes_unchanged_remote_files_and_fails_when_one_changed_since_it_was_read():
    root = ram_dir()
    path = write(f'{root}/data/trips.csv', CSV)
    examples = recorded_examples(f'{root}/data', f'{root}/examples')
    anomalies = clean_anomalies(f'{root}/anomalies')  # read with tf.io.gfile, not open()
    gate(anomalies, [examples])  # no preflight record (Kubeflow): passes
    append(path, '9.5,Z,1\n')
    with pytest.raises(InputChanged) as e:
        gate(anomalies, [examples], on_anomalies='warn')
    assert f'{path}: was {len(CSV)} bytes' in str(e.value)
    assert 'when ExampleGen read it, now' in str(e.value)


def test_gate_fails_when_examplegen_read_another_file_than_the_preflight_checked(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    path = data / 'trips.csv'
    path.write_text(CSV)
    checked = input_files.fingerprint([str(path)])
    path.write_text(CSV + '4.5,C,1\n')  # after the preflight, before ExampleGen
    examples = run_example_gen(str(data), str(tmp_path / 'examples'))
    anomalies = clean_anomalies(str(tmp_path / 'anomalies'))
    gate(anomalies, [examples])  # the record alone: the file is as it was read
    with pytest.raises(InputChanged) as e:
        gate(anomalies, [examples], checked=checked)
    assert (f'{path}: was {len(CSV)} bytes (modified {checked[str(path)][1]} ns) when the '
            f'preflight checked it, {len(CSV) + 8} bytes') in str(e.value)


def test_gate_fails_on_a_file_read_but_never_checked_and_on_one_checked_but_gone(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'a.csv').write_text(CSV)
    (data / 'b.csv').write_text(CSV)
    checked = input_files.fingerprint([str(data / 'a.csv'), str(data / 'b.csv')])
    (data / 'c.csv').write_text(CSV)  # arrives after the preflight
    examples = run_example_gen(str(data), str(tmp_path / 'examples'))
    anomalies = clean_anomalies(str(tmp_path / 'anomalies'))
    with pytest.raises(InputChanged) as e:
        gate(anomalies, [examples], checked=checked)
    assert f'{data / "c.csv"}: read by ExampleGen but not checked by the preflight' in str(e.value)
    (data / 'c.csv').unlink()
    os.remove(data / 'b.csv')  # checked, and ExampleGen of another run did not see it
    examples = run_example_gen(str(data), str(tmp_path / 'examples2'))
    with pytest.raises(InputChanged) as e:
        gate(anomalies, [examples], checked=checked)
    assert str(e.value).splitlines()[1:] == [f'  {data / "b.csv"}: removed']

