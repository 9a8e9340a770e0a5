"""The plan's decisions inside the real Transform and model code, on a few rows: date parts,
log scaling, NA tokens at serving, the regression label's scale through the exported
signatures, and the class weights the Keras fit receives."""
import datetime
import math

import numpy as np
import pytest
import tensorflow as tf

from components.features import (CATEGORICAL, DATE_ERA_BUCKETS, DATETIME, NUMERIC, Feature,
                                  FeaturePlan, date_era_name, transformed_name)
from components.model import build_keras_model
from components.signatures import SERVING_JSON, export_serving_model
from components.trainer import class_weights, train_keras
from pipeline.config import TrainingConfig
from test_modules import run_tft as run_plan_tft

FORMATS = {'d_iso': '%Y-%m-%d', 'd_slash': '%Y/%m/%d', 'd_dot': '%d.%m.%Y',
           'dt_tz': '%Y-%m-%dT%H:%M:%S%z', 'dt_space': '%Y-%m-%d %H:%M:%S'}
MOMENTS = [datetime.datetime(2023, 3, 15, 8, 30), datetime.datetime(2024, 2, 29, 23, 59, 59),
           datetime.datetime(1999, 12, 31, 0, 0), None, datetime.datetime(2000, 1, 1, 12),
           datetime.datetime(2031, 7, 4, 17, 5), None]
FARES = [1.0, 3.0, 0.0, 250.0, 12.0, 7.5, 40.0]
COMPANIES = [b'a', b'b', b'a', b'NA', b'', b'a', b'b']
# Numbers as a spreadsheet exports them, one missing (NA) and one that is not a number.
AMOUNTS = [b'$1,234.50', b'12%', b'-\xe2\x82\xac3', b'NA', b'1,000,000', b'7', b'n/a yet']
AMOUNT_VALUES = [1234.5, 12.0, -3.0, None, 1e6, 7.0, None]


NOT_A_DATE = b'31.02.2020 or so'


def text(moment, name, i):
    if moment is None:  # one missing cell, one that is not a date at all
        return b'' if i % 2 else NOT_A_DATE
    value = moment.strftime(FORMATS[name].replace('%z', ''))
    return (value + ['+01:00', 'Z', '-0530'][i % 3] if name == 'dt_tz' else value).encode()


def rows(labels=None):
    out = []
    for i, moment in enumerate(MOMENTS):
        row = {name: [text(moment, name, i)] for name in FORMATS}
        row['ts'] = [] if moment is None else [
            int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())]
        row.update(fare=[FARES[i]], company=[COMPANIES[i]] if COMPANIES[i] else [],
                   amount=[AMOUNTS[i]],
                   label=[labels[i] if labels else i % 2])
        out.append(row)
    return out


def spec(label_dtype=tf.int64):
    s = {name: tf.io.VarLenFeature(tf.string) for name in FORMATS}
    s.update(ts=tf.io.VarLenFeature(tf.int64), fare=tf.io.VarLenFeature(tf.float32),
             company=tf.io.VarLenFeature(tf.string), amount=tf.io.VarLenFeature(tf.string),
             label=tf.io.VarLenFeature(label_dtype))
    return s


def make_plan(task='binary', **label):
    features = tuple(Feature(name, DATETIME, 'string', time_format=f) for name, f in FORMATS.items())
    features += (Feature('ts', DATETIME, 'int', time_format='UNIX_SECONDS'),
                 Feature('fare', NUMERIC, 'float', log_scale=True),
                 Feature('company', CATEGORICAL, 'string'),
                 Feature('amount', NUMERIC, 'string'))
    return FeaturePlan(features=features, label='label',
                       label_dtype='float' if task == 'regression' else 'int', task=task,
                       oov_buckets=2, na_values=('NA', 'N/A'), **label)


def run_tft(plan, data, raw_spec, tmp):
    return run_plan_tft(plan, data, tmp, raw_spec, compat_v1=True)


@pytest.fixture(scope='module')
def binary(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp('plan_tft'))
    return run_tft(make_plan(), rows(), spec(), tmp)


EXPECTED = {  # Python's own idea of each part
    'year': lambda m: m.year, 'month': lambda m: m.month, 'day': lambda m: m.day,
    'weekday': lambda m: m.weekday(), 'yearday': lambda m: m.timetuple().tm_yday,
    'hour': lambda m: m.hour}
PERIODS = {'month': (12, 1), 'day': (31, 1), 'weekday': (7, 0), 'yearday': (366, 1), 'hour': (24, 0)}


