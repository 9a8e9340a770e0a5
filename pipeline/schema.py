"""The curated schema: loading it, making a first draft of it from the data, and showing it.

A draft is TFDV's inferred schema of the data as ExampleGen reads it, with the two
environments set up: the label (and the excluded columns) are required in TRAINING only,
so a serving request need not carry them. The files are read by the reader ExampleGen uses
(``components/csv_format.py``: delimiter, encoding, gzip, NA tokens, its column types), and
the statistics are TFDV's in-memory ones, as StatisticsGen computes them, so the draft and
the examples agree (``NA`` in a column of numbers leaves it a number). Closed string
domains are kept only for columns with few values; numeric shapes are left out so that a
missing value is a validation anomaly, not a parse error; an optional column may have zero
values (an empty cell). Date columns get a ``time_domain`` (``components/datetimes.py``),
and a column that looked like dates but was left a string says why in its
``annotation.comment``.
"""
import hashlib
import os
from typing import Dict, List, Mapping, Optional, Sequence, Union

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

TRAINING, SERVING = 'TRAINING', 'SERVING'
# A string column with more distinct values than this gets no closed domain in the draft.
MAX_DOMAIN_VALUES = 20
# How many of a closed domain's values the schema's description shows.
SHOWN_VALUES = 5


def parse_schema(text: str, path: str) -> schema_pb2.Schema:
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as e:
        raise ValueError(f'{path} is not a valid schema text proto: {e}') from None


def load_schema(path: str) -> schema_pb2.Schema:
    with open(path, encoding='utf-8') as f:
        return parse_schema(f.read(), path)


def write_schema(schema: schema_pb2.Schema, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text_format.MessageToString(schema))
    os.replace(tmp, path)


def _draft_files(csv_pattern: Union[str, Sequence[str]]) -> List[str]:
    import glob

    from components.csv_format import is_csv_name
    if isinstance(csv_pattern, str):
        return sorted(f for f in glob.glob(csv_pattern) if is_csv_name(f))
    return list(csv_pattern)


def draft_schema(csv_pattern: Union[str, Sequence[str]], label: str, training_only=(),
                 csv_format=None, datetime: Optional[Mapping[str, str]] = None
                 ) -> schema_pb2.Schema:
    """TFDV's inferred schema of the CSV files, with environments, modest domains and dates.

    ``csv_pattern``: a glob (its ``*.csv`` and ``*.csv.gz`` files) or a list of files.
    ``csv_format``: how to read them (``components.csv_format.CsvFormat``; default: the
    delimiter detected in the first file, UTF-8, pandas' NA tokens). ``datetime``: the
    config's ``features.datetime`` ({column: strptime format or ``unix_seconds``}), which
    overrides date recognition; a value that does not read in its given format is refused
    (``DataError``).
    """
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl

    from components import csv_format as reader

    files = _draft_files(csv_pattern)
    if not files:
        raise ValueError(f'{csv_pattern}: no *.csv or *.csv.gz files to draft a schema from')
    fmt = csv_format or reader.resolve(files[0])
    table, types = reader.read_tables(files, fmt)
    if table.num_rows == 0:
        raise ValueError(f'{files[0]}: a header but no data rows; cannot draft a schema')
    batch = reader.to_record_batch(table.combine_chunks().to_batches()[0], types)
    # The options FastStatisticsGen uses: the statistics the pipeline computes.
    stats = stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions())
    schema = tfdv.infer_schema(stats, infer_feature_shape=False)
    _record_dates(schema, table, dict(datetime or {}), files[0])
    _record_codes(schema, table)
    _note_text_numbers(schema, table)
    referenced = {f.domain for f in schema.feature if f.HasField('domain')}
    keep = [d for d in schema.string_domain
            if d.name in referenced and len(d.value) <= MAX_DOMAIN_VALUES]
    del schema.string_domain[:]
    schema.string_domain.extend(keep)
    small = {d.name for d in keep}
    for f in schema.feature:
        if f.HasField('domain') and f.domain not in small:
            f.ClearField('domain')
    for f in schema.feature:
        # ExampleGen writes a missing cell as a feature with no values, so an optional
        # column must allow zero values.
        if f.presence.min_fraction < 1.0 and f.HasField('value_count'):
            f.value_count.min = 0
    schema.default_environment[:] = [TRAINING, SERVING]
    for f in schema.feature:
        if f.name == label or f.name in training_only:
            f.not_in_environment.append(SERVING)
    return schema


