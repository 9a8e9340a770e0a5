"""CSV as people export it, through the real reading code: the delimiter, gzip, quoted line
breaks, encodings and NA tokens (components/csv_format.py) in the config check and the
preflight; date recognition (components/datetimes.py) and schema drafting
(pipeline/schema.py), checked against what ExampleGen and StatisticsGen make of the same
file. ExampleGen's own records are compared with CsvExampleGen's in
tests/fast_csv_example_gen/test_executor.py.
"""
import codecs
import gzip
import dataclasses
import os

import pytest

from components import csv_format, datetimes
from components.csv_format import CsvFormat
from pipeline.config import ConfigError, load_config
from pipeline.preflight import DataError, check_file, preflight


def write(tmp_path, text, name='d.csv', encoding='utf-8'):
    path = tmp_path / name
    data = text.encode(encoding) if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if name.endswith('.gz') else data)
    return str(path)


def config(tmp_path, label='label', **data):
    """A minimal config on the CSV files in ``tmp_path`` (the schema is drafted there)."""
    lines = ['name: t', 'data:', f'  root: {tmp_path}', f'  label: {label}', '  task: binary',
             f'  schema: {tmp_path / "schema.pbtxt"}']
    lines += [f'  {k}: {v}' for k, v in data.items()]
    lines += ['paths:', f'  pipeline_root: {tmp_path / "root"}',
              f'  metadata: {tmp_path / "m.sqlite"}', f'  serving_dir: {tmp_path / "serving"}']
    path = tmp_path / 't.yaml'
    path.write_text('\n'.join(lines) + '\n')
    return load_config(str(path))


# ----------------------------------------------------------------------------------------
# The delimiter.

@pytest.mark.parametrize('text, expected', [
    ('a,b,c\n1,2,3\n4,5,6\n', ','),
    ('a;b;c\n1,5;2,0;x\n3,25;4;y\n', ';'),          # decimal commas, as European exports
    ('a\tb\tc\n1\t2 3\tx\n', '\t'),
    ('a|b|c\n1|2|3\n', '|'),
    ('id,note\n1,"a;b;c;d"\n2,"x;y;z;w"\n', ','),    # semicolons inside quoted fields
    ('id;note\n1;"a,b,c"\n2;"x, y"\n', ';'),
    ('id;note\n1;"two\nlines, here"\n', ';'),         # a quoted line break in the sample
    ('only\n1\n2\n', ','),                            # one column: the comma
])
def test_delimiter_is_detected_from_the_first_records(tmp_path, text, expected):
    fmt = csv_format.resolve(write(tmp_path, text))
    assert (fmt.delimiter, fmt.detected) == (expected, True)


def test_a_configured_delimiter_wins_and_tab_can_be_named(tmp_path):
    path = write(tmp_path, 'a;b\n1;2\n')
    assert csv_format.resolve(path, '|') == CsvFormat('|', 'utf-8', csv_format.NA_VALUES)
    assert csv_format.resolve(path, 'tab').delimiter == '\t'


def test_config_check_reads_a_semicolon_header_and_names_the_delimiter(tmp_path):
    write(tmp_path, 'x;label\n1;0\n2;1\n')
    assert config(tmp_path).data.label == 'label'     # read with the detected ';'
    with pytest.raises(ConfigError) as e:
        config(tmp_path, delimiter="','")
    message = str(e.value)
    assert "data.label: column 'label' is not in" in message
    assert "columns: x;label; fields separated by ',' (comma) (data.delimiter)" in message


def test_config_keys_of_the_reader_are_checked(tmp_path):
    write(tmp_path, 'x,label\n1,0\n')
    for key, value, expected in [
            ('delimiter', "'ab'", 'data.delimiter: expected one character'),
            ('encoding', 'latin9x', "data.encoding: unknown encoding 'latin9x'"),
            ('na_values', '[NA, 5]', 'data.na_values[1]: expected a string, got 5')]:
        with pytest.raises(ConfigError, match=expected.replace('[', r'\[').replace(']', r'\]')):
            config(tmp_path, **{key: value})
    assert config(tmp_path, na_values='[]').data.na_values == ()
    assert config(tmp_path).data.na_values == csv_format.NA_VALUES
    with pytest.raises(ConfigError, match=r"features\.datetime\.x: '%d %b %Y' uses %b"):
        load_config(str(tmp_path / 't.yaml'), ["features.datetime={x: '%d %b %Y'}"])
    with pytest.raises(ConfigError, match=r"features\.datetime: column 'when' is not in"):
        load_config(str(tmp_path / 't.yaml'), ['features.datetime={when: unix_seconds}'])


