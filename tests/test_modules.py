"""The code that runs inside Transform and Trainer, on a few rows, without a pipeline.

A module fixture runs the real ``preprocessing_fn`` through TFT's Beam implementation on
eight rows, keeps the transform graph, and builds models and signatures on top of it.
"""
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from components.features import Feature, FeaturePlan
from components.model import build_keras_model
from components.signatures import SERVING_JSON, export_serving_model
from components.transform import preprocessing_fn
from pipeline.config import TrainingConfig

ROWS = [  # fare (float, one missing), hour (int categorical), company (string, one missing)
    {'fare': [10.0], 'hour': [1], 'company': [b'a'], 'lat': [41.0], 'label': [1]},
    {'fare': [20.0], 'hour': [1], 'company': [b'a'], 'lat': [41.1], 'label': [0]},
    {'fare': [30.0], 'hour': [2], 'company': [b'b'], 'lat': [41.2], 'label': [1]},
    {'fare': [], 'hour': [2], 'company': [b'a'], 'lat': [41.3], 'label': [0]},
    {'fare': [40.0], 'hour': [3], 'company': [], 'lat': [41.4], 'label': [1]},
    {'fare': [10.0], 'hour': [1], 'company': [b'c'], 'lat': [41.5], 'label': [0]},
    {'fare': [20.0], 'hour': [2], 'company': [b'a'], 'lat': [41.6], 'label': [1]},
    {'fare': [30.0], 'hour': [3], 'company': [b'b'], 'lat': [41.7], 'label': [0]},
]
RAW_SPEC = {'fare': tf.io.VarLenFeature(tf.float32), 'hour': tf.io.VarLenFeature(tf.int64),
            'company': tf.io.VarLenFeature(tf.string), 'lat': tf.io.VarLenFeature(tf.float32),
            'label': tf.io.VarLenFeature(tf.int64)}


def make_plan(task='binary', oov=2, one_hot_max=64, hours=()):
    """``hours``: the hour column's fixed vocabulary (the schema's closed domain)."""
    return FeaturePlan(
        features=(Feature('fare', 'numeric', 'float'),
                  Feature('hour', 'categorical', 'int', vocabulary=tuple(hours)),
                  Feature('company', 'categorical', 'string'), Feature('lat', 'bucketized', 'float', 4)),
        label='label', label_dtype='int', task=task, oov_buckets=oov, one_hot_max=one_hot_max)


def run_tft(plan, rows, tmp, raw_spec=None, compat_v1=False):
    """``compat_v1``: trace in TF1 mode, as the pipeline's Transform does."""
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(raw_spec or RAW_SPEC))
    config = {'features': plan.to_dict()}
    with tft_beam.Context(temp_dir=os.path.join(tmp, 'tft_tmp'), force_tf_compat_v1=compat_v1):
        (transformed, _), transform_fn = (
            (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
                lambda inputs: preprocessing_fn(inputs, config)))
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(tmp, 'transform'))
    # Transform also records the raw schema beside the graph; the serving signatures read it.
    metadata_io.write_metadata(metadata, os.path.join(tmp, 'transform', 'metadata'))
    return transformed, tft.TFTransformOutput(os.path.join(tmp, 'transform'))


@pytest.fixture(scope='module')
def transformed(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp('tft'))
    rows, tft_output = run_tft(make_plan(), ROWS, tmp)
    return rows, tft_output


def test_numeric_columns_are_mean_filled_and_z_scored(transformed):
    rows, _ = transformed
    fares = [10, 20, 30, 40, 10, 20, 30]
    mean = np.mean(fares)
    filled = [10, 20, 30, mean, 40, 10, 20, 30]
    std = np.std(filled)  # of the filled column, as tft.scale_to_z_score would give
    got = [r['fare_xf'] for r in rows]
    np.testing.assert_allclose(got, [(x - mean) / std for x in filled], rtol=1e-5)
    assert got[3] == pytest.approx(0.0, abs=1e-6)  # the missing fare became the mean


def test_categoricals_get_a_vocabulary_most_frequent_first(transformed):
    rows, tft_output = transformed
    # 'a' is the most frequent company, then 'b'; the missing company is its own token ''.
    assert tft_output.vocabulary_by_name('company')[:2] == [b'a', b'b']
    assert [r['company_xf'] for r in rows][:3] == [0, 0, 1]
    hours = tft_output.vocabulary_by_name('hour')
    assert sorted(hours) == [b'1', b'2', b'3']
    assert rows[0]['hour_xf'] == hours.index(b'1')


