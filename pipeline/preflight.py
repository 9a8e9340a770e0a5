"""Preflight: refuse CSV files that ExampleGen would misread, before any component runs.

The split between errors and anomalies (docs/validation.md has the whole table):

* **Errors, refused here** — the file cannot be read as the table the schema describes:
  no files, an empty file or a header without rows, a byte-order mark, bytes that are not
  UTF-8, duplicate or missing column names, rows with the wrong number of fields, a quote
  that runs over a line break, a field beyond the csv module's limit (a runaway line), text
  in a numeric column, a file that changes while it is read.
  ExampleGen would fail on these with a Beam stack trace, or silently make a wrong table
  (a BOM renames the first column; text turns a numeric column into strings).
* **Anomalies, through ExampleValidator and the gate** — the table is well formed but its
  values break the schema's expectations: a never-seen category, an out-of-range value, a
  column that is not in the schema, a column empty in every row or too many missing values
  (the schema's ``presence``; ``pickup_census_tract`` is nearly always empty, so this is
  the schema's call, not a rule here), drift against the previous span. ``--allow-anomalies`` lets these through; it does not let errors through.

CRLF line endings are accepted: Beam's text reader and the csv module both read them.

It streams each file with the csv module, checking rows a chunk at a time (see
``_fast_rows``; a million taxi rows take seconds), goes row by row only to name a problem
it found, and compares the files with the fingerprints taken when the run's inputs were
resolved, so a file that changes meanwhile is refused.
"""
import codecs
import collections
import csv
import itertools
import operator
import os
from typing import Dict, List, Optional, Sequence, Tuple

from components.input_files import changed_files
from pipeline import spans

# Schema types whose CSV cells must parse as numbers, and how the check reads them.
_NUMERIC = {'INT': (int, 'an integer'), 'FLOAT': (float, 'a number')}


class DataError(ValueError):
    """The data was refused; the message names the file and, where it applies, the line,
    the column and what was expected."""


def _types(schema) -> Dict[str, str]:
    from tensorflow_metadata.proto.v0 import schema_pb2
    return {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}


def _bad_utf8(path: str) -> str:
    """Where the first invalid UTF-8 byte is: 'line N (byte offset M: b'..')'."""
    decoder = codecs.getincrementaldecoder('utf-8')()
    offset = 0
    with open(path, 'rb') as f:
        for number, line in enumerate(f, 1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as e:
                return f'line {number} (byte offset {offset + e.start}: {line[e.start:e.start + 4]!r})'
            offset += len(line)
    return 'at the end of the file'


def check_file(path: str, types: Optional[Dict[str, str]] = None,
               label: str = '', schema_path: str = '') -> int:
    """Checks one CSV file; returns its number of data rows or raises DataError."""
    types = types or {}

    def fail(where: str, message: str) -> None:
        raise DataError(f'{path}{", " + where if where else ""}: {message}')

    if os.path.getsize(path) == 0:
        fail('', 'the file is empty; expected a header row of column names, then data rows')
    with open(path, 'rb') as f:
        if f.read(3) == codecs.BOM_UTF8:
            fail('line 1', 'the file starts with a UTF-8 byte-order mark (BOM), which ExampleGen '
                 'would read as part of the first column name; expected plain UTF-8: save it '
                 "without the BOM (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)")
    rows = line = 0
    try:
        with open(path, encoding='utf-8', newline='') as f:
            reader = csv.reader(f, strict=True)
            header = next(reader, [])
            if not header or header == ['']:
                fail('line 1', 'the header is empty; expected comma-separated column names')
            seen: Dict[str, int] = {}
            for i, name in enumerate(header, 1):
                if not name.strip():
                    fail('line 1', f'column {i} has no name; expected a name for every column')
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
                     f'(header: {", ".join(header)})')
            width = len(header)
            numeric = [(i, name, *_NUMERIC[types[name]]) for i, name in enumerate(header)
                       if types.get(name) in _NUMERIC]
            line = reader.line_num
            fast = _fast_rows(path, width, [(i, parse) for i, _, parse, _ in numeric])
            for row in (() if fast is not None else reader):
                rows += 1
                if reader.line_num != line + 1:
                    fail(f'lines {line + 1}-{reader.line_num}', 'a quoted field runs over a line '
                         'break (an unbalanced quote?); expected one row per line')
                line = reader.line_num
                if len(row) != width:
                    fail(f'line {line}', f'{len(row)} field{"s" if len(row) != 1 else ""}; '
                         f'expected {width}, as in the header')
                for i, name, parse, what in numeric:
                    value = row[i]
                    if value:
                        try:
                            parse(value)
                        except ValueError:
                            fail(f'line {line}, column {name!r}', f'{value[:40]!r} is not {what}; '
                                 f'expected {what} (schema type {types[name]}) or an empty cell')
    except UnicodeDecodeError:
        fail(_bad_utf8(path), 'bytes that are not valid UTF-8; expected UTF-8 text '
             '(re-export the file as UTF-8, e.g. iconv -f LATIN1 -t UTF-8)')
    except csv.Error as e:
        first, last = line + 1, reader.line_num
        where = f'line {first}' if last <= first else f'lines {first}-{last}'
        hint = f'; a quote opened on line {first} is never closed?' if last > first else ''
        fail(where, f'not valid CSV ({e}){hint}; expected comma-separated fields, quoted with " '
             f'where a field holds a comma, at most {csv.field_size_limit():,} characters each')
    rows = rows if fast is None else fast
    if rows == 0:
        fail('', 'the file has a header but no data rows; expected at least one row')
    return rows


_CHUNK = 500  # small chunks: large ones wake the garbage collector again and again


def _fast_rows(path: str, width: int, numeric: List[Tuple[int, type]]) -> Optional[int]:
    """The number of data rows if every chunk of rows is plainly fine, else None.

    The same checks as the row loop in ``check_file``, a chunk of rows at a time, with the
    loops in C (``map`` of ``len``, ``itemgetter``, ``int``/``float``): a million rows take
    seconds rather than a minute. On any doubt it returns None, and the row loop finds and
    names the problem.
    """
    rows = 0
    try:
        with open(path, encoding='utf-8', newline='') as f:
            reader = csv.reader(f, strict=True)
            next(reader, None)
            for chunk in iter(lambda: list(itertools.islice(reader, _CHUNK)), []):
                if set(map(len, chunk)) != {width}:
                    return None
                rows += len(chunk)
                if reader.line_num != rows + 1:  # a record ran over several lines
                    return None
                for i, parse in numeric:
                    collections.deque(map(parse, filter(None, map(operator.itemgetter(i), chunk))),
                                      maxlen=0)
    except (csv.Error, UnicodeDecodeError, ValueError):
        return None
    return rows


def preflight(config, inputs) -> None:
    """Checks every file the run will read (``inputs.files``, ``pipeline/inputs.py``) with
    the schema it resolved, and that none changed since it was resolved.

    Raises DataError for the first problem found. A remote data root (``gs://...``) is not
    read here; ExampleValidator and the gate still guard it.
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
            raise DataError(f'{where}: no CSV files; expected at least one *.csv file')
    from pipeline.schema import parse_schema
    types = _types(parse_schema(inputs.schema.text, inputs.schema.path))
    for path, _, _ in inputs.files:
        check_file(path, types, config.data.label, inputs.schema.path)
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
