"""The feature plan's decisions (components/features.py) on the profile of tiny CSVs
(pipeline/profile.py): what each column becomes, and the reason it gives."""
import math
import os
import random
import re

import pytest
import yaml
from tensorflow_metadata.proto.v0 import schema_pb2

from components.features import DATETIME, NUMERIC, describe, plan_from_schema
from pipeline.config import load_config
from pipeline.profile import data_profile, profile_files
from testlib import write_csv

TYPES = {'float': schema_pb2.FLOAT, 'int': schema_pb2.INT, 'string': schema_pb2.BYTES}
HEADER = ['passenger', 'row', 'source', 'fare', 'temperature', 'cabin', 'when', 'label']


def make_rows(n=200, seed=0, positives=0.05):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append([f'Passenger {i} {rng.random():.6f}',      # a name: unique strings
                     i + 1,                                       # a row number
                     'web',                                       # the same in every row
                     round(rng.lognormvariate(2, 1.2), 2),        # heavy-tailed, >= 0
                     round(rng.gauss(20, 5), 1),                  # symmetric
                     rng.choice(['A', 'B', 'C', 'NA', '']),       # NA token and empty cells
                     f'2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}',
                     int(rng.random() < positives)])
    return rows


def schema_of(types, label='label', time_formats=None):
    schema = schema_pb2.Schema()
    for name, dtype in types.items():
        f = schema.feature.add(name=name, type=TYPES[dtype])
        if time_formats and name in time_formats:
            f.time_domain.string_format = time_formats[name]
    return schema


TYPES_BY_COLUMN = {'passenger': 'string', 'row': 'int', 'source': 'string', 'fare': 'float',
                   'temperature': 'float', 'cabin': 'string', 'when': 'string', 'label': 'int'}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp('plan'))
    write_csv(os.path.join(directory, 'data', 'data.csv'), HEADER, make_rows())
    return directory


def config_for(directory, task='binary', label='label', positive_class='', **features):
    """A config for the CSV under ``directory``/data (the schema is built in the test)."""
    path = os.path.join(directory, f'plan-{task}.yaml')
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump({'name': 'plan', 'data': {'root': os.path.join(directory, 'data'),
                                                 'label': label, 'task': task,
                                                 'positive_class': positive_class,
                                                 'schema': os.path.join(directory, 's.pbtxt')},
                        'features': features,
                        'paths': {'pipeline_root': directory, 'metadata': directory + '/m',
                                  'serving_dir': directory + '/s'}}, f)
    return load_config(path)


def plan_of(data, task='binary', label='label', time_formats=None, **features):
    config = config_for(data, task, label, **features)
    schema = schema_of(TYPES_BY_COLUMN, time_formats=time_formats)
    return plan_from_schema(schema, config, data_profile(config, schema))


def reasons(plan):
    return dict(describe(plan.to_dict()))


def test_ids_names_and_constants_are_dropped_with_the_reason(data):
    plan = plan_of(data)
    dropped = {d.name: d.reason for d in plan.dropped}
    assert set(dropped) == {'passenger', 'row', 'source'}
    assert dropped['passenger'].startswith('near-unique strings (200 distinct in 200 values)')
    assert dropped['row'] == ('unique integers (1..200, 200 distinct in the 200 rows profiled): '
                              'a row number or an ID')
    assert dropped['source'] == "constant: the value 'web' in every one of the 200 rows profiled"
    assert {f.name for f in plan.features} == {'fare', 'temperature', 'cabin', 'when'}
    # The summary's lines come from the plan dict alone: every column, with its reason.
    lines = reasons(plan)
    assert set(lines) == set(HEADER)
    assert lines['passenger'].startswith('not a feature: near-unique strings')
    # Dropped columns stay in the contract with clients (the schema), unlike data.exclude.
    assert plan.excluded == ()


def test_heavy_tailed_non_negative_numbers_are_log_scaled_and_symmetric_ones_not(data):
    by_name = {f.name: f for f in plan_of(data).features}
    assert by_name['fare'].kind == NUMERIC and by_name['fare'].log_scale
    assert 'heavy-tailed (skew' in by_name['fare'].reason and 'log1p' in by_name['fare'].reason
    assert not by_name['temperature'].log_scale
    assert by_name['temperature'].reason == 'numeric (float): mean-filled, z-score'