def test_unseen_categories_go_to_out_of_vocabulary_buckets(transformed):
    _, tft_output = transformed
    raw = {'fare': tf.sparse.from_dense([[10.0], [10.0]]),
           'hour': tf.sparse.from_dense(tf.constant([[99], [1]], tf.int64)),
           'company': tf.sparse.from_dense(tf.constant([[b'never-seen'], [b'a']])),
           'lat': tf.sparse.from_dense([[41.0], [41.0]])}
    out = tft_output.transform_features_layer()(raw)
    vocab = len(tft_output.vocabulary_by_name('company'))
    assert vocab <= out['company_xf'][0].numpy() < vocab + 2  # one of the 2 OOV buckets
    assert out['company_xf'][1].numpy() == 0
    assert out['hour_xf'][0].numpy() >= len(tft_output.vocabulary_by_name('hour'))


def test_a_closed_domain_is_the_vocabulary_without_an_analysis_and_survives_export(tmp_path):
    plan = make_plan(hours=('1', '2', '3', '4'))
    rows = ROWS[:-1] + [dict(ROWS[-1], hour=[])]  # the last hour missing
    out, tft_output = run_tft(plan, rows, str(tmp_path))
    # Ids in the domain's order (4 never occurs), not by frequency; nothing was analyzed.
    assert [r['hour_xf'] for r in out][:7] == [h['hour'][0] - 1 for h in rows[:7]]
    assert 4 <= out[-1]['hour_xf'] < 6  # missing: an out-of-vocabulary bucket
    with pytest.raises(Exception):
        tft_output.vocabulary_by_name('hour')
    assert tft_output.vocabulary_by_name('company')[:2] == [b'a', b'b']  # still computed

    model = build_keras_model(plan, tft_output, TrainingConfig(hidden_units=8, hidden_layers=1))
    [hour_one_hot] = [l for l in model.layers if isinstance(l, tf.keras.layers.CategoryEncoding)
                      and l.input.name.startswith('hour_xf')]
    assert hour_one_hot.num_tokens == 4 + 2  # the domain and the OOV buckets
    export_serving_model(model, tft_output, plan, str(tmp_path / 'export'))
    loaded = tf.saved_model.load(str(tmp_path / 'export'))
    unseen = dict(ROWS[0], hour=[99])
    probabilities = loaded.signatures['serving_default'](
        examples=tf.constant([serialized(r) for r in ROWS + [unseen]]))['probability'].numpy()
    assert probabilities.shape == (len(ROWS) + 1,) and np.all(np.isfinite(probabilities))
    transformed = loaded.signatures['transform_features'](
        examples=tf.constant([serialized(ROWS[2]), serialized(unseen)]))
    assert transformed['hour_xf'].numpy()[0] == 1 and 4 <= transformed['hour_xf'].numpy()[1] < 6


def test_bucketized_coordinates_and_label(transformed):
    rows, _ = transformed
    buckets = [r['lat_xf'] for r in rows]
    assert min(buckets) == 0 and max(buckets) == 3 and buckets == sorted(buckets)
    assert [r['label_xf'] for r in rows] == [1, 0, 1, 0, 1, 0, 1, 0]


def test_multiclass_labels_become_class_ids(tmp_path):
    rows = [dict(r, label=[r['hour'][0] * 10]) for r in ROWS]  # classes 10, 20, 30
    out, tft_output = run_tft(make_plan(task='multiclass'), rows, str(tmp_path))
    classes = tft_output.vocabulary_by_name('label')
    assert sorted(classes) == [b'10', b'20', b'30']
    assert [classes[r['label_xf']] for r in out] == [str(r['label'][0]).encode() for r in rows]


@pytest.mark.parametrize('task, units', [('binary', 1), ('regression', 1)])
def test_model_builder_is_wide_and_deep_from_the_plan(transformed, task, units):
    _, tft_output = transformed
    plan = make_plan(task=task, one_hot_max=4)
    model = build_keras_model(plan, tft_output, TrainingConfig(hidden_units=16, hidden_layers=3))
    assert sorted(model.input_names) == ['company_xf', 'fare_xf', 'hour_xf', 'lat_xf']
    assert model.output_shape == (None, units)
    dense = [l.units for l in model.layers if isinstance(l, tf.keras.layers.Dense)]
    assert dense[:3] == [16, 8, 4]  # depth 3, halving width
    assert any(l.name == 'wide_logits' for l in model.layers)
    # company has 3 tokens + '' + 2 OOV = 6 > one_hot_max=4, so it is embedded in the deep part.
    assert any(isinstance(l, tf.keras.layers.Embedding) for l in model.layers)
    if task == 'binary':
        assert model.layers[-1].get_config()['activation'] == 'sigmoid'
    else:  # the z-score back on the label's scale: identity for the plan's default 0 and 1
        assert isinstance(model.layers[-1], tf.keras.layers.Rescaling)
        assert (model.layers[-1].scale, model.layers[-1].offset) == (1.0, 0.0)