@pytest.mark.parametrize('name', [*FORMATS, 'ts'])
def test_each_date_format_expands_into_its_parts(binary, name):
    out, _ = binary
    with_time = name.startswith('dt') or name == 'ts'
    parts = [p for p in EXPECTED if with_time or p != 'hour']
    assert not with_time or f'{name}_hour_xf' in out[0]
    assert with_time or f'{name}_hour_xf' not in out[0]
    present = [m is not None for m in MOMENTS]
    for part in parts:
        expected = np.array([EXPECTED[part](m) if m else np.nan for m in MOMENTS], dtype=float)
        got = np.array([r[transformed_name(f'{name}_{part}')] for r in out])
        # z-scores of the parts: a missing or unparsable value is the mean (0) ...
        values = expected[present]
        z = (values - values.mean()) / (values.std() * math.sqrt(np.mean(present))) \
            if values.std() else np.zeros_like(values)
        np.testing.assert_allclose(got[present], z, atol=1e-4, err_msg=f'{name} {part}')
        np.testing.assert_allclose(got[~np.array(present)], 0.0, atol=1e-6)
        if part in PERIODS:  # ... and the wrapping ones' sin and cos, 0 when missing
            period, first = PERIODS[part]
            angle = 2 * np.pi * (expected - first) / period
            for fn, suffix in ((np.sin, 'sin'), (np.cos, 'cos')):
                got = np.array([r[transformed_name(f'{name}_{part}_{suffix}')] for r in out])
                np.testing.assert_allclose(got, np.where(present, fn(angle), 0.0), atol=1e-5,
                                           err_msg=f'{name} {part} {suffix}')


@pytest.mark.parametrize('name', [*FORMATS, 'ts'])
def test_a_dates_era_is_its_quantile_bucket_of_absolute_time(binary, name):
    """The era one-hot lets the model give each period its own level (labels recorded
    differently from one year to the next): ordered as the moments, a missing value in the
    mean's bucket."""
    out, _ = binary
    era = np.array([r[date_era_name(name)] for r in out])
    assert era.dtype == np.int64 and ((0 <= era) & (era < DATE_ERA_BUCKETS)).all()
    present = [i for i, m in enumerate(MOMENTS) if m is not None]
    by_time = sorted(present, key=lambda i: MOMENTS[i])
    assert list(era[by_time]) == sorted(era[by_time]), era
    assert era[by_time[0]] < era[by_time[-1]]  # 1999 and 2031 are not one era


def test_a_log_scaled_column_is_the_z_score_of_its_log1p(binary):
    out, _ = binary
    logs = np.log1p(FARES)
    np.testing.assert_allclose([r['fare_xf'] for r in out],
                               (logs - logs.mean()) / logs.std(), atol=1e-5)


def test_formatted_numbers_are_read_as_numbers_and_the_rest_as_missing(binary):
    out, _ = binary
    present = np.array([v is not None for v in AMOUNT_VALUES])
    values = np.array([v for v in AMOUNT_VALUES if v is not None])
    z = (values - values.mean()) / (values.std() * math.sqrt(present.mean()))
    got = np.array([r['amount_xf'] for r in out])
    np.testing.assert_allclose(got[present], z, rtol=1e-4)
    np.testing.assert_allclose(got[~present], 0.0, atol=1e-6)  # missing: the mean


def test_numbers_with_a_decimal_comma_read_as_the_profile_reads_them():
    from components.transform import formatted_numbers
    text = tf.constant([b'22,56', b'-1.234,5', b'\xe2\x82\xac 3,10', b'7', b'NA', b'1,2,3', b''])
    got = formatted_numbers(text, ('NA',), ',').numpy()
    np.testing.assert_allclose(got[:4], [22.56, -1234.5, 3.1, 7.0], rtol=1e-6)
    assert np.isnan(got[4:]).all()  # missing, not a number, empty


def served_json(tft_output, tmp_path):
    """(a small model's serving_json signature, a function of one row's inputs to its
    probability: good values unless given)."""
    plan = make_plan()
    model = build_keras_model(plan, tft_output, TrainingConfig(hidden_units=8, hidden_layers=1))
    export_serving_model(model, tft_output, plan, str(tmp_path / 'export'))
    serve = tf.saved_model.load(str(tmp_path / 'export')).signatures[SERVING_JSON]

    def probability(**given):
        inputs = {name: [text(datetime.datetime(2023, 3, 15, 8), name, 1)] for name in FORMATS}
        inputs.update(ts=tf.constant([1678867200], tf.int64), fare=[3.0], company=[b'a'],
                      amount=[b'$5.00'])
        inputs.update({k: [v] for k, v in given.items()})
        return serve(**{k: tf.constant(v) for k, v in inputs.items()})['probability'].numpy()[0]

    return probability