def test_a_rare_zero_one_flag_is_not_called_heavy_tailed(tmp_path):
    # Boston's `chas` (7% ones): skew 3.4, non-negative, but two values have no tail; log1p
    # would not change its z-scores, and the summary said "heavy-tailed".
    rows = [[int(i % 14 == 0), i % 3, round(random.Random(i).gauss(0, 1), 3)] for i in range(300)]
    write_csv(str(tmp_path / 'data' / 'data.csv'), ['flag', 'level', 'label'], rows)
    config = config_for(str(tmp_path), task='regression')
    schema = schema_of({'flag': 'int', 'level': 'int', 'label': 'float'})
    plan = plan_from_schema(schema, config, data_profile(config, schema))
    flag = {f.name: f for f in plan.features}['flag']
    assert not flag.log_scale and flag.reason == 'numeric (int): mean-filled, z-score'


def test_a_reason_gives_whole_numbers_as_they_are(tmp_path):
    # gapminder's population: the summary said "min 6e+04" for 60,011.
    rng = random.Random(3)
    rows = [[60011 + int(rng.lognormvariate(10, 2)), round(rng.gauss(0, 1), 3)] for _ in range(299)]
    rows.append([60011, 0.5])
    write_csv(str(tmp_path / 'data' / 'data.csv'), ['pop', 'label'], rows)
    config = config_for(str(tmp_path), task='regression')
    schema = schema_of({'pop': 'int', 'label': 'float'})
    plan = plan_from_schema(schema, config, data_profile(config, schema))
    pop = {f.name: f for f in plan.features}['pop']
    assert pop.log_scale and re.search(r'heavy-tailed \(skew \d+(\.\d+)?, min 60,0\d\d\): log1p',
                                       pop.reason), pop.reason


def test_each_rule_can_be_turned_off_and_an_explicit_choice_wins(data):
    plan = plan_of(data, roles={'id': False, 'constant': False, 'log_scale': False,
                                'datetime': False, 'class_weights': False})
    assert plan.dropped == () and not any(f.log_scale for f in plan.features)
    assert plan.class_weights == {}
    assert {f.name: f.kind for f in plan.features}['when'] == 'categorical'
    # Named in features.categorical: kept whatever the ID rule says.
    plan = plan_of(data, categorical=['passenger'])
    assert 'passenger' in {f.name for f in plan.features}
    assert 'passenger' not in {d.name for d in plan.dropped}


def test_a_schema_time_domain_makes_a_date_column(data):
    plan = plan_of(data, time_formats={'when': '%Y-%m-%d'})
    [when] = [f for f in plan.features if f.name == 'when']
    assert when.kind == DATETIME and when.time_format == '%Y-%m-%d'
    # A date without a time has no hour part.
    assert when.outputs[:3] == ('when_year_xf', 'when_month_xf', 'when_month_sin_xf')
    assert not any('hour' in name for name in when.outputs)
    assert 'year, month, day, weekday, yearday' in when.reason


def test_date_formats_become_patterns_with_one_group_per_part():
    from components.features import date_regex
    pattern, groups = date_regex('%z %d.%m.%Y')  # an offset first: not a group of its own
    assert groups == ('d', 'm', 'Y')
    assert re.fullmatch(pattern, '+01:00 29.02.2024').groups() == ('29', '02', '2024')
    assert re.fullmatch(pattern, 'Z 1.2.1999') and not re.fullmatch(pattern, '29.02.2024')


def test_a_date_format_the_graph_cannot_parse_is_refused_naming_the_column(data):
    with pytest.raises(ValueError, match=r"when: time_domain: the format '%Y-%b-%d': %b is not "
                                         r"supported"):
        plan_of(data, time_formats={'when': '%Y-%b-%d'})


def test_a_minority_class_under_ten_percent_gets_balanced_class_weights(data):
    plan = plan_of(data)
    positives = sum(r[-1] for r in make_rows())
    n = len(make_rows())
    assert positives / n < 0.1
    assert plan.class_weights == pytest.approx({'1': n / (2 * positives),
                                                '0': n / (2 * (n - positives))})
    assert 'balanced class weights' in plan.label_reason


def test_the_label_line_names_the_classes_as_the_data_writes_them(tmp_path):
    rows = [r[:-1] + ['Yes' if r[-1] else 'No'] for r in make_rows(positives=0.3)]
    write_csv(str(tmp_path / 'data' / 'data.csv'), HEADER, rows)
    config = config_for(str(tmp_path), positive_class='Yes')
    schema = schema_of(dict(TYPES_BY_COLUMN, label='string'))
    plan = plan_from_schema(schema, config, data_profile(config, schema))
    assert re.match(r"rarest class 'Yes' is [23]\d\.\d% of the rows: unweighted", plan.label_reason)


def test_a_balanced_label_is_unweighted(tmp_path):
    write_csv(str(tmp_path / 'data' / 'data.csv'), HEADER, make_rows(positives=0.4))
    plan = plan_of(str(tmp_path))
    assert plan.class_weights == {} and 'unweighted' in plan.label_reason


