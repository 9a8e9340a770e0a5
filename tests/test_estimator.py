"""The Estimator trainer (``--trainer estimator``): real pipeline runs on a few hundred rows.

One pipeline root, shared by every test through the ``runs`` fixture, run in this order
(ExampleGen and statistics run once, Transform once per kind of trainer; later runs reuse
them from the cache):

``keras``      Keras trainer: the first model, blessed and pushed (no baseline yet).
``estimator``  ``--trainer estimator``, lenient change threshold: the Evaluator compares it
               with the Keras model as baseline; blessed and pushed.
``rerun``      ``estimator`` again, unchanged: everything from the cache.
``strict``     ``estimator`` with an impossible change threshold: only Evaluator and Pusher
               run again; not blessed, nothing pushed.
``reverse``    Keras again (new steps): a Keras candidate against the estimator baseline.
``warm``       estimator, ``warm_start: true`` and ``distribute: mirrored``: starts from the
               latest blessed model's weights (the ``reverse`` Keras model).
Edge cases (weights that do not fit, the RunConfig) are unit tests on those artifacts.
"""
import csv
import glob
import json
import os
import types
import time
import types
from typing import Any, Dict, List

import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(REPO, 'data', 'taxi', 'data.csv')
ROWS = 500
FAST = ['--train-steps', '60', '--set', 'training.eval_steps=5',
        '--set', 'training.steps_per_epoch=30', '--set', 'training.batch_size=32',
        '--set', 'training.checkpoint_steps=20', '--set', 'training.keep_checkpoint_max=2',
        '--set', 'training.save_summary_steps=10',
        '--set', 'evaluation.slices=[]',
        # TFMA blesses nothing without a threshold, and drops change thresholds when there is
        # no baseline yet: one that always passes, so the first model is blessed.
        '--set', 'evaluation.thresholds=[{metric: auc, lower: 0.0}]']
LENIENT = ['--set', 'evaluation.change_thresholds=[{metric: auc, max_decrease: 1.0}]']
# The candidate would have to beat the baseline's AUC by more than 1: never blessed.
IMPOSSIBLE = ['--set', 'evaluation.change_thresholds=[{metric: auc, max_decrease: -1.0}]']


def run_cli(args: List[str], summary_path: str) -> Dict[str, Any]:
    import pipeline_runner
    code = pipeline_runner.main(args + ['--summary-json', summary_path])
    with open(summary_path, encoding='utf-8') as f:
        summary = json.load(f)
    summary['exit_code'] = code
    assert code == 0, summary.get('error')
    return summary


@pytest.fixture(scope='session')
def runs(tmp_path_factory) -> Dict[str, Dict[str, Any]]:
    root = str(tmp_path_factory.mktemp('estimator'))
    data = os.path.join(root, 'data')
    os.makedirs(data)
    with open(BUNDLED, encoding='utf-8', newline='') as src, \
            open(os.path.join(data, 'data.csv'), 'w', encoding='utf-8', newline='') as dst:
        rows = list(csv.reader(src))[:ROWS + 1]
        csv.writer(dst, lineterminator='\n').writerows(rows)
    base = ['--data-root', data, '--pipeline-root', os.path.join(root, 'pipeline'),
            '--metadata', os.path.join(root, 'metadata.sqlite'),
            '--serving-dir', os.path.join(root, 'serving')] + FAST
    plan = [('keras', ['--trainer', 'keras'] + LENIENT),
            ('estimator', ['--trainer', 'estimator'] + LENIENT),
            ('rerun', ['--trainer', 'estimator'] + LENIENT),
            ('strict', ['--trainer', 'estimator'] + IMPOSSIBLE),
            ('reverse', ['--trainer', 'keras', '--train-steps', '40'] + LENIENT),
            ('warm', ['--trainer', 'estimator', '--train-steps', '20', '--set',
                      'training.warm_start=true', '--set', 'training.distribute=mirrored']
             + LENIENT)]
    out = {}
    for name, args in plan:
        serving = os.path.join(root, 'serving')
        versions = sorted(os.listdir(serving)) if os.path.isdir(serving) else []
        start = time.time()
        out[name] = run_cli(base + args, os.path.join(root, f'{name}.json'))
        out[name]['versions_before'] = versions
        out[name]['versions_after'] = sorted(os.listdir(serving)) if os.path.isdir(serving) else []
        out[name]['wall_seconds'] = time.time() - start
    out['_root'] = {'root': root, 'data': data}
    return out


