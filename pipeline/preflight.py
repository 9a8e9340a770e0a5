"""Preflight: refuse CSV files that ExampleGen would misread, before any component runs.

The split between errors and anomalies (docs/validation.md has the whole table):

* **Errors, refused here** — the file cannot be read as the table the schema describes:
  no files, an empty file or a header without rows, bytes that are not in the configured
  encoding (UTF-8 by default), duplicate or missing column names, rows with the wrong
  number of fields, an unbalanced quote, a field beyond the csv module's limit (a runaway
  line), text in a numeric column, a value that is not a date in a date column's format,
  a file that changes while it is read.
  ExampleGen would fail on these with a stack trace, or silently make a wrong table (text
  turns a numeric column into strings).
* **Anomalies, through ExampleValidator and the gate** — the table is well formed but its
  values break the schema's expectations: a never-seen category, an out-of-range value, a
  column that is not in the schema, a column empty in every row or too many missing values
  (the schema's ``presence``; ``pickup_census_tract`` is nearly always empty, so this is
  the schema's call, not a rule here), drift against the previous span. ``--allow-anomalies`` lets these through; it does not let errors through.

The files are read as ExampleGen reads them (``components/csv_format.py``: the delimiter,
the encoding, gzip, quoted fields across lines, the missing-value tokens), so a cell the
check calls missing is one ExampleGen writes as missing. CRLF line endings, a UTF-8
byte-order mark and blank lines are accepted, as ExampleGen reads them.

It streams each file with the csv module, checking rows a chunk at a time (see
``_fast_rows``; a million taxi rows take seconds), goes row by row only to name a problem
it found, and compares the files with the fingerprints taken when the run's inputs were
resolved, so a file that changes meanwhile is refused.
"""
import codecs
import csv
import itertools
import math
import operator
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from components import csv_format, datetimes
from components.csv_format import CsvFormat
from components.input_files import changed_files
from pipeline import spans

# Schema types whose CSV cells must parse as numbers, and how the check reads them.
_NUMERIC = {'INT': (int, 'an integer'), 'FLOAT': (float, 'a number')}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class DataError(ValueError):
    """The data was refused; the message names the file and, where it applies, the line,
    the column and what was expected."""


def _types(schema) -> Dict[str, str]:
    from tensorflow_metadata.proto.v0 import schema_pb2
    return {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}


