"""A dataset the product has never seen, with another label and task, runs from YAML alone.

The file is exported as people export them: semicolon-delimited, gzipped, missing values
written ``NA`` (palmerpenguins' convention), a date column in ``DD.MM.YYYY``.
"""
import csv
import gzip
import io
import os
import random

import numpy as np
import pytest
import tensorflow as tf

from pipeline.config import load_config
from pipeline.run import run_pipeline
from testlib import FAST_TRAINING

SPECIES = {'adelie': (38.0, 190.0, 'Torgersen'), 'gentoo': (47.0, 217.0, 'Biscoe'),
           'chinstrap': (49.0, 196.0, 'Dream')}


def make_penguins(path, n=300, seed=0):
    rng = random.Random(seed)
    text = io.StringIO()
    w = csv.writer(text, delimiter=';')
    w.writerow(['bill_length_mm', 'flipper_length_mm', 'island', 'year', 'observed', 'species'])
    for i in range(n):
        species = rng.choice(sorted(SPECIES))
        bill, flipper, island = SPECIES[species]
        w.writerow([round(rng.gauss(bill, 1.5), 1) if i % 50 else 'NA',
                    'NA' if i % 40 == 0 else round(rng.gauss(flipper, 4)),
                    island if rng.random() < 0.8 else rng.choice(['Biscoe', 'Dream']),
                    rng.choice([2007, 2008, 2009]), f'{i % 28 + 1:02d}.{i % 12 + 1:02d}.2008',
                    species])
    with gzip.open(path, 'wt', encoding='utf-8', newline='') as f:
        f.write(text.getvalue())


CONFIG = """
name: penguins
data:
  root: {root}/data
  label: species
  task: multiclass
  # No schema: schemas/penguins/schema.pbtxt does not exist yet, so the first run drafts it.
training: {training}
evaluation:
  slices: [[island]]
  thresholds:
    - {{metric: sparse_categorical_accuracy, lower: 0.6}}
export:
  tflite: true          # the TFLite model of a multi-class model, checked in the interpreter
run:
  runner: beam          # TFX's Beam orchestrator (the taxi tests use the local one)
paths:
  pipeline_root: {root}/pipeline
  metadata: {root}/metadata.sqlite
  serving_dir: {root}/serving
"""


def test_multiclass_csv_runs_from_a_yaml_file_alone(tmp_path):
    os.makedirs(tmp_path / 'data')
    make_penguins(str(tmp_path / 'data' / 'penguins.csv.gz'))
    (tmp_path / 'penguins.yaml').write_text(CONFIG.format(root=tmp_path, training=FAST_TRAINING))
    config = load_config(str(tmp_path / 'penguins.yaml'))

    out = io.StringIO()
    summary = run_pipeline(config, out=out)

    assert summary['status'] == 'succeeded', summary.get('error')
    assert "Reading 1 CSV file: delimiter ';' (semicolon), detected;" in out.getvalue()
    # Drafted from the data as ExampleGen reads it: NA is missing, the date is a date.
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.schema import load_schema
    drafted = {f.name: f for f in load_schema(str(tmp_path / 'schemas' / 'penguins' / 'schema.pbtxt')).feature}
    assert drafted['observed'].time_domain.string_format == '%d.%m.%Y'
    assert [drafted[c].type for c in ('bill_length_mm', 'flipper_length_mm')] == [
        schema_pb2.FLOAT, schema_pb2.INT]
    assert summary['runner'] == 'beam'
    assert {c['state'] for c in summary['components']} == {'ran'}
    assert (tmp_path / 'schemas' / 'penguins' / 'schema.pbtxt').exists()
    # The report names the schema the run validated against: the drafted file, as data.schema
    # is not set (it showed an empty path).
    with open(summary['report'], encoding='utf-8') as f:
        schema_path = tmp_path / 'schemas' / 'penguins' / 'schema.pbtxt'
        assert f'<code class="path">{schema_path}</code>, environments' in f.read()
    assert summary['anomalies']['found'] == []
    assert summary['evaluation']['metrics']['sparse_categorical_accuracy'] >= 0.6
    # The trivial baseline: always the most frequent species (about a third here); the
    # accuracy it is compared with is TFMA's own.
    trivial = summary['evaluation']['trivial']
    assert trivial['metric'] == 'sparse_categorical_accuracy' and 0.25 < trivial['trivial'] < 0.5
    assert trivial['value'] == pytest.approx(
        summary['evaluation']['metrics']['sparse_categorical_accuracy'], abs=1e-6)
    assert trivial['weak'] is False
    assert summary['blessed'] is True and summary['push']['pushed'] is True

    model = tf.saved_model.load(summary['push']['path'])
    examples = [tf.train.Example(features=tf.train.Features(feature={
        'bill_length_mm': tf.train.Feature(float_list=tf.train.FloatList(value=[bill])),
        # Whole numbers and NA in the CSV: the drafted schema makes the column INT.
        'flipper_length_mm': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(flipper)])),
        'island': tf.train.Feature(bytes_list=tf.train.BytesList(value=[island.encode()])),
        'year': tf.train.Feature(int64_list=tf.train.Int64List(value=[2008])),
        'observed': tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'14.07.2008'])),
    })).SerializeToString() for bill, flipper, island in SPECIES.values()]
    out = model.signatures['serving_default'](examples=tf.constant(examples))
    probabilities, classes = out['probabilities'].numpy(), out['classes'].numpy()
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert sorted(c.decode() for c in classes[0]) == sorted(SPECIES)
    # Each prototype is classified as its own species.
    predicted = [classes[i][probabilities[i].argmax()].decode() for i in range(3)]
    assert predicted == list(SPECIES)

    # The TFLite model beside it predicts the SavedModel's class probabilities (checked by
    # the export on the eval split, recorded in the summary), here on the three prototypes.
    tflite = summary['tflite']
    assert tflite['outputs'] == ['probabilities'] and sorted(tflite['classes']) == sorted(SPECIES)
    assert tflite['max_difference'] <= 1e-5 and tflite['examples_checked'] > 0
    with open(os.path.join(summary['push']['path'], tflite['file']), 'rb') as f:
        runner = tf.lite.Interpreter(model_content=f.read()).get_signature_runner('serving_default')
    from components.example_inputs import signature_inputs
    inputs = signature_inputs(model.signatures['serving_json'], examples)
    got = runner(**{k: v.astype(bytes) if v.dtype == object else v for k, v in inputs.items()})
    np.testing.assert_allclose(got['probabilities'], probabilities, atol=1e-5, rtol=0)

    # The run's HTML report draws the multi-class confusion matrix (tests/test_html_report.py).
    import browser
    if browser.available() or os.environ.get('CI'):
        from report_testlib import open_report
        drawn = open_report(summary['report'], 'multiclass')['chart_ids']
        assert 'confusion-candidate' in drawn and 'roc' not in drawn