# ----------------------------------------------------------------------------------------
# The preflight: NA tokens, quoted line breaks, gzip, encodings, blank lines, dates.

NUMBERS = {'count': 'INT', 'length': 'FLOAT'}


def test_na_tokens_in_numeric_columns_pass_the_preflight(tmp_path):
    path = write(tmp_path, 'count,length,island\n1,2.5,Biscoe\nNA,N/A,NA\n"NA",nan,null\n'
                           'None,#N/A,Dream\n,,\n4,NaN,\n')
    assert check_file(path, NUMBERS, fmt=csv_format.resolve(path)) == 6


def test_spaces_around_a_column_name_are_not_part_of_it(tmp_path):
    path = write(tmp_path, ' age ,income , bought\n 41 ,50.5,yes\n', name='padded.csv')
    fmt = csv_format.resolve(path)
    assert csv_format.read_header(path, fmt) == ['age', 'income', 'bought']
    table = csv_format.read_table(path, fmt)
    assert table.column('age').to_pylist() == [' 41 ']  # values as written


def test_an_unnamed_row_name_column_is_named_and_read(tmp_path):
    # R's write.csv and pandas' to_csv leave the row names' column unnamed.
    path = write(tmp_path, '"","count","length"\n"1",1,2.5\n"2",NA,3\n')
    fmt = csv_format.resolve(path)
    assert csv_format.read_header(path, fmt) == ['column_1', 'count', 'length']
    assert check_file(path, NUMBERS, fmt=fmt) == 2
    assert csv_format.read_table(path, fmt).column('column_1').to_pylist() == ['1', '2']
    taken = write(tmp_path, 'column_1,,b\n1,2,3\n', name='e.csv')
    assert csv_format.read_header(taken, csv_format.resolve(taken)) == ['column_1', 'column_2', 'b']


def test_na_tokens_turned_off_are_text_in_a_numeric_column(tmp_path):
    path = write(tmp_path, 'count,length\n1,2.5\nNA,3\n')
    with pytest.raises(DataError) as e:
        check_file(path, NUMBERS, fmt=CsvFormat(na_values=()))
    assert str(e.value).startswith(f"{path}, line 3, column 'count': 'NA' is not an integer; "
                                   'expected an integer (schema type INT)')
    assert "'NA' is one of pandas' missing-value tokens: add it to data.na_values" in str(e.value)


def test_text_in_a_numeric_column_is_still_refused(tmp_path):
    path = write(tmp_path, 'count;length\n1;2,5\n')  # a decimal comma is not a number
    with pytest.raises(DataError, match=r"line 2, column 'length': '2,5' is not a number"):
        check_file(path, NUMBERS, fmt=csv_format.resolve(path))


def test_a_quoted_line_break_is_one_field(tmp_path):
    text = 'id,note,length\n1,"two\nlines",2.5\n2,"three\r\nlines\nhere",3\n3,plain,4\n'
    path = write(tmp_path, text)
    assert check_file(path, {'length': 'FLOAT'}, fmt=csv_format.resolve(path)) == 3


def test_an_unbalanced_quote_is_refused_where_it_opens(tmp_path):
    path = write(tmp_path, 'id,note\n1,fine\n2,"never closed\n3,x\n4,y\n')
    with pytest.raises(DataError) as e:
        check_file(path, fmt=csv_format.resolve(path))
    assert str(e.value).startswith(f'{path}, lines 3-5: not valid CSV')
    assert 'a quote opened on line 3 is never closed?' in str(e.value)
    # Closed by a stray quote further down: the record that results has too many fields.
    path = write(tmp_path, 'id,note\n1,fine\n2,"opened\n3,x\n4,y",z\n5,z\n', name='e.csv')
    with pytest.raises(DataError) as e:
        check_file(path, fmt=csv_format.resolve(path))
    assert str(e.value) == (f'{path}, lines 3-5: 3 fields; expected 2, as in the header; this '
                            'record runs over lines 3-5: a quote opened on line 3 is not closed '
                            'where it should be?')