def test_a_regression_label_gets_its_mean_and_std(data):
    plan = plan_of(data, task='regression', label='temperature')
    temperatures = [r[4] for r in make_rows()]
    mean = sum(temperatures) / len(temperatures)
    std = (sum((t - mean) ** 2 for t in temperatures) / len(temperatures)) ** 0.5
    assert (plan.label_mean, plan.label_std) == pytest.approx((mean, std))
    assert plan_of(data, task='regression', label='temperature',
                   roles={'standardize_label': False}).label_std == 1.0


def test_a_skewed_non_negative_regression_label_is_learnt_on_its_log_scale(data):
    # lognormal: skewed, >= 0; the rule is opt-in (features.roles.log_label)
    plan = plan_of(data, task='regression', label='fare', roles={'log_label': True})
    logs = [math.log1p(r[3]) for r in make_rows()]
    mean = sum(logs) / len(logs)
    std = (sum((x - mean) ** 2 for x in logs) / len(logs)) ** 0.5
    assert plan.label_log and (plan.label_mean, plan.label_std) == pytest.approx((mean, std))
    assert 'log1p(label)' in plan.label_reason
    # A symmetric label stays on its own scale; the rule can be turned off.
    assert not plan_of(data, task='regression', label='temperature',
                       roles={'log_label': True}).label_log
    off = plan_of(data, task='regression', label='fare')
    assert not off.label_log and off.label_mean == pytest.approx(
        sum(r[3] for r in make_rows()) / len(make_rows()))


def test_a_rare_class_of_a_multiclass_label_is_unweighted_unless_asked(tmp_path):
    rng = random.Random(0)
    header = ['x', 'label']
    rows = [[rng.random(), 'rare' if i % 40 == 0 else rng.choice(['a', 'b'])]
            for i in range(400)]
    write_csv(str(tmp_path / 'data' / 'data.csv'), header, rows)
    schema = schema_of({'x': 'float', 'label': 'string'})
    config = config_for(str(tmp_path), task='multiclass')
    plan = plan_from_schema(schema, config, data_profile(config, schema))
    assert plan.class_weights == {} and 'weights would cost accuracy' in plan.label_reason
    config = config_for(str(tmp_path), task='multiclass', roles={'class_weights': 'all'})
    weighted = plan_from_schema(schema, config, data_profile(config, schema))
    assert weighted.class_weights['rare'] == pytest.approx(400 / (3 * 10))


def test_when_no_column_is_left_the_error_says_why(tmp_path):
    write_csv(str(tmp_path / 'data' / 'data.csv'), ['id', 'label'],
              [[i, i % 2] for i in range(50)])
    config = config_for(str(tmp_path))
    schema = schema_of({'id': 'int', 'label': 'int'})
    with pytest.raises(ValueError, match=r"^features: no column is left to be a feature: "
                                         r"besides the label 'label', every column was dropped "
                                         r"\(id: unique integers \(0..49, 50 distinct"):
        plan_from_schema(schema, config, data_profile(config, schema))
    write_csv(str(tmp_path / 'data' / 'data.csv'), ['label'], [[i % 2] for i in range(50)])
    with pytest.raises(ValueError, match=r"^features: no column to be a feature: the data has "
                                         r"only the label 'label'"):
        plan_from_schema(schema_of({'label': 'int'}), config,
                         data_profile(config, schema_of({'label': 'int'})))


def test_the_profile_counts_na_tokens_and_empty_cells_as_missing(data):
    profile = profile_files([os.path.join(data, 'data', 'data.csv')],
                            {'cabin': 'string', 'fare': 'float'}, na_values=('NA',))
    rows = make_rows()
    assert profile['cabin'].present == sum(r[5] not in ('NA', '') for r in rows)
    assert profile['cabin'].distinct == 3
    assert profile['fare'].min == min(r[3] for r in rows)