def test_an_na_token_is_a_missing_value_in_training_and_at_serving(binary, tmp_path):
    out, tft_output = binary
    ids = [r['company_xf'] for r in out]
    assert ids[3] == ids[4]  # 'NA' and the empty cell: the same (out-of-vocabulary) id
    assert b'NA' not in tft_output.vocabulary_by_name('company')
    probability = served_json(tft_output, tmp_path)
    assert (probability(company=b'NA') == probability(company=b'N/A')
            == probability(company=b''))
    assert probability(company=b'a') != probability(company=b'')


def test_a_date_a_client_sends_in_another_format_is_refused_not_taken_as_missing(binary,
                                                                                 tmp_path):
    # A flights model trained on '2013-01-01T10:00:00Z' answered '2013-01-01 10:00:00' as if
    # the date were missing: the same prediction as for null.
    probability = served_json(binary[1], tmp_path)
    assert probability(dt_tz=b'') == probability(dt_tz=b'NA')  # missing, as in training
    assert probability(d_dot=b'29.02.2024') != probability(d_dot=b'')
    for column, value in (('dt_tz', b'2023-03-15 08:00:00'), ('d_dot', b'31.02.2024'),
                          ('d_iso', b'15/03/2023')):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"{column}: expected a date/time in the format "
                                 rf"{FORMATS[column]} \(as in training\), got\] "
                                 rf"\[{value.decode()}\]"):
            probability(**{column: value})


@pytest.mark.parametrize('log', [False, True], ids=['standardized', 'log1p'])
def test_a_regression_model_answers_on_the_labels_scale(tmp_path, log):
    # Prices in the thousands: the model learns z-scores (of the prices, or of their log1p),
    # its signatures return prices.
    rng = np.random.default_rng(0)
    labels = [float(x) for x in 5000 + 1500 * rng.standard_normal(len(MOMENTS))]
    std = float(np.std(labels))
    scale = np.log1p(labels) if log else np.array(labels)
    plan = make_plan('regression', label_mean=float(scale.mean()), label_std=float(scale.std()),
                     label_log=log)
    out, tft_output = run_tft(plan, rows(labels), spec(tf.float32), str(tmp_path))
    model = build_keras_model(plan, tft_output, TrainingConfig(
        hidden_units=16, hidden_layers=1, learning_rate=0.02, dropout=0.0))
    features = {name: np.array([r[name] for r in out]) for name in model.input_names}
    model.fit(features, np.array([r['label_xf'] for r in out]), epochs=300, verbose=0)
    export_serving_model(model, tft_output, plan, str(tmp_path / 'export'))
    loaded = tf.saved_model.load(str(tmp_path / 'export'))

    # What a client sends: the cell that is not a date at all left out (the signatures
    # refuse it; the transform in training, after the preflight, never sees one).
    served = [{k: [] if v == [NOT_A_DATE] else v for k, v in r.items()} for r in rows(labels)]
    examples = []
    for r in served:
        feature = {}
        for name, values in r.items():
            if name == 'label':
                continue
            if name == 'fare':
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
            elif name == 'ts':
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
            else:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        examples.append(tf.train.Example(features=tf.train.Features(
            feature=feature)).SerializeToString())
    by_examples = loaded.signatures['serving_default'](
        examples=tf.constant(examples))['value'].numpy()
    json_inputs = {name: tf.constant([r[name][0] if r[name] else b'' for r in served])
                   for name in [*FORMATS, 'company', 'amount']}
    json_inputs.update(ts=tf.constant([r['ts'][0] if r['ts'] else 0 for r in served],
                                      tf.int64),
                       fare=tf.constant(FARES, tf.float32))
    by_json = loaded.signatures[SERVING_JSON](**json_inputs)['value'].numpy()
    # The rows with a timestamp: JSON sends 0 where tf.Examples send nothing.
    has_ts = np.array([m is not None for m in MOMENTS])
    np.testing.assert_allclose(by_json[has_ts], by_examples[has_ts], rtol=1e-5)
    assert np.abs(by_examples - labels).mean() < 0.25 * std  # prices, fitted
    # The Evaluator's label (transform_features) is on the same scale.
    with_label = tf.train.Example.FromString(examples[0])
    with_label.features.feature['label'].float_list.value.append(labels[0])
    transformed = loaded.signatures['transform_features'](
        examples=tf.constant([with_label.SerializeToString()]))
    assert transformed['label_xf'].numpy()[0] == pytest.approx(labels[0])