def states(summary) -> Dict[str, str]:
    """Component states, resolvers left out (they run every time, they are not cached)."""
    return {c['id']: c['state'] for c in summary['components'] if 'Resolver' not in c['id']}


def run_of(summary):
    """The ML Metadata store a run wrote to, and the run's context."""
    from pipeline import report
    store = report.open_store(summary['metadata'])
    [run] = [c for c in store.get_contexts_by_type('pipeline_run') if c.name == summary['run_id']]
    return store, run


def trainer_of(summary) -> Dict[str, Any]:
    """What a run's Trainer used and made, read back from ML Metadata."""
    from components.trainer import parse_custom_config
    from pipeline import report
    store, run = run_of(summary)
    [execution] = [e for e in store.get_executions_by_context(run.id)
                   if e.type.endswith('.Trainer')]
    plan, training = parse_custom_config(
        json.loads(execution.custom_properties['custom_config'].string_value))
    outputs = report.run_outputs(store, run)['Trainer']['outputs']
    return {'plan': plan, 'training': training, 'model': outputs['model'][0].uri,
            'serving': os.path.join(outputs['model'][0].uri, 'Format-Serving'),
            'model_run': outputs['model_run'][0].uri,
            'transform_graph': store.get_artifacts_by_type('TransformGraph')[-1].uri}


def baseline_of(summary) -> str:
    """The baseline model the run's Evaluator read (its ``baseline_model`` input), or ''."""
    from ml_metadata.proto import metadata_store_pb2
    store, run = run_of(summary)
    [execution] = [e for e in store.get_executions_by_context(run.id)
                   if e.type.endswith(('.Evaluator', '.FastEvaluator'))]
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
           if e.type == metadata_store_pb2.Event.INPUT and e.path.steps
           and e.path.steps[0].key == 'baseline_model']
    return store.get_artifacts_by_id(ids)[0].uri if ids else ''


def raw_examples(data: str, n: int = 20) -> List[bytes]:
    """The first ``n`` rows as serialized tf.Examples, as a client sends them (no label)."""
    with open(os.path.join(data, 'data.csv'), encoding='utf-8', newline='') as f:
        rows = list(csv.DictReader(f))[:n]
    floats = {'fare', 'pickup_latitude', 'pickup_longitude', 'dropoff_latitude',
              'dropoff_longitude', 'trip_miles', 'tips'}
    out = []
    for row in rows:
        feature = {}
        for name, value in row.items():
            if name in ('big_tipper', 'tips') or value == '':
                continue
            if name in floats:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
            elif name in ('payment_type', 'company'):
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            else:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(float(value))]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


# --- End to end: an estimator candidate against a Keras baseline ------------------------------


def test_estimator_model_is_blessed_against_the_keras_baseline_and_pushed(runs):
    keras, est = runs['keras'], runs['estimator']
    assert keras['trainer'] == 'keras' and keras['blessed'] and keras['push']['pushed']
    assert est['trainer'] == 'estimator'
    # Switching the trainer trains again and runs Transform again, now writing the transformed
    # examples the estimator reads (the Keras trainer transforms raw examples itself); the
    # data and its validation come from the cache.
    assert {n for n, s in states(est).items() if s == 'ran'} == {
        'Transform', 'Trainer', 'Evaluator', 'Pusher'}
    assert baseline_of(est) == trainer_of(keras)['model']
    assert 0 <= est['evaluation']['baseline_metrics']['auc'] <= 1
    assert est['blessed'] is True
    assert est['push']['pushed'] and est['push']['version'] not in est['versions_before']
    assert os.path.isfile(os.path.join(est['push']['path'], 'saved_model.pb'))


