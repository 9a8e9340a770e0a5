"""The typed config: loading, overrides, and every refusal naming its key."""
import os

import pytest

from pipeline.config import ConfigError, load_config
from testlib import REPO, taxi_rows, write_config, write_csv

TAXI_YAML = os.path.join(REPO, 'configs', 'taxi.yaml')


def test_bundled_config_loads_typed_and_resolved():
    config = load_config(TAXI_YAML)
    assert config.name == 'taxi'
    assert config.data.label == 'big_tipper' and config.data.task == 'binary'
    assert config.data.exclude == ('tips',)
    assert config.data.split == (4, 1)
    assert config.training.train_steps == 2000 and isinstance(config.training.learning_rate, float)
    assert config.evaluation.slices == (('trip_start_hour',),)
    assert config.evaluation.thresholds[0].metric == 'auc'
    # Relative paths are resolved against the repository, whatever the working directory.
    assert config.data.root == os.path.join(REPO, 'data', 'taxi')
    assert config.paths.serving_dir == os.path.join(REPO, 'output', 'serving', 'taxi')
    with pytest.raises(Exception):
        config.training.train_steps = 1  # frozen


def test_overrides_are_typed_and_win_over_the_file():
    config = load_config(TAXI_YAML, ['training.train_steps=300', 'training.learning_rate=0.01',
                                     'run.beam_args=[--direct_num_workers=2]',
                                     'validation.on_anomalies=warn'])
    assert config.training.train_steps == 300
    assert config.training.learning_rate == 0.01
    assert config.run.beam_args == ('--direct_num_workers=2',)
    assert config.validation.on_anomalies == 'warn'


def test_command_line_flags_map_to_config_keys(tmp_path):
    import pipeline_runner
    args = pipeline_runner.run_parser().parse_args([
        '--data-root', str(tmp_path), '--serving-dir', 'srv', '--runner', 'beam',
        '--train-steps', '7', '--beam-arg=--direct_num_workers=2', '--allow-anomalies'])
    assert set(pipeline_runner.overrides_from_args(args)) == {
        f'data.root={tmp_path}', 'paths.serving_dir=srv', 'run.runner=beam',
        'training.train_steps=7', 'validation.on_anomalies=warn'}


@pytest.mark.parametrize('override, key, expected', [
    ('training.train_stepz=5', 'training.train_stepz', 'unknown key'),
    ('colour=blue', 'colour', 'unknown key'),
    ('training.train_steps=lots', 'training.train_steps', 'expected an integer'),
    ('training.train_steps=0', 'training.train_steps', 'positive integer'),
    ('training.learning_rate=fast', 'training.learning_rate', 'expected a number'),
    ('data.task=ranking', 'data.task', 'expected one of binary, multiclass, regression'),
    ('data.exclude=tips', 'data.exclude', 'expected a list'),
    ('data.split=[4]', 'data.split', 'expected a list of 2 values'),
    ('run.runner=spark', 'run.runner', 'expected one of local, beam'),
    ('data.label=tip_percent', 'data.label', "column 'tip_percent' is not in"),
    ('data.exclude=[nope]', 'data.exclude', "column 'nope' is not in"),
    ('evaluation.slices=[[hour_of_day]]', 'evaluation.slices[0]', "column 'hour_of_day'"),
    ('features.bucketize={pickup_latitude: 1}', 'features.bucketize.pickup_latitude', 'at least 2'),
    ('evaluation.thresholds=[{metric: auc}]', 'evaluation.thresholds[0]', 'lower or an upper'),
    ('data.spans=0', 'data.spans', 'expected a positive number of spans'),
    # The bundled root is flat: there is nothing to take the last 3 spans of.
    ('data.spans=3', 'data.spans', 'has no span-<N>/ directories'),
    ('export.tflite_gate=true', 'export.tflite_gate', 'needs export.tflite: true'),
])
def test_bad_values_are_refused_naming_the_key(override, key, expected):
    with pytest.raises(ConfigError) as e:
        load_config(TAXI_YAML, [override])
    assert f'{key}:' in str(e.value)
    assert expected in str(e.value)
    assert 'taxi.yaml' in str(e.value)


def test_missing_required_key_and_missing_data_are_refused(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('name: x\ndata: {root: d, task: binary}\npaths: {pipeline_root: a, metadata: b, serving_dir: c}\n')
    with pytest.raises(ConfigError, match=r'data\.label: required key is missing'):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r'data\.root: no CSV files in .*does not exist'):
        load_config(TAXI_YAML, [f'data.root={tmp_path / "nowhere"}'])
    with pytest.raises(ConfigError, match='config file not found'):
        load_config(str(tmp_path / 'missing.yaml'))


def test_a_threshold_on_a_metric_that_is_not_computed_is_refused(tmp_path):
    from pipeline.evaluation import build_eval_config
    from pipeline.inputs import resolve
    config = load_config(TAXI_YAML, ['evaluation.thresholds=[{metric: aucc, lower: 0.5}]'])
    with pytest.raises(ConfigError, match=r"evaluation\.thresholds\[0\]\.metric: 'aucc' is not computed"):
        resolve(config)
    with pytest.raises(ConfigError, match=r"evaluation\.thresholds\[0\]\.metric: 'aucc' is not computed"):
        build_eval_config(config, resolve(load_config(TAXI_YAML)).plan)