def test_gzipped_files_are_checked_like_plain_ones(tmp_path):
    path = write(tmp_path, 'count;length\n1;2.5\nNA;3\n', name='d.csv.gz')
    assert check_file(path, NUMBERS, fmt=csv_format.resolve(path)) == 2
    bad = write(tmp_path, 'count;length\n1;2.5\nmany;3\n', name='e.csv.gz')
    with pytest.raises(DataError, match=r"e\.csv\.gz, line 3, column 'count': 'many'"):
        check_file(bad, NUMBERS, fmt=csv_format.resolve(bad))


def test_a_damaged_or_mislabelled_gzip_file_is_refused(tmp_path):
    plain = tmp_path / 'plain.csv.gz'
    plain.write_bytes(b'a,b\n1,2\n')
    cut = tmp_path / 'cut.csv.gz'
    whole = gzip.compress(b'a,b\n' + ''.join(f'{i},{i * i}\n' for i in range(5000)).encode())
    cut.write_bytes(whole[:len(whole) // 2])   # a download cut short
    for path in (plain, cut):
        with pytest.raises(DataError, match=f'{path}: not a readable gzip file .*; expected '
                                            'gzip-compressed CSV'):
            check_file(str(path))


def test_latin1_is_refused_by_default_and_read_with_data_encoding(tmp_path):
    path = write(tmp_path, 'name,length\nCrème,1\nCafé,2\n', encoding='latin-1')
    with pytest.raises(DataError) as e:
        check_file(path, fmt=CsvFormat())
    assert str(e.value).startswith(
        f"{path}, line 2 (byte offset 14: b'\\xe8me,'): bytes that are not valid UTF-8; "
        'expected UTF-8 text (set data.encoding')
    assert 'iconv -f LATIN1 -t UTF-8' in str(e.value)
    assert check_file(path, {'length': 'INT'}, fmt=CsvFormat(encoding='latin-1')) == 2
    assert check_file(path, {'length': 'INT'}, fmt=CsvFormat(encoding='cp1252')) == 2


def test_a_byte_order_mark_and_blank_lines_are_read_as_exampleGen_reads_them(tmp_path):
    path = write(tmp_path, codecs.BOM_UTF8 + b'count,length\n1,2\n\n3,4\n\n')
    fmt = csv_format.resolve(path)
    assert csv_format.read_header(path, fmt) == ['count', 'length']   # not '\ufeffcount'
    assert check_file(path, NUMBERS, fmt=fmt) == 2


def test_a_utf16_file_needs_data_encoding(tmp_path):
    path = write(tmp_path, 'a\tb\n1\t2\n', encoding='utf-16')
    with pytest.raises(DataError, match=r'line 1: the file starts with a UTF-16 byte-order mark'
                                        r'.*set data\.encoding: utf-16'):
        check_file(path, fmt=CsvFormat())
    assert check_file(path, fmt=csv_format.resolve(path, encoding='utf-16')) == 1


def test_a_value_that_is_not_a_date_in_a_date_column_is_refused(tmp_path):
    rows = ''.join(f'2021-03-{d:02d},{d}\n' for d in range(1, 29))
    path = write(tmp_path, 'day,n\n' + rows + 'NA,29\n2021-02-30,30\n')
    with pytest.raises(DataError) as e:
        check_file(path, fmt=csv_format.resolve(path), dates={'day': '%Y-%m-%d'})
    assert str(e.value).startswith(f"{path}, line 31, column 'day': '2021-02-30' is not a date "
                                   "in the format '%Y-%m-%d'")
    assert check_file(path, fmt=csv_format.resolve(path), dates={'n': datetimes.UNIX_SECONDS}) == 30


def resolved_with_a_draft(cfg):
    """``cfg`` with ``data.schema: draft``, and its inputs resolved (the schema drafted)."""
    from pipeline.inputs import DRAFT, resolve
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, schema=DRAFT))
    return cfg, resolve(cfg, log=lambda line: None)


def test_preflight_says_how_it_reads_the_files(tmp_path):
    write(tmp_path, 'x;label\nNA;0\n2;1\n', name='a.csv.gz')
    lines = []
    cfg, inputs = resolved_with_a_draft(config(tmp_path))
    preflight(cfg, inputs, log=lines.append)
    assert [path for path, _, _ in inputs.files] == [str(tmp_path / 'a.csv.gz')]
    assert lines == ["Reading 1 CSV file: delimiter ';' (semicolon), detected; encoding utf-8; "
                     "missing: empty cells and pandas' 18 NA tokens (NA, N/A, null, …)"]