def test_pushed_models_record_their_trainer_and_share_one_serving_contract(runs):
    from components.signatures import read_trainer
    keras_dir, est_dir = runs['keras']['push']['path'], runs['estimator']['push']['path']
    assert read_trainer(keras_dir) == 'keras'
    assert read_trainer(est_dir) == 'estimator'
    k, e = tf.saved_model.load(keras_dir), tf.saved_model.load(est_dir)
    assert set(k.signatures) == set(e.signatures) == {
        'serving_default', 'serving_json', 'transform_features'}
    for name in k.signatures:
        assert k.signatures[name].structured_input_signature == \
            e.signatures[name].structured_input_signature, name
        assert k.signatures[name].structured_outputs.keys() == \
            e.signatures[name].structured_outputs.keys(), name


def test_pushed_model_predicts_what_the_estimator_predicts(runs):
    import tensorflow_transform as tft
    from components import estimator_trainer

    est = runs['estimator']
    examples = raw_examples(runs['_root']['data'])
    served = tf.saved_model.load(est['push']['path']).signatures['serving_default']
    pushed = served(examples=tf.constant(examples))['probability'].numpy()

    # The estimator itself, restored from its checkpoints in the model run artifact, fed the
    # same examples through the same Transform graph.
    trained = trainer_of(est)
    plan = trained['plan']
    tft_output = tft.TFTransformOutput(trained['transform_graph'])
    raw_spec = tft_output.raw_feature_spec()
    raw_spec.pop(plan.label)
    transformed = tft_output.transform_features_layer()(
        tf.io.parse_example(tf.constant(examples), raw_spec))
    features = {k: v.numpy() for k, v in transformed.items() if k != plan.label_xf}
    estimator = estimator_trainer.make_estimator(plan, tft_output, trained['training'],
                                                 trained['model_run'])
    predicted = np.array([p['output'][0] for p in estimator.predict(
        lambda: tf.data.Dataset.from_tensor_slices(features).batch(len(examples)))])
    np.testing.assert_allclose(pushed, predicted, rtol=1e-5, atol=1e-6)
    assert np.ptp(pushed) > 1e-3  # a real model, not a constant


def test_checkpoints_and_summaries_go_to_the_model_run_artifact(runs):
    est = runs['estimator']
    model_run = est['tensorboard_logdir']
    assert model_run == trainer_of(est)['model_run']
    checkpoints = tf.train.get_checkpoint_state(model_run).all_model_checkpoint_paths
    # 60 steps, a checkpoint every 20, keep the last 2.
    assert [os.path.basename(p) for p in checkpoints] == ['model.ckpt-40', 'model.ckpt-60']
    assert glob.glob(os.path.join(model_run, 'events.out.tfevents.*'))
    assert glob.glob(os.path.join(model_run, 'eval', 'events.out.tfevents.*'))


def test_unchanged_rerun_comes_from_the_cache(runs):
    rerun = runs['rerun']
    assert set(states(rerun).values()) == {'cached'}, states(rerun)
    assert rerun['push']['from_cache'] and rerun['versions_after'] == rerun['versions_before']


def test_impossible_change_threshold_is_not_blessed_and_pushes_nothing(runs):
    strict = runs['strict']
    ran = {n for n, s in states(strict).items() if s == 'ran'}
    assert ran == {'Evaluator', 'Pusher'}, states(strict)
    # Compared with the same Keras baseline as before.
    assert baseline_of(strict) == baseline_of(runs['estimator'])
    assert strict['blessed'] is False
    assert strict['push']['pushed'] is False
    assert [f['metric'] for f in strict['evaluation']['failures']] == ['auc']
    assert strict['versions_after'] == strict['versions_before']


def test_keras_candidate_is_compared_with_the_estimator_baseline(runs):
    reverse = runs['reverse']
    assert reverse['trainer'] == 'keras'
    assert baseline_of(reverse) == trainer_of(runs['estimator'])['model']
    assert 'auc' in reverse['evaluation']['baseline_metrics']
    assert reverse['blessed'] is True and reverse['push']['pushed']