def _bad_bytes(path: str, encoding: str) -> str:
    """Where the first byte that is not in ``encoding`` is: 'line N (byte offset M: b'..')'."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with csv_format.open_binary(path) as f:
        for number, line in enumerate(f, 1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as e:
                return f'line {number} (byte offset {offset + e.start}: {line[e.start:e.start + 4]!r})'
            offset += len(line)
    return 'at the end of the file'


def _encoding_name(encoding: str) -> str:
    return 'UTF-8' if codecs.lookup(encoding).name == 'utf-8' else encoding


def _na_hint(value: str, fmt: CsvFormat) -> str:
    if value in csv_format.NA_VALUES and value not in fmt.missing:
        return (f"; {value!r} is one of pandas' missing-value tokens: add it to data.na_values "
                'to read it as missing')
    return ''


def _delimiter_hint(path: str, fmt: CsvFormat) -> str:
    """A hint when ``path`` looks split by another delimiter than the one used."""
    try:
        found = csv_format.detect_delimiter(path, fmt.encoding)
    except (OSError, LookupError):
        return ''
    if found == fmt.delimiter:
        return ''
    return (f' (read with delimiter {csv_format.describe_delimiter(fmt.delimiter)}'
            f'{", detected in the first file" if fmt.detected else ", data.delimiter"}; this '
            f'file looks split by {csv_format.describe_delimiter(found)}: set data.delimiter, '
            'or give every file one delimiter)')


def check_file(path: str, types: Optional[Dict[str, str]] = None,
               label: str = '', schema_path: str = '', fmt: Optional[CsvFormat] = None,
               dates: Optional[Dict[str, str]] = None) -> int:
    """Checks one CSV file; returns its number of data rows or raises DataError.

    ``types``: {column: schema type}; INT and FLOAT columns must hold numbers. ``dates``:
    {column: strptime format}; those columns must hold dates in it. ``fmt``: how to read the
    file (default: its detected delimiter, UTF-8, pandas' NA tokens).
    """
    types, dates = types or {}, dates or {}

    def fail(where: str, message: str) -> None:
        raise DataError(f'{path}{", " + where if where else ""}: {message}')

    if os.path.getsize(path) == 0:
        fail('', 'the file is empty; expected a header row of column names, then data rows')
    try:
        fmt = fmt or csv_format.resolve(path)
    except csv_format.GZIP_ERRORS as e:
        fail('', csv_format.gzip_error(e))
    missing = fmt.missing
    delimiter = csv_format.describe_delimiter(fmt.delimiter)
    rows = line = 0
    try:
        with csv_format.open_binary(path) as f:
            if f.read(2) in _UTF16_BOMS and fmt.utf8:
                fail('line 1', 'the file starts with a UTF-16 byte-order mark (a "Unicode text" '
                     'export); expected UTF-8 text: set data.encoding: utf-16')
        with csv_format.open_text(path, fmt.encoding) as f:
            reader = csv.reader(f, delimiter=fmt.delimiter, strict=True)
            header = csv_format.column_names(next(reader, []))
            if not header or header == ['']:
                fail('line 1', f'the header is empty; expected column names separated by '
                     f'{delimiter}')
            seen: Dict[str, int] = {}
            for i, name in enumerate(header, 1):
                if name in seen:
                    fail('line 1', f'column name {name!r} appears twice (columns {seen[name]} and '
                         f'{i}); expected unique column names')
                seen[name] = i
            expected = [n for n in types if n not in seen]
            if label and label not in seen and label not in expected:
                expected.insert(0, label)
            if expected:
                fail('line 1', f'column{"s" if len(expected) > 1 else ""} '
                     f'{", ".join(map(repr, expected))} missing from the header; expected every '
                     f'column of the schema{" " + schema_path if schema_path else ""} '
                     f'(header: {", ".join(header)}){_delimiter_hint(path, fmt)}')
            width = len(header)
            numeric = [(i, name, *_NUMERIC[types[name]]) for i, name in enumerate(header)
                       if types.get(name) in _NUMERIC]
            dated = [(i, name, datetimes.Reader(dates[name]).reads, dates[name])
                     for i, name in enumerate(header)
                     if dates.get(name, datetimes.UNIX_SECONDS) != datetimes.UNIX_SECONDS]
            line = reader.line_num
            fast = _fast_rows(path, fmt, width, [(i, parse) for i, _, parse, _ in numeric],
                              [(i, reads) for i, _, reads, _ in dated])
            for row in (() if fast is not None else reader):
                start, line = line + 1, reader.line_num
                if not row:  # a blank line: ExampleGen skips it too
                    continue
                rows += 1
                where = f'line {line}' if start == line else f'lines {start}-{line}'
                if len(row) != width:
                    spread = (f'; this record runs over lines {start}-{line}: a quote opened on '
                              f'line {start} is not closed where it should be?'
                              if start != line else '')
                    fail(where, f'{len(row)} field{"s" if len(row) != 1 else ""}; expected '
                         f'{width}, as in the header{spread}{_delimiter_hint(path, fmt)}')
                for i, name, parse, what in numeric:
                    value = row[i]
                    if value not in missing:
                        try:
                            number = parse(value)
                        except ValueError:
                            fail(f'{where}, column {name!r}', f'{value[:40]!r} is not {what}; '
                                 f'expected {what} (schema type {types[name]}), an empty cell '
                                 f'or a missing-value token (data.na_values){_na_hint(value, fmt)}')
                        if not math.isfinite(number):  # 'inf', '1e400', 'nan' (not an NA token)
                            fail(f'{where}, column {name!r}', f'{value[:40]!r} is not a finite '
                                 'number (a model trained on it learns NaN); expected a finite '
                                 'number, an empty cell or a missing-value token (data.na_values)')
                for i, name, reads, form in dated:
                    value = row[i]
                    if value not in missing and not reads(value):
                        fail(f'{where}, column {name!r}', f'{value[:40]!r} is not a date in the '
                             f'format {form!r} (the schema\'s time_domain, or features.datetime); '
                             'expected such a date, an empty cell or a missing-value token '
                             f'(data.na_values){_na_hint(value, fmt)}')
    except csv_format.GZIP_ERRORS as e:
        fail('', csv_format.gzip_error(e))
    except UnicodeDecodeError:
        name = _encoding_name(fmt.encoding)
        hint = ('set data.encoding to the encoding the file is in (cp1252 for most Windows '
                'exports, or latin-1), or re-export the file as UTF-8, e.g. iconv -f LATIN1 '
                '-t UTF-8' if name == 'UTF-8' else 'check data.encoding')
        fail(_bad_bytes(path, fmt.encoding), f'bytes that are not valid {name}; expected '
             f'{name} text ({hint})')
    except csv.Error as e:
        first, last = line + 1, reader.line_num
        where = f'line {first}' if last <= first else f'lines {first}-{last}'
        hint = f'; a quote opened on line {first} is never closed?' if last > first else ''
        fail(where, f'not valid CSV ({e}){hint}; expected fields separated by {delimiter}, '
             f'quoted with " where a field holds one or a line break, at most '
             f'{csv.field_size_limit():,} characters each')
    rows = rows if fast is None else fast
    if rows == 0:
        fail('', 'the file has a header but no data rows; expected at least one row')
    return rows


_CHUNK = 500  # small chunks: large ones wake the garbage collector again and again
_KNOWN_DATES = 100_000  # distinct dates remembered per column as already checked


def _fast_rows(path: str, fmt: CsvFormat, width: int, numeric: List[Tuple[int, type]],
               dated: List[Tuple[int, Callable[[str], bool]]]) -> Optional[int]:
    """The number of data rows if every chunk of rows is plainly fine, else None.

    The same checks as the row loop in ``check_file``, a chunk of rows at a time, with the
    loops in C (``map`` of ``len``, ``itemgetter``, ``int``/``float``, the missing cells
    skipped by a set lookup): a million rows take seconds rather than a minute. Date columns
    are checked once per distinct value. On any doubt it returns None, and the row loop
    finds and names the problem.
    """
    rows, skip = 0, fmt.missing.__contains__
    checked = [set() for _ in dated]
    try:
        with csv_format.open_text(path, fmt.encoding) as f:
            reader = csv.reader(f, delimiter=fmt.delimiter, strict=True)
            next(reader, None)
            for chunk in iter(lambda: list(itertools.islice(reader, _CHUNK)), []):
                widths = set(map(len, chunk))
                if 0 in widths:  # blank lines
                    chunk = [r for r in chunk if r]
                    widths.discard(0)
                if widths - {width}:
                    return None
                rows += len(chunk)
                for i, parse in numeric:
                    # the sum of floats is not finite when one of them is not (or, rarely, when
                    # it overflows: the row loop then finds nothing wrong)
                    if not math.isfinite(sum(map(parse, itertools.filterfalse(
                            skip, map(operator.itemgetter(i), chunk))))):
                        return None
                for (i, reads), known in zip(dated, checked):
                    new = set(itertools.filterfalse(skip, map(operator.itemgetter(i), chunk)))
                    new -= known
                    if not all(map(reads, new)):
                        return None
                    if len(known) > _KNOWN_DATES:
                        known.clear()
                    known |= new
    except (csv.Error, UnicodeDecodeError, ValueError, OverflowError,
            *csv_format.GZIP_ERRORS):
        return None
    return rows


def preflight(config, inputs, log: Optional[Callable[[str], None]] = None) -> None:
    """Checks every file the run will read (``inputs.files``, ``pipeline/inputs.py``), read
    as ``inputs.csv_format`` says, with the schema it resolved, and that none changed since
    it was resolved.

    Raises DataError for the first problem found. A remote data root (``gs://...``) is not
    read here; ExampleValidator and the gate still guard it. ``log`` gets one line saying
    how the files are read (the delimiter, detected or not, the encoding, the NA tokens).
    """
    root = config.data.root
    if '://' in root:
        return
    if not os.path.isdir(root):
        raise DataError(f'{root}: the data directory does not exist; expected a directory of '
                        'CSV files, or of span-<N>/ directories of CSV files')
    for span in inputs.spans or [None]:
        if not spans.input_files(root, span):
            where = root if span is None else spans.span_dir(root, span)
            raise DataError(f'{where}: no CSV files; expected at least one *.csv or *.csv.gz '
                            'file')
    from pipeline.schema import parse_schema
    schema = parse_schema(inputs.schema.text, inputs.schema.path)
    fmt = inputs.csv_format
    if log:
        n = len(inputs.files)
        log(f'Reading {n} CSV file{"s" if n != 1 else ""}: {fmt.describe()}')
    types = _types(schema)
    dates = datetimes.formats(schema, config.features.datetime)
    for path, _, _ in inputs.files:
        check_file(path, types, config.data.label, inputs.schema.path, fmt, dates)
    changed = changed_files(inputs.fingerprints)
    if changed:
        raise DataError('data files changed while they were being checked; expected them to stay '
                        'put during a run:\n  ' + '\n  '.join(changed))


def main(argv: Sequence[str]) -> int:
    """``python -m pipeline.preflight FILE...``: check files alone (no schema), time it."""
    import time
    start = time.time()
    for path in argv:
        rows = check_file(path)
        print(f'{path}: {rows} rows OK')
    print(f'{time.time() - start:.2f}s')
    return 0


if __name__ == '__main__':
    import sys
    sys.exit(main(sys.argv[1:]))