def test_a_file_split_by_another_delimiter_is_named(tmp_path):
    write(tmp_path, 'x;label\n1;0\n', name='a.csv')
    write(tmp_path, 'x,label\n1,0\n', name='b.csv')
    with pytest.raises(DataError) as e:  # resolving reads every file before drafting
        resolved_with_a_draft(config(tmp_path))
    assert str(e.value).startswith(f'{tmp_path / "b.csv"}, line 1: column \'label\' missing')
    assert ("this file looks split by ',' (comma): set data.delimiter, or give every file one "
            'delimiter') in str(e.value)


def test_gzip_row_estimate_uses_the_uncompressed_size(tmp_path):
    text = 'a,b\n' + ''.join(f'{i},{i % 3}\n' for i in range(5000))
    path = write(tmp_path, text, name='d.csv.gz')
    assert os.path.getsize(path) < len(text) / 2
    assert 4500 < csv_format.estimated_rows([path]) < 5500


# ----------------------------------------------------------------------------------------
# Dates: recognised formats, ambiguity.

@pytest.mark.parametrize('values, expected', [
    (['2021-01-05', '2021-12-31'], '%Y-%m-%d'),
    (['2021/01/05', '2021/12/31'], '%Y/%m/%d'),
    (['05.01.2021', '31.12.2021'], '%d.%m.%Y'),
    (['13/01/2021', '01/02/2021'], '%d/%m/%Y'),      # 13 is a day: day first
    (['01/13/2021', '1/2/2021'], '%m/%d/%Y'),        # 13 is a day: month first
    (['2021-01-05T10:30', '2021-12-31T23:59'], '%Y-%m-%dT%H:%M'),
    (['2021-01-05 10:30:00', '2021-12-31 23:59:59'], '%Y-%m-%d %H:%M:%S'),
    (['2021-01-05T10:30:00.125', '2021-12-31T23:59:59.5'], '%Y-%m-%dT%H:%M:%S.%f'),
    (['2021-01-05T10:30:00+01:00', '2021-12-31T23:59:59Z', '2021-06-01T00:00:00-0500'],
     '%Y-%m-%dT%H:%M:%S%z'),
    (['31.12.2021 08:00', '01.01.2022 18:45'], '%d.%m.%Y %H:%M'),
])
def test_each_date_format_is_recognised(values, expected):
    assert datetimes.guess(values) == datetimes.Guess(expected)


def test_ambiguous_day_month_order_is_left_a_string_with_the_reason():
    found = datetimes.guess(['01/02/2021', '03/04/2021', '12/11/2020'])
    assert found.format == ''
    assert found.note.startswith('ambiguous dates: every value reads as %d/%m/%Y and as '
                                 '%m/%d/%Y')


def test_mostly_dates_are_left_a_string_with_the_values_that_do_not_read():
    values = [f'2021-03-{d:02d}' for d in range(1, 29)] + ['2021-02-30', 'unknown']
    found = datetimes.guess(values)
    assert found.format == ''
    assert "looks like dates (%Y-%m-%d), but 2 of 30 distinct values do not read so, e.g. " \
           "'2021-02-30', 'unknown'" in found.note


@pytest.mark.parametrize('values', [['Biscoe', 'Dream'], ['12', '2021'], ['10:30', '11:00'],
                                    ['2021-13-01'], ['2021-01-01', '2021-01-01 10:00']])
def test_other_strings_are_not_dates(values):
    assert datetimes.guess(values).format == ''


def test_the_date_pattern_is_a_tensorflow_regex():
    import tensorflow as tf
    fmt = '%d.%m.%Y %H:%M:%S%z'
    values = ['31.12.2021 08:00:00Z', '1.2.2021 8:05:59+01:00', '31.12.2021 08:00', 'x',
              '32.12.2021 08:00:00Z', '31.12.2021 24:00:00Z']
    reader = datetimes.Reader(fmt)
    in_graph = tf.strings.regex_full_match(values, datetimes.pattern(fmt)).numpy().tolist()
    assert in_graph == [reader.reads(v) for v in values] == [True, True, False, False, False, False]
    # One group per directive, in order: what a graph needs to take the parts out.
    parts = tf.strings.regex_replace(values[:2], datetimes.pattern(fmt), r'\3 \2 \1 \4 \5 \6 \7')
    assert [p.decode() for p in parts.numpy()] == ['2021 12 31 08 00 00 Z', '2021 2 1 8 05 59 +01:00']