# --- Warm start and distribution ---------------------------------------------------------------


def test_warm_start_begins_from_the_last_blessed_model(runs):
    from components import estimator_trainer
    warm = runs['warm']
    assert warm['trainer'] == 'estimator' and states(warm)['Trainer'] == 'ran'
    assert 'WarmStartModelResolver' in {c['id'] for c in warm['components']}
    # The estimator's first checkpoint (what it started from) holds the base model's weights:
    # the Keras model of the 'reverse' run, the latest blessed one.
    base = tf.train.load_checkpoint(os.path.join(
        trainer_of(runs['reverse'])['serving'], 'variables', 'variables'))
    first = tf.train.load_checkpoint(os.path.join(warm['tensorboard_logdir'], 'keras',
                                                  'keras_model.ckpt'))
    trained = tf.train.load_checkpoint(tf.train.latest_checkpoint(warm['tensorboard_logdir']))
    # Every layer's weights (the dense kernels and the embeddings).
    weights = sorted(k for k in base.get_variable_to_shape_map()
                     if k.startswith('layer_with_weights-') and '/OPTIMIZER_SLOT/' not in k
                     and k.endswith('/.ATTRIBUTES/VARIABLE_VALUE'))
    assert sum('/kernel/' in k for k in weights) >= 4  # hidden layers, deep and wide logits
    for key in weights:
        np.testing.assert_array_equal(first.get_tensor(key), base.get_tensor(key))
    kernel = [k for k in weights if '/kernel/' in k][-1]
    assert not np.array_equal(trained.get_tensor(kernel), base.get_tensor(kernel))
    assert estimator_trainer.TRAINER_NAME == 'estimator'


def test_weights_that_do_not_fit_are_refused_naming_the_base_model(runs, tmp_path):
    import tensorflow_transform as tft
    from components import estimator_trainer
    keras = trainer_of(runs['keras'])
    plan, training, base = keras['plan'], keras['training'], keras['serving']
    tft_output = tft.TFTransformOutput(keras['transform_graph'])
    wider = types.SimpleNamespace(**{**vars(training), 'hidden_units': training.hidden_units * 2})
    with pytest.raises(ValueError, match=f'base model {base}.*do not fit'):
        estimator_trainer.make_estimator(plan, tft_output, wider, str(tmp_path / 'a'),
                                         warm_start_from=base)
    with pytest.raises(ValueError, match='warm_start.*no variables'):
        estimator_trainer.make_estimator(plan, tft_output, training, str(tmp_path / 'b'),
                                         warm_start_from=keras['model'])


def test_run_config_comes_from_the_training_config(tmp_path):
    from components.estimator_trainer import run_config, train_strategy
    from pipeline.config import TrainingConfig
    training = TrainingConfig(trainer='estimator', checkpoint_steps=7, keep_checkpoint_max=4,
                              save_summary_steps=3, seed=11, distribute='mirrored')
    config = run_config(training, str(tmp_path), train_strategy(training, None))
    assert (config.model_dir, config.save_checkpoints_steps, config.keep_checkpoint_max,
            config.save_summary_steps, config.tf_random_seed) == (str(tmp_path), 7, 4, 3, 11)
    assert isinstance(config.train_distribute, tf.distribute.MirroredStrategy)
    assert train_strategy(TrainingConfig(), None) is None
    assert run_config(TrainingConfig(), str(tmp_path)).train_distribute is None


def test_warm_start_with_the_keras_trainer_is_refused_naming_the_key():
    from pipeline.config import ConfigError, load_config
    with pytest.raises(ConfigError, match='training.warm_start: only the estimator trainer'):
        load_config(os.path.join(REPO, 'configs', 'taxi.yaml'),
                    ['training.warm_start=true', 'training.trainer=keras'], check_data=False)