def test_the_keras_fit_receives_balanced_class_weights_by_class_id(tmp_path):
    labels = [b'rare', b'common', b'common', b'mid', b'common', b'mid', b'common']
    weights = {'common': 0.58, 'mid': 1.17, 'rare': 2.33}
    plan = make_plan('multiclass', class_weights=weights)
    plan = FeaturePlan.from_dict(dict(plan.to_dict(), label_dtype='string'))
    out, tft_output = run_tft(plan, rows(labels), spec(tf.string), str(tmp_path))
    classes = [c.decode() for c in tft_output.vocabulary_by_name('label')]
    assert classes == ['common', 'mid', 'rare']  # most frequent first: ids 0, 1, 2
    expected = {i: weights[c] for i, c in enumerate(classes)}
    assert class_weights(plan, tft_output) == expected

    training = TrainingConfig(hidden_units=8, hidden_layers=1, early_stopping_patience=0,
                              steps_per_epoch=2)
    model = build_keras_model(plan, tft_output, training)
    received = {}
    fit = model.fit

    def recording_fit(*args, **kwargs):  # the real fit, with what it was given noted
        received.update(kwargs)
        return fit(*args, **kwargs)

    model.fit = recording_fit
    features = {name: np.array([r[name] for r in out]) for name in model.input_names}
    data = tf.data.Dataset.from_tensor_slices(
        (features, np.array([r['label_xf'] for r in out]))).batch(4).repeat()
    history = train_keras(model, data, data.take(2), 2, training, str(tmp_path / 'logs'),
                          class_weight=class_weights(plan, tft_output))
    assert received['class_weight'] == expected
    assert np.isfinite(history.history['loss']).all()
    # The optimizer's variables existed before the first step: one trace of the step.
    assert model.train_function.experimental_get_tracing_count() == 1
    # Binary: the plan's '0' / '1' are the ids.
    binary = make_plan(class_weights={'0': 0.5, '1': 5.0})
    assert class_weights(binary, tft_output) == {0: 0.5, 1: 5.0}
    assert class_weights(make_plan(), tft_output) is None


def test_columns_named_as_spreadsheets_name_them_are_served_over_json(tmp_path):
    # 'Body Mass (g)' is no TensorFlow tensor name: serving_json takes it as Body_Mass__g_,
    # and answers as serving_default does for the same rows.
    mass, island = 'Body Mass (g)', 'island name'
    plan = FeaturePlan(features=(Feature(mass, NUMERIC, 'float'),
                                 Feature(island, CATEGORICAL, 'string')),
                       label='label', label_dtype='int', task='binary', oov_buckets=1)
    masses, islands = [3000.0, 4200.0, 5100.0, 3900.0], [b'Biscoe', b'Dream', b'Biscoe', b'x']
    data = [{mass: [m], island: [i], 'label': [n % 2]}
            for n, (m, i) in enumerate(zip(masses, islands))]
    raw_spec = {mass: tf.io.VarLenFeature(tf.float32), island: tf.io.VarLenFeature(tf.string),
                'label': tf.io.VarLenFeature(tf.int64)}
    _, tft_output = run_tft(plan, data, raw_spec, str(tmp_path))
    model = build_keras_model(plan, tft_output, TrainingConfig(hidden_units=4, hidden_layers=1))
    export_serving_model(model, tft_output, plan, str(tmp_path / 'export'))
    loaded = tf.saved_model.load(str(tmp_path / 'export'))

    serve_json = loaded.signatures[SERVING_JSON]
    assert sorted(serve_json.structured_input_signature[1]) == ['Body_Mass__g_', 'island_name']
    by_json = serve_json(Body_Mass__g_=tf.constant(masses),
                         island_name=tf.constant(islands))['probability'].numpy()
    examples = [tf.train.Example(features=tf.train.Features(feature={
        mass: tf.train.Feature(float_list=tf.train.FloatList(value=[m])),
        island: tf.train.Feature(bytes_list=tf.train.BytesList(value=[i]))})).SerializeToString()
        for m, i in zip(masses, islands)]
    by_examples = loaded.signatures['serving_default'](
        examples=tf.constant(examples))['probability'].numpy()
    np.testing.assert_allclose(by_json, by_examples, rtol=1e-6)