# ----------------------------------------------------------------------------------------
# Drafting: the reader ExampleGen uses, TFDV's statistics, the dates.

DRAFT_CSV = ('id;bill_mm;flipper;island;day;stamp;slash;label\n' + ''.join(
    f'{i};{"NA" if i % 5 == 0 else f"{38 + i / 10:.1f}"};{"NA" if i % 7 == 0 else 180 + i};'
    f'{"NA" if i % 6 == 0 else ["Biscoe", "Dream"][i % 2]};{i % 28 + 1:02d}.{i % 12 + 1:02d}.2021;'
    f'2021-03-{i % 28 + 1:02d}T{i % 24:02d}:15:00+01:00;0{i % 9 + 1}/0{i % 8 + 1}/2021;'
    f'{["a", "b"][i % 3 == 0]}\n' for i in range(60)))


@pytest.fixture(scope='module')
def drafted(tmp_path_factory):
    from pipeline.schema import draft_schema
    tmp = tmp_path_factory.mktemp('draft')
    path = write(tmp, DRAFT_CSV, name='penguins.csv.gz')
    return tmp, path, draft_schema(str(tmp / '*.csv*'), 'label', ['id'])


def features(schema):
    return {f.name: f for f in schema.feature}


def test_draft_keeps_numeric_columns_with_na_tokens_numeric(drafted):
    from tensorflow_metadata.proto.v0 import schema_pb2
    by_name = features(drafted[2])
    assert by_name['bill_mm'].type == schema_pb2.FLOAT
    assert by_name['flipper'].type == schema_pb2.INT
    assert by_name['island'].type == schema_pb2.BYTES
    [island] = [d for d in drafted[2].string_domain if d.name == by_name['island'].domain]
    assert sorted(island.value) == ['Biscoe', 'Dream']          # NA is missing, not a value


def test_draft_marks_integers_written_with_leading_zeros_categorical(tmp_path):
    from pipeline.schema import describe_schema, draft_schema
    zips = ['02134', '10001', '94110', '01002']
    write(tmp_path, 'zip,rooms,label\n' + ''.join(
        f'{zips[i % 4]},{i % 6 + 1},{i % 2}\n' for i in range(40)))
    schema = draft_schema(str(tmp_path / '*.csv'), 'label')
    by_name = features(schema)
    assert by_name['zip'].int_domain.is_categorical
    assert not by_name['rooms'].int_domain.is_categorical
    assert "leading zeros (e.g. '0" in '\n'.join(describe_schema(schema))


def test_draft_notes_a_column_of_numbers_but_for_a_few_error_tokens(tmp_path):
    from pipeline.schema import describe_schema, draft_schema
    write(tmp_path, 'reading,name,label\n' + ''.join(
        f'{"ERR" if i % 25 == 3 else f"{i / 7:.3f}"},{["a", "b", "c"][i % 3]},{i % 2}\n'
        for i in range(100)))
    text = '\n'.join(describe_schema(draft_schema(str(tmp_path / '*.csv'), 'label')))
    assert ("draft: text, but numbers in all but 4 of 100 rows: 'ERR' (4); if they mean "
            'missing, list them in data.na_values') in text
    assert text.count('draft:') == 1  # not the column of words


def test_draft_says_the_plan_reads_numbers_written_as_text(tmp_path):
    from pipeline.schema import describe_schema, draft_schema
    write(tmp_path, 'temperature;price;label\n' + ''.join(
        f'{i / 3:.2f};${i * 1000:,};{i % 2}\n'.replace('.', ',', 1) for i in range(1, 40)))
    text = '\n'.join(describe_schema(draft_schema(str(tmp_path / '*.csv'), 'label')))
    assert ("draft: numbers written as text (e.g. '0,33', with a decimal comma): the feature "
            'plan reads them as numbers') in text
    assert "draft: numbers written as text (e.g. '$1,000'): the feature plan" in text