def _record_dates(schema: schema_pb2.Schema, table, overrides: Dict[str, str],
                  where: str) -> None:
    """Sets the ``time_domain`` of date columns: the ``overrides``, else the format
    ``components.datetimes.guess`` finds in a string column's distinct values."""
    from pyarrow import compute as pc

    from components import datetimes
    from pipeline.preflight import DataError

    for f in schema.feature:
        given = overrides.get(f.name, '')
        key = f'features.datetime.{f.name}'
        if given == datetimes.UNIX_SECONDS:
            if f.type != schema_pb2.INT:
                raise DataError(f'{key}: unix_seconds needs whole numbers, but {f.name!r} in '
                                f'{where} holds {_kind(f)}')
            f.time_domain.integer_format = schema_pb2.TimeDomain.UNIX_SECONDS
            f.annotation.comment.append('draft: Unix seconds from features.datetime')
            continue
        if f.type != schema_pb2.BYTES:
            if given:
                raise DataError(f'{key}: {given!r} reads dates from text, but {f.name!r} in '
                                f'{where} holds {_kind(f)} (digits alone, like 20210131, are '
                                'read as numbers); expected a column of dates written with '
                                'separators, or unix_seconds')
            continue
        values = pc.unique(table.column(f.name).drop_null()).to_pylist()
        if given:
            bad = datetimes.unreadable(values, given)
            if bad:
                raise DataError(f'{key}: {", ".join(map(repr, bad))} in {f.name!r} ({where}) '
                                f'do not read as {given!r}; expected every value in that '
                                'format, or a missing-value token (data.na_values)')
            found = datetimes.Guess(given, 'date format from features.datetime')
        else:
            found = datetimes.guess(values)
        if found.format:
            f.time_domain.string_format = found.format  # replaces a string domain
        if found.note:
            f.annotation.comment.append('draft: ' + found.note)


def _record_codes(schema: schema_pb2.Schema, table) -> None:
    """Marks an integer column categorical when its values are written with leading zeros
    (ZIP codes, FIPS and account numbers): a code, whose size means nothing."""
    from pyarrow import compute as pc

    for f in schema.feature:
        if f.type != schema_pb2.INT or f.HasField('time_domain'):
            continue
        values = pc.unique(table.column(f.name).drop_null())
        padded = values.filter(pc.match_substring_regex(values, r'^\s*[+-]?0[0-9]'))
        if len(padded):
            f.int_domain.is_categorical = True
            f.annotation.comment.append(
                f'draft: categorical: values written with leading zeros (e.g. '
                f'{padded[0].as_py().strip()!r}) are codes, not quantities')


def _note_text_numbers(schema: schema_pb2.Schema, table) -> None:
    """Notes a text column of formatted numbers ("$5.00", "22,56"), which the feature plan
    reads as numbers, and one that would be numbers but for a few values: if they mean
    missing, ``data.na_values`` makes it a column of numbers."""
    from components.features import stray_note
    from pipeline.profile import decimal_mark, stray_text
    for f in schema.feature:
        if f.type != schema_pb2.BYTES or f.HasField('time_domain'):
            continue
        cells = table.column(f.name).drop_null().combine_chunks()
        if not len(cells):
            continue
        mark = decimal_mark(cells)
        stray = () if mark else stray_text(cells)
        if mark:
            f.annotation.comment.append(
                f'draft: numbers written as text (e.g. {cells[0].as_py()!r}'
                f'{", with a decimal comma" if mark == "," else ""}): the feature plan reads '
                'them as numbers (features.roles.formatted_numbers)')
        elif stray:
            f.annotation.comment.append(
                f'draft: text, but numbers in all but {sum(n for _, n in stray)} of '
                f'{len(cells)} rows: {stray_note(stray)}')


def _kind(feature) -> str:
    return {schema_pb2.INT: 'integers', schema_pb2.FLOAT: 'numbers',
            schema_pb2.BYTES: 'text'}.get(feature.type, 'no values')