def test_numbers_written_as_text_are_numeric_features(tmp_path):
    # A finance export: amounts with a currency sign and thousands separators, rates with a
    # percent sign, some missing; and a code column that only looks numeric in places.
    rng = random.Random(3)
    rows = [[f'${rng.lognormvariate(9, 1):,.2f}', f'{rng.uniform(1, 30):.1f}%',
             rng.choice(['12', 'A7', '3']), i % 2] for i in range(300)]
    rows[5][0] = rows[6][1] = 'NA'
    write_csv(str(tmp_path / 'data' / 'data.csv'), ['amount', 'rate', 'code', 'label'], rows)
    config = config_for(str(tmp_path))
    schema = schema_of({'amount': 'string', 'rate': 'string', 'code': 'string', 'label': 'int'})
    profile = data_profile(config, schema)
    assert profile['amount'].formatted and profile['rate'].formatted
    assert not profile['code'].formatted
    amounts = [float(r[0].strip('$').replace(',', '')) for r in rows if r[0] != 'NA']
    assert profile['amount'].min == pytest.approx(min(amounts))
    assert profile['amount'].present == 299
    plan = plan_from_schema(schema, config, profile)
    kinds = {f.name: f.kind for f in plan.features}
    assert kinds == {'amount': NUMERIC, 'rate': NUMERIC, 'code': 'categorical'}
    assert 'numbers written as text' in reasons(plan)['rate']
    assert {f.name: f.log_scale for f in plan.features}['amount']  # skewed amounts: log1p
    # Before this rule, the amounts were near-unique strings, dropped as an ID.
    off = config_for(str(tmp_path), roles={'formatted_numbers': False})
    assert 'near-unique strings' in dict((d.name, d.reason) for d in
                                         plan_from_schema(schema, off, profile).dropped)['amount']
    kept = config_for(str(tmp_path), categorical=['rate'])
    assert {f.name: f.kind for f in plan_from_schema(schema, kept, profile).features}['rate'] \
        == 'categorical'


def test_a_column_of_numbers_but_for_a_total_row_says_how_to_read_it_as_numbers(tmp_path):
    # A spreadsheet's export ends with its "Total" row: the column is text, and the plan
    # says which values keep it from being numbers.
    rows = [[18 + i % 50, i % 2] for i in range(300)] + [['Total', '']]
    write_csv(str(tmp_path / 'data' / 'data.csv'), ['age', 'label'], rows)
    config = config_for(str(tmp_path))
    schema = schema_of({'age': 'string', 'label': 'int'})
    profile = data_profile(config, schema)
    assert profile['age'].stray == (('Total', 1),)
    assert ("numbers but for 'Total' (1); if they mean missing, list them in data.na_values"
            in reasons(plan_from_schema(schema, config, profile))['age'])
    assert data_profile(config, schema)['age'].stray == (('Total', 1),)  # from the cache


def test_numbers_with_a_decimal_comma_are_numeric_features(tmp_path):
    # A European spreadsheet's export: semicolons between fields, a comma as the decimal
    # mark and points between thousands. Before, these columns were string categories.
    rng = random.Random(5)
    rows = []
    for i in range(300):
        temperature = rng.uniform(-5, 35)
        rows.append([f'{temperature:.2f}'.replace('.', ','),
                     f'{rng.uniform(1000, 90000):,.1f}'.translate(str.maketrans(',.', '.,')),
                     f'{rng.randint(1000, 9999):,}', i % 2])
    rows[7][0] = 'NA'
    path = tmp_path / 'data' / 'data.csv'
    path.parent.mkdir()
    path.write_text('temperature;price;count;label\n'
                    + ''.join(';'.join(map(str, r)) + '\n' for r in rows), encoding='utf-8')
    config = config_for(str(tmp_path))
    schema = schema_of({'temperature': 'string', 'price': 'string', 'count': 'string',
                        'label': 'int'})
    profile = data_profile(config, schema)
    assert profile['temperature'].formatted == ',' and profile['price'].formatted == ','
    # "1,234" alone reads both ways: with the point as the decimal mark (thousands "1,234")
    assert profile['count'].formatted == '.'
    temperatures = [float(r[0].replace(',', '.')) for r in rows if r[0] != 'NA']
    assert profile['temperature'].min == pytest.approx(min(temperatures))
    assert profile['temperature'].mean == pytest.approx(sum(temperatures) / 299)
    assert profile['price'].max == pytest.approx(
        max(float(r[1].replace('.', '').replace(',', '.')) for r in rows))
    plan = plan_from_schema(schema, config, profile)
    marks = {f.name: (f.kind, f.decimal_mark) for f in plan.features}
    assert marks == {'temperature': (NUMERIC, ','), 'price': (NUMERIC, ','), 'count': (NUMERIC, '.')}
    assert 'read with a decimal comma' in reasons(plan)['temperature']


def test_an_unchanged_rerun_reuses_the_profile_and_a_changed_file_is_profiled_again(
        tmp_path, monkeypatch):
    import pipeline.profile as profile
    path = os.path.join(str(tmp_path), 'data', 'data.csv')
    write_csv(path, HEADER, make_rows(50))
    config, schema = config_for(str(tmp_path)), schema_of(TYPES_BY_COLUMN)
    first = data_profile(config, schema)
    read = []
    real = profile.profile_files
    monkeypatch.setattr(profile, 'profile_files', lambda *a, **k: read.append(a[0]) or real(*a, **k))
    assert data_profile(config, schema) == first and not read  # kept, and equal
    write_csv(path, HEADER, make_rows(60, seed=1))
    changed = data_profile(config, schema)
    assert read == [[path]] and changed['row'].rows == 60 and changed['fare'] != first['fare']