def test_draft_records_date_columns_in_time_domain(drafted):
    by_name = features(drafted[2])
    assert by_name['day'].time_domain.string_format == '%d.%m.%Y'
    assert by_name['stamp'].time_domain.string_format == '%Y-%m-%dT%H:%M:%S%z'
    assert not by_name['day'].HasField('domain')                 # no closed domain of dates
    slash = by_name['slash']
    assert slash.WhichOneof('domain_info') is None
    assert slash.annotation.comment[0].startswith('draft: ambiguous dates')


def test_draft_agrees_with_the_examples_exampleGen_writes(drafted, tmp_path):
    """ExampleGen's statistics of the same file validate against the draft: same types,
    the NA cells missing, the dates fine."""
    import tensorflow_data_validation as tfdv
    from tfx.types import standard_artifacts, standard_component_specs as specs

    from components.fast_statistics_gen import executor as stats_executor
    from fast_csv_example_gen.test_executor import run
    from fast_csv_example_gen.test_executor import fast_executor
    tmp, path, schema = drafted
    examples = run(fast_executor.Executor, tmp_path, 'gen',
                   files={'penguins.csv.gz': open(path, 'rb').read()},
                   fmt=csv_format.resolve(path))
    out = standard_artifacts.ExampleStatistics()
    out.uri = str(tmp_path / 'stats')
    stats_executor.Executor().Do({specs.EXAMPLES_KEY: [examples]}, {specs.STATISTICS_KEY: [out]}, {})
    for split in ('train', 'eval'):
        stats = tfdv.load_stats_binary(os.path.join(out.uri, f'Split-{split}', 'FeatureStats.pb'))
        anomalies = tfdv.validate_statistics(stats, schema, environment='TRAINING')
        assert dict(anomalies.anomaly_info) == {}, split


def test_features_datetime_overrides_the_guess_and_refuses_values_that_do_not_read(drafted):
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.schema import draft_schema
    tmp, path, _ = drafted
    by_name = features(draft_schema([path], 'label', (), None,
                                    {'slash': '%m/%d/%Y', 'id': 'unix_seconds'}))
    assert by_name['slash'].time_domain.string_format == '%m/%d/%Y'
    assert by_name['id'].time_domain.integer_format == schema_pb2.TimeDomain.UNIX_SECONDS
    with pytest.raises(DataError, match=r"features\.datetime\.day: '01\.01\.2021', .* do not read "
                                        r"as '%m/%d/%Y'"):
        draft_schema([path], 'label', (), None, {'day': '%m/%d/%Y'})
    with pytest.raises(DataError, match=r"features\.datetime\.flipper: '%Y%m%d' reads dates "
                                        r"from text, but 'flipper' .* holds integers"):
        draft_schema([path], 'label', (), None, {'flipper': '%Y%m%d'})
    with pytest.raises(DataError, match=r"features\.datetime\.island: unix_seconds needs whole "
                                        r"numbers"):
        draft_schema([path], 'label', (), None, {'island': 'unix_seconds'})


def test_draft_is_shown_one_line_per_column(drafted):
    from pipeline.schema import describe_schema
    lines = describe_schema(drafted[2])
    assert lines[0].split() == ['column', 'type', 'presence', 'domain']
    text = '\n'.join(lines)
    assert '  bill_mm  FLOAT  may be missing           any number' in text
    assert '  day      BYTES  required                 date/time, format %d.%m.%Y' in text
    assert '  island   BYTES  may be missing           2 values: Biscoe, Dream' in text
    assert '  label    BYTES  required, training only  2 values: ' in text
    assert '\n             draft: ambiguous dates: every value reads as %d/%m/%Y' in text


def test_the_draft_table_stays_aligned_for_a_label_that_may_be_missing():
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.schema import describe_schema
    schema = schema_pb2.Schema()
    schema.feature.add(name='state', type=schema_pb2.BYTES).not_in_environment.append('SERVING')
    schema.feature.add(name='x', type=schema_pb2.FLOAT)
    lines = describe_schema(schema)
    assert lines[1].endswith('may be missing, training only  any string')
    assert len({line.index('any ') for line in lines[1:]}) == 1  # one column for the domain


def test_a_domain_value_with_a_line_break_or_comma_is_shown_quoted():
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.schema import describe_schema
    schema = schema_pb2.Schema()
    f = schema.feature.add(name='note', type=schema_pb2.BYTES)
    f.string_domain.value.extend(['line one\nline two', 'a, b', 'short'])
    [_, line] = describe_schema(schema)
    assert line.endswith("3 values: 'line one\\nline two', 'a, b', short")