def describe_schema(schema: schema_pb2.Schema) -> List[str]:
    """One line per column: its name, type, presence ("required": a value in every row),
    and domain or date format; and under it, drafting's notes (``annotation.comment``)."""
    width = max([len(f.name) for f in schema.feature] + [6])
    rows = []
    for f in schema.feature:
        # Every CSV row has every column; a missing cell is a feature with no value.
        presence = ('required' if f.HasField('value_count') and f.value_count.min >= 1
                    and f.presence.min_fraction >= 1.0 else 'may be missing')
        if SERVING in f.not_in_environment:
            presence += ', training only'
        rows.append((f, schema_pb2.FeatureType.Name(f.type), presence))
    room = max([len(presence) for _, _, presence in rows] + [len('presence')])
    lines = [f'  {"column":<{width}}  type   {"presence":<{room}}  domain']
    for f, kind, presence in rows:
        lines.append(f'  {f.name:<{width}}  {kind:<5}  {presence:<{room}}  {_domain(schema, f)}')
        lines += [f'  {"":<{width}}    {comment}' for comment in f.annotation.comment]
    return lines


def _domain(schema: schema_pb2.Schema, f) -> str:
    which = f.WhichOneof('domain_info')
    if which == 'time_domain':
        if f.time_domain.HasField('string_format'):
            return f'date/time, format {f.time_domain.string_format}'
        return 'date/time, ' + schema_pb2.TimeDomain.IntegerTimeFormat.Name(
            f.time_domain.integer_format)
    if which in ('int_domain', 'float_domain'):
        d = getattr(f, which)
        low, high = (('{}' if which == 'int_domain' else '{:g}').format(getattr(d, k))
                     if d.HasField(k) else '' for k in ('min', 'max'))
        span = (f' {low}..{high}' if low and high else f' >= {low}' if low else
                f' <= {high}' if high else '')
        kind = 'integers' if which == 'int_domain' else 'numbers'
        return f'{kind}{span}{", categorical" if getattr(d, "is_categorical", False) else ""}'
    values = (f.string_domain.value if which == 'string_domain' else
              next((d.value for d in schema.string_domain if d.name == f.domain), None)
              if which == 'domain' else None)
    if values is not None:
        # A value holding a line break or a comma is shown quoted, so the table stays one
        # line per column and the list reads unambiguously.
        shown = ', '.join(v if v.isprintable() and ',' not in v and v.strip() == v else
                          repr(v) for v in values[:SHOWN_VALUES]) + (
            ', …' if len(values) > SHOWN_VALUES else '')
        return f'{len(values)} values: {shown}'
    return {schema_pb2.INT: 'any integer', schema_pb2.FLOAT: 'any number',
            schema_pb2.BYTES: 'any string'}.get(f.type, '')


def staged_path(digest: str, root: str) -> str:
    """Where a schema whose contents have this sha256 is staged under ``root``."""
    return os.path.join(root, '_schemas', digest[:16], 'schema.pbtxt')


def staged_schema_path(path: str, root: str) -> str:
    """Where ``stage_schema(path, root)`` puts the schema: named for its contents."""
    with open(path, 'rb') as f:
        return staged_path(hashlib.sha256(f.read()).hexdigest(), root)


def write_staged(content: bytes, staged: str) -> str:
    """Writes ``content`` at ``staged`` unless it is there already (written whole: a
    temporary file renamed into place)."""
    if '://' in staged:
        import tensorflow as tf
        exists, makedirs, opener, rename = (tf.io.gfile.exists, tf.io.gfile.makedirs,
                                            tf.io.gfile.GFile, tf.io.gfile.rename)
    else:
        exists, opener = os.path.exists, open

        def makedirs(d):
            os.makedirs(d, exist_ok=True)

        def rename(a, b, overwrite):
            os.replace(a, b)
    if not exists(staged):
        makedirs(os.path.dirname(staged))
        tmp = f'{staged}.tmp-{os.getpid()}'
        with opener(tmp, 'wb') as f:
            f.write(content)
        rename(tmp, staged, overwrite=True)
    return staged


def stage_schema(path: str, pipeline_root: str) -> str:
    """A content-addressed copy of the curated schema under the pipeline root.

    ImportSchemaGen's cache key is the file's path, not its contents; staging the schema at
    a path named for its hash makes an edited schema re-run validation and everything after.
    A run stages the contents its inputs were resolved with (``pipeline/inputs.py``); the
    Dockerfile stages each schema the same way inside the image, for Kubeflow.
    """
    with open(path, 'rb') as f:
        return write_staged(f.read(), staged_schema_path(path, pipeline_root))