def test_the_keras_trainer_input_matches_the_transformed_examples(runs):
    """The Keras trainer applies the TFT graph to raw examples (Transform writes no copy for
    it); the estimator reads Transform's transformed examples. Row for row, the same data."""
    import tensorflow_transform as tft
    from tfx.components.trainer.fn_args_utils import DataAccessor
    from tfx.components.util import tfxio_utils
    from components.trainer import make_dataset
    from pipeline import report

    def nodes(summary):
        return report.run_outputs(*run_of(summary))

    keras, est = nodes(runs['keras']), nodes(runs['estimator'])
    trained = trainer_of(runs['estimator'])
    tft_output = tft.TFTransformOutput(est['Transform']['outputs']['transform_graph'][0].uri)

    def rows(artifacts, raw):
        accessor = DataAccessor(tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(
            artifacts, []), record_batch_factory=None, data_view_decode_fn=None)
        fn_args = type('FnArgs', (), {'data_accessor': accessor})
        out, names = [], None
        for features, labels in make_dataset(
                fn_args, [os.path.join(artifacts[0].uri, 'Split-eval', '*')], trained['plan'],
                tft_output, 64, 0, raw=raw, num_epochs=1):
            names = sorted(features)
            columns = [np.reshape(features[k], (len(labels), -1)) for k in names]
            out += [tuple(np.concatenate([c[i] for c in columns] + [np.reshape(labels[i], -1)]))
                    for i in range(len(labels))]
        return sorted(out), names

    # What each trainer read: ExampleGen's raw examples (Keras), the transformed copy (estimator).
    raw_input, copy_input = keras['Trainer']['inputs']['examples'], est['Trainer']['inputs']['examples']
    assert '/CsvExampleGen/' in raw_input[0].uri and '/Transform/' in copy_input[0].uri
    from_raw, raw_names = rows(raw_input, raw=True)
    from_copy, copy_names = rows(copy_input, raw=False)
    assert raw_names == copy_names and len(from_raw) == len(from_copy) > 50
    np.testing.assert_allclose(np.array(from_raw), np.array(from_copy), rtol=1e-6, atol=1e-6)


def test_keras_validation_is_the_same_rows_every_epoch_at_most_eval_steps_batches(runs):
    """Early stopping's validation data: the whole eval split once when it fits in
    ``eval_steps`` batches, else ``eval_steps`` batches; identical at every pass (epoch)."""
    import tensorflow_transform as tft
    from tfx.components.trainer.fn_args_utils import DataAccessor
    from tfx.components.util import tfxio_utils
    from components.trainer import validation_dataset
    from pipeline import report

    nodes = report.run_outputs(*run_of(runs['keras']))
    trained = trainer_of(runs['keras'])
    examples = nodes['Trainer']['inputs']['examples']
    eval_files = [os.path.join(examples[0].uri, 'Split-eval', '*')]
    split_rows = sum(1 for _ in tf.data.TFRecordDataset(
        tf.io.gfile.glob(eval_files[0]), compression_type='GZIP'))
    accessor = DataAccessor(tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(
        examples, []), record_batch_factory=None, data_view_decode_fn=None)
    tft_output = tft.TFTransformOutput(nodes['Transform']['outputs']['transform_graph'][0].uri)
    training = types.SimpleNamespace(**{**vars(trained['training']), 'batch_size': 16})

    def passes(eval_steps):
        fn_args = type('FnArgs', (), {'data_accessor': accessor, 'eval_files': eval_files,
                                      'eval_steps': eval_steps})
        dataset = validation_dataset(fn_args, trained['plan'], tft_output, training, raw=True)
        return [[labels.numpy().tolist() + features['fare_xf'].numpy().tolist()
                 for features, labels in dataset] for _ in range(2)]

    few = passes(3)
    assert len(few[0]) == 3 and all(len(batch) == 2 * 16 for batch in few[0])
    assert few[0] == few[1]
    whole = passes(10 ** 6)
    assert sum(len(batch) // 2 for batch in whole[0]) == split_rows > 50
    assert whole[0] == whole[1]