def serialized(row):
    feature = {}
    for name, values in row.items():
        if name == 'label':
            continue
        if name in ('fare', 'lat'):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        elif name == 'hour':
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_signatures_take_raw_examples_and_raw_json_features_alike(transformed, tmp_path):
    _, tft_output = transformed
    plan = make_plan()
    model = build_keras_model(plan, tft_output, TrainingConfig(hidden_units=8, hidden_layers=1))
    export_serving_model(model, tft_output, plan, str(tmp_path / 'export'))
    loaded = tf.saved_model.load(str(tmp_path / 'export'))
    assert set(loaded.signatures) == {'serving_default', 'serving_json', 'transform_features'}

    by_examples = loaded.signatures['serving_default'](
        examples=tf.constant([serialized(r) for r in ROWS]))['probability'].numpy()
    assert by_examples.shape == (len(ROWS),) and np.all((by_examples > 0) & (by_examples < 1))

    json_inputs = {
        'fare': tf.constant([r['fare'][0] if r['fare'] else math.nan for r in ROWS], tf.float32),
        'hour': tf.constant([r['hour'][0] for r in ROWS], tf.int64),
        'company': tf.constant([r['company'][0] if r['company'] else b'' for r in ROWS]),
        'lat': tf.constant([r['lat'][0] for r in ROWS], tf.float32)}
    by_json = loaded.signatures[SERVING_JSON](**json_inputs)['probability'].numpy()
    np.testing.assert_allclose(by_json, by_examples, rtol=1e-5)

    # Both predicting signatures call one graph of the model: its hidden layer's matrix
    # product is in the SavedModel once, not once per signature.
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel.FromString((tmp_path / 'export' / 'saved_model.pb').read_bytes())
    library = saved.meta_graphs[0].graph_def.library.function
    assert sum(any(node.op == 'MatMul' for node in f.node_def) for f in library) == 1

    # The label is not needed to serve, and the transformed one comes out of transform_features.
    with_label = tf.train.Example.FromString(serialized(ROWS[0]))
    with_label.features.feature['label'].int64_list.value.append(1)
    out = loaded.signatures['transform_features'](examples=tf.constant([with_label.SerializeToString()]))
    assert out['label_xf'].numpy().tolist() == [1]


def test_a_numeric_column_with_no_values_at_all_becomes_zeros_not_nan(tmp_path):
    # An empty column is an anomaly; with --allow-anomalies the model must still get numbers.
    rows = [dict(r, fare=[]) for r in ROWS]
    out, _ = run_tft(make_plan(), rows, str(tmp_path))
    assert [r['fare_xf'] for r in out] == [0.0] * len(rows)


@pytest.mark.parametrize('compat_v1', [True, False])
def test_the_one_pass_vocabularies_are_tft_vocabularys_files(tmp_path, compat_v1):
    # Transform computes every column's vocabulary in one analyzer (components.transform.
    # ColumnVocabularies); its files must be the ones tft.vocabulary writes: most frequent
    # first, ties in reverse lexicographic order, top_k, no empty value or line break, and
    # TFT's placeholder for a column with no values. The pipeline traces in TF1 mode.
    from components.transform import as_string, vocabularies
    tokens = [b'b', b'a', b'c', b'a', b'c', b'x\ny', None, b'd', b'c', b'a']
    rows = [{'s': [t] if t else [], 'e': []} for t in tokens]
    spec = {'s': tf.io.VarLenFeature(tf.string), 'e': tf.io.VarLenFeature(tf.string)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))

    def fn(inputs):
        s, e = as_string(inputs['s']), as_string(inputs['e'])
        ours = vocabularies({'top2': s, 'all': s, 'empty': e}, {'top2': 2, 'all': None,
                                                                 'empty': 5})
        theirs = {'top2': tft.vocabulary(s, top_k=2, vocab_filename='tft_top2'),
                  'all': tft.vocabulary(s, vocab_filename='tft_all'),
                  'empty': tft.vocabulary(e, top_k=5, vocab_filename='tft_empty')}
        return {f'{who}_{name}': tft.apply_vocabulary(s, files[name], num_oov_buckets=1)
                for who, files in (('ours', ours), ('tft', theirs)) for name in files}

    with tft_beam.Context(temp_dir=str(tmp_path / 'tmp'), force_tf_compat_v1=compat_v1):
        (out, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / 'transform'))
    tft_output = tft.TFTransformOutput(str(tmp_path / 'transform'))
    assert tft_output.vocabulary_by_name('top2') == [b'c', b'a']
    assert tft_output.vocabulary_by_name('all') == [b'c', b'a', b'd', b'b']
    for name in ('top2', 'all', 'empty'):
        assert tft_output.vocabulary_by_name(name) == tft_output.vocabulary_by_name(f'tft_{name}')
        assert [r[f'ours_{name}'] for r in out] == [r[f'tft_{name}'] for r in out]