def test_threshold_applies_to_the_whole_eval_split_not_each_slice():
    from pipeline.evaluation import build_eval_config
    from pipeline.inputs import resolve
    config = load_config(TAXI_YAML)
    eval_config = build_eval_config(config, resolve(config).plan)
    [auc] = [m for m in eval_config.metrics_specs[0].metrics if m.class_name == 'HistogramAUC']
    [per_slice] = auc.per_slice_thresholds
    assert list(per_slice.slicing_specs[0].feature_keys) == []
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.7
    assert per_slice.threshold.change_threshold.absolute.value == -0.01
    assert eval_config.model_specs[0].label_key == 'big_tipper_xf'
    assert [list(s.feature_keys) for s in eval_config.slicing_specs] == [[], ['trip_start_hour']]


@pytest.mark.parametrize('overrides, gated', [
    ([], False),                                                  # taxi's auc threshold only
    (['evaluation.thresholds=[]'], True),                         # none: beat a trivial model
    (['evaluation.thresholds=[]', 'evaluation.beat_trivial=false'], False),
    (['evaluation.beat_trivial=true'], True)])
def test_with_no_threshold_the_model_must_beat_a_trivial_one(overrides, gated):
    from pipeline.evaluation import build_eval_config
    from pipeline.inputs import resolve
    config = load_config(TAXI_YAML, overrides)
    eval_config = build_eval_config(config, resolve(config).plan)
    [gain] = [m for m in eval_config.metrics_specs[0].metrics
              if m.class_name == 'GainOverTrivial']
    assert bool(gain.per_slice_thresholds) == gated
    if gated:  # a TFMA threshold: TFMA then blesses a model that clears it
        assert gain.per_slice_thresholds[0].threshold.value_threshold.HasField('lower_bound')


def test_feature_plan_follows_schema_and_config():
    from pipeline.inputs import resolve
    plan = resolve(load_config(TAXI_YAML)).plan
    kinds = {f.name: f.kind for f in plan.features}
    assert 'tips' not in kinds and 'big_tipper' not in kinds
    assert kinds['trip_start_hour'] == 'categorical'      # int_domain is_categorical
    assert kinds['payment_type'] == 'categorical'          # string
    assert kinds['pickup_latitude'] == 'bucketized'        # features.bucketize
    assert kinds['fare'] == 'numeric'
    assert kinds['trip_seconds'] == 'numeric'
    assert plan.label_xf == 'big_tipper_xf'
    # The schema's closed domains are the vocabularies; open or large ones are computed.
    vocabulary = {f.name: f.vocabulary for f in plan.features}
    assert vocabulary['trip_start_hour'] == tuple(str(h) for h in range(24))  # int_domain 0..23
    assert vocabulary['payment_type'][:2] == ('Cash', 'Credit Card')        # string_domain
    assert vocabulary['company'] == ()                                       # no domain
    assert vocabulary['dropoff_census_tract'] == ()  # a million values > features.vocab_size


def test_a_new_csv_without_a_schema_gets_a_drafted_one_and_says_what_it_inferred(tmp_path):
    from pipeline.inputs import resolve
    header, rows = taxi_rows(60)
    write_csv(str(tmp_path / 'data' / 'd.csv'), header, rows)
    # No data.schema, and no schemas/<name>/schema.pbtxt yet: a new dataset.
    path = write_config(str(tmp_path), data={'root': str(tmp_path / 'data'), 'schema': ''})
    lines = []
    inputs = resolve(load_config(path), log=lines.append)
    drafted = tmp_path / 'schemas' / 'taxi' / 'schema.pbtxt'
    assert inputs.schema.drafted and inputs.schema.path == str(drafted)
    assert 'not_in_environment: "SERVING"' in drafted.read_text()
    assert {f.name for f in inputs.plan.features} >= {'fare', 'company', 'trip_miles'}
    # It says where it wrote the draft, and one line per column: name, type, presence, domain.
    assert f'wrote it to {drafted}' in lines[0]
    by_column = {line.split()[0]: line for line in lines[1:] if line.startswith('  ')}
    assert set(by_column) >= set(header)
    assert by_column['payment_type'].split()[1:3] == ['BYTES', 'required']
    assert '4 values: Cash, Credit Card' in by_column['payment_type']
    assert 'training only' in by_column['big_tipper']
    # The next run uses the draft as the curated schema; nothing is drafted again.
    again = resolve(load_config(path), log=lines.append)
    assert not again.schema.drafted and again.schema.text == inputs.schema.text


def test_a_configured_schema_that_does_not_exist_is_refused_not_drafted(tmp_path):
    from pipeline.inputs import resolve
    missing = tmp_path / 'schemas' / 'taxi' / 'schema.pbtx'  # a typo
    config = load_config(TAXI_YAML, [f'data.schema={missing}'])
    with pytest.raises(ConfigError, match=rf'data\.schema: {missing} does not exist'):
        resolve(config)
    assert not missing.exists() and not missing.parent.exists()


def test_config_forces_a_column_kind_and_refuses_a_numeric_string():
    from pipeline.inputs import resolve
    plan = resolve(load_config(TAXI_YAML, ['features.categorical=[fare, trip_miles]',
                                           'features.numeric=[trip_start_hour, trip_miles]'])).plan
    kinds = {f.name: (f.kind, f.vocabulary) for f in plan.features}
    assert kinds['fare'] == ('categorical', ())       # float_domain: no closed domain
    assert kinds['trip_start_hour'] == ('numeric', ())
    assert kinds['trip_miles'][0] == 'categorical'     # named in both: categorical wins
    with pytest.raises(ConfigError, match=r"features\.numeric: column 'payment_type' is a string"):
        resolve(load_config(TAXI_YAML, ['features.numeric=[payment_type]']))
