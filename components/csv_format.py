"""How the product reads a CSV file: the one module that knows the dialect, the encoding,
the compression and the missing-value tokens.

Everything that reads CSV reads it through here, so they agree on every cell: the config
check (the header), the preflight (the csv module, a chunk of rows at a time),
FastCsvExampleGen (pyarrow) and schema drafting (the same pyarrow table as ExampleGen, then
TFDV's statistics of it).

* **Files**: ``*.csv`` and gzip-compressed ``*.csv.gz`` (any letter case, not hidden).
* **Delimiter**: ``data.delimiter``, or detected from the file's first records: each of
  ``,`` ``;`` tab ``|`` splits the first records (up to 50, in the first 64 KiB); a
  candidate is *consistent* when it splits the header into at least two fields and every
  sampled record into as many. The consistent candidate with the most fields wins; with
  none consistent, the one that splits the header into the most fields (the check that
  follows then names the row that does not fit); ties go to the comma, then ``;``, tab,
  ``|``. The run prints the delimiter it uses, and says "detected".
* **Encoding**: ``data.encoding``, default UTF-8 with or without a byte-order mark (Excel
  writes one); any codec Python knows (``latin-1``, ``cp1252``, ``utf-16``).
* **Quoting** (RFC 4180): ``"`` quotes a field, ``""`` inside it is a quote, and a quoted
  field may hold the delimiter and line breaks. A blank line is skipped.
* **Missing values**: an empty cell, or a cell that is exactly one of ``data.na_values``
  (quoted or not, case and spaces as written), is missing: ExampleGen writes it as a feature
  with no value, exactly like an empty cell, and a column's type is decided without its
  missing cells, so ``NA`` in a column of numbers leaves it numeric. The default list is
  pandas' (``read_csv``'s ``na_values`` default, pandas 2; the pinned pandas 1.5 lacks
  ``None``). Note that it reads ``None``, ``NULL`` or ``NA`` in a string column as missing
  too; ``data.na_values: []`` leaves only empty cells missing.

Nothing heavy is imported at module level: the preflight runs before TensorFlow loads.
"""
import codecs
import csv
import dataclasses
import gzip
import io
import json
import os
import zlib
from typing import Any, Dict, FrozenSet, List, Sequence, Tuple

# pandas.read_csv's default missing-value tokens (pandas._libs.parsers.STR_NA_VALUES, 2.x).
NA_VALUES = ('', '#N/A', '#N/A N/A', '#NA', '-1.#IND', '-1.#QNAN', '-NaN', '-nan', '1.#IND',
             '1.#QNAN', '<NA>', 'N/A', 'NA', 'NULL', 'NaN', 'None', 'n/a', 'nan', 'null')
# Candidate delimiters for detection, in the order that breaks ties; and how to name them.
DELIMITERS = {',': 'comma', ';': 'semicolon', '\t': 'tab', '|': 'pipe'}
# data.delimiter may name the tab (YAML's '\t' needs double quotes).
_DELIMITER_NAMES = {'tab': '\t', '\\t': '\t'}
SAMPLE_CHARS = 1 << 16
SAMPLE_RECORDS = 50
_UTF8 = codecs.lookup('utf-8').name


# A glob of every CSV file in a directory, for ExampleGen's split pattern (it also matches
# ``*.csv.bak``: readers keep the files ``is_csv_name`` accepts).
CSV_GLOB = '*.[cC][sS][vV]*'


def is_csv_name(name: str) -> bool:
    """Whether a file name is a CSV file the product reads: ``*.csv`` or ``*.csv.gz``."""
    base = os.path.basename(name)
    return not base.startswith('.') and base.lower().endswith(('.csv', '.csv.gz'))


def is_gzip(path: str) -> bool:
    return path.lower().endswith('.gz')


# What reading a damaged or mislabelled ``.gz`` file raises (from the gzip module).
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def gzip_error(error: Exception) -> str:
    return (f'not a readable gzip file ({error}); expected gzip-compressed CSV, as the .gz in '
            'its name says')


def delimiter_char(delimiter: str) -> str:
    """``data.delimiter`` as the character it means ('tab' -> a tab)."""
    return _DELIMITER_NAMES.get(delimiter, delimiter)


def delimiter_error(delimiter: str) -> str:
    """Why ``data.delimiter`` is unusable, or '' (empty means: detect it)."""
    char = delimiter_char(delimiter)
    if char and (len(char) != 1 or char in '"\r\n'):
        return (f'expected one character such as ",", ";", "|" or "tab" (or nothing, to detect '
                f'it), got {delimiter!r}')
    return ''


def encoding_error(encoding: str) -> str:
    """Why ``data.encoding`` is unusable, or ''."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        return (f'unknown encoding {encoding!r}; expected a codec name Python knows, e.g. '
                'utf-8, cp1252 (Windows exports), latin-1, utf-16')
    return ''


def describe_delimiter(char: str) -> str:
    name = DELIMITERS.get(char)
    return f'{char!r} ({name})' if name else repr(char)


@dataclasses.dataclass(frozen=True)
class CsvFormat:
    """How to read a run's CSV files. ``detected``: the delimiter came from the data."""
    delimiter: str = ','
    encoding: str = 'utf-8'
    na_values: Tuple[str, ...] = ()
    detected: bool = False

    @property
    def missing(self) -> FrozenSet[str]:
        """The cells read as missing: the NA tokens and the empty cell."""
        return frozenset(self.na_values) | {''}

    @property
    def utf8(self) -> bool:
        return codecs.lookup(self.encoding).name == _UTF8

    def describe(self) -> str:
        """One line for the run's output: what the files are read as."""
        tokens = [v for v in self.na_values if v]
        if not tokens:
            na = 'only empty cells are missing'
        elif tuple(self.na_values) == NA_VALUES:
            na = f"missing: empty cells and pandas' {len(tokens)} NA tokens (NA, N/A, null, …)"
        else:
            na = 'missing: empty cells and ' + ', '.join(map(repr, tokens[:6])) + (
                ', …' if len(tokens) > 6 else '')
        return (f'delimiter {describe_delimiter(self.delimiter)}'
                f'{", detected" if self.detected else ""}; encoding {self.encoding}; {na}')

    def exec_properties(self) -> Dict[str, str]:
        """The exec properties FastCsvExampleGen takes (recorded in ML Metadata)."""
        return {'delimiter': self.delimiter, 'encoding': self.encoding,
                'na_values': json.dumps(list(self.na_values))}

    @classmethod
    def from_exec_properties(cls, props: Dict[str, Any]) -> 'CsvFormat':
        """From FastCsvExampleGen's exec properties; unset ones as CsvExampleGen reads."""
        return cls(delimiter=props.get('delimiter') or ',',
                   encoding=props.get('encoding') or 'utf-8',
                   na_values=tuple(json.loads(props.get('na_values') or '[]')))


def is_remote(path: str) -> bool:
    return '://' in path


def open_binary(path: str):
    """The file's bytes, decompressed when it is gzipped. A remote file (``gs://...``) is
    read with TFX's filesystem layer, as TFX's own ExampleGen reads it, into memory (the
    reader holds the whole table in memory anyway)."""
    if is_remote(path):
        from tfx.dsl.io import fileio
        with fileio.open(path, 'rb') as f:
            raw = io.BytesIO(f.read())
    else:
        raw = open(path, 'rb')
    return _Gunzip(raw) if is_gzip(path) else raw


class _Gunzip(gzip.GzipFile):
    """A GzipFile that closes the file it reads from (GzipFile leaves that to the caller)."""

    def __init__(self, raw):
        super().__init__(fileobj=raw, mode='rb')
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def open_text(path: str, encoding: str = 'utf-8', errors: str = 'strict'):
    """The file as text for the csv module (``newline=''``); a UTF-8 byte-order mark is
    dropped."""
    if codecs.lookup(encoding).name == _UTF8:
        encoding = 'utf-8-sig'
    return io.TextIOWrapper(open_binary(path), encoding=encoding, errors=errors, newline='')


def _sample(path: str, encoding: str) -> Tuple[str, bool]:
    """The first ``SAMPLE_CHARS`` characters, and whether that is the whole file."""
    with open_text(path, encoding, errors='replace') as f:
        text = f.read(SAMPLE_CHARS)
        return text, not f.read(1)


def _shape(sample: str, complete: bool, delimiter: str) -> Tuple[bool, int]:
    """(consistent, fields in the header) of the sample split at ``delimiter``."""
    try:
        rows = [r for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if r]
    except csv.Error:
        return False, 0
    if not complete:
        rows = rows[:-1]  # the sample may end inside the last record
    rows = rows[:SAMPLE_RECORDS]
    width = len(rows[0]) if rows else 0
    return width > 1 and all(len(r) == width for r in rows), width


def detect_delimiter(path: str, encoding: str = 'utf-8') -> str:
    """The delimiter of ``path`` by the rule in the module's docstring."""
    sample, complete = _sample(path, encoding)
    return max(DELIMITERS, key=lambda d: _shape(sample, complete, d))


def resolve(path: str, delimiter: str = '', encoding: str = 'utf-8',
            na_values: Sequence[str] = NA_VALUES) -> CsvFormat:
    """The format to read ``path`` (and the files read with it) in: the given delimiter, or
    the one detected in ``path``."""
    char = delimiter_char(delimiter)
    if char:
        return CsvFormat(char, encoding, tuple(na_values))
    return CsvFormat(detect_delimiter(path, encoding), encoding, tuple(na_values), detected=True)


def column_names(header: List[str]) -> List[str]:
    """The header's names without the spaces around them (`` age `` is ``age``: a spreadsheet
    shows no difference, and a config names it so), an unnamed column (empty or blank) named
    ``column_<i>`` (its 1-based position, ``_`` added until the name is unused): R's
    ``write.csv`` and pandas' ``to_csv`` leave the row-name column unnamed, and the feature
    plan then drops it as a row number. A header of one empty name is an empty header, left
    as it is."""
    header = [name.strip() for name in header]
    if header == [''] or all(header):
        return header
    taken = set(header)
    names = []
    for i, name in enumerate(header, 1):
        if not name.strip():
            name = f'column_{i}'
            while name in taken:
                name += '_'
            taken.add(name)
        names.append(name)
    return names


def read_header(path: str, fmt: CsvFormat, errors: str = 'strict') -> List[str]:
    """The column names in the first record of ``path`` ([] for an empty file), as
    ``column_names`` gives them."""
    with open_text(path, fmt.encoding, errors) as f:
        return column_names(next(csv.reader(f, delimiter=fmt.delimiter), []))


def uncompressed_size(path: str) -> int:
    """The file's size in bytes once decompressed (gzip's trailer: exact below 4 GiB)."""
    size = os.path.getsize(path)
    if not is_gzip(path) or size < 18:
        return size
    with open(path, 'rb') as f:
        f.seek(-4, os.SEEK_END)
        isize = int.from_bytes(f.read(4), 'little')
    # The trailer holds the size modulo 2**32: add what it lost, from the compressed size.
    while isize < size:
        isize += 1 << 32
    return isize


def estimated_rows(paths: Sequence[str]) -> int:
    """Rows in ``paths``: their uncompressed bytes / the mean bytes of the first file's
    first lines."""
    total = sum(uncompressed_size(p) for p in paths)
    if not paths or not total:
        return 0
    with open_binary(paths[0]) as f:
        head = f.readlines(1 << 16)
    return int(total / max(1.0, sum(map(len, head)) / max(1, len(head))))


# ------------------------------------------------------------------------------------------
# The table ExampleGen and drafting read: pyarrow, every cell a string, missing cells null.

class _Utf8Stream(io.RawIOBase):
    """A file's bytes in ``encoding``, re-encoded as UTF-8 for pyarrow.

    pyarrow's own ``ReadOptions(encoding=...)`` transcodes through a Python codec on its
    reader threads; with pyarrow 10 a process that did so twice could abort at exit
    ("terminate called without an active exception"), so the codec runs here instead.
    """

    def __init__(self, path: str, encoding: str):
        super().__init__()
        self._text = io.TextIOWrapper(open_binary(path), encoding=encoding, newline='')
        self._pending = b''

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self._pending) < len(buffer):
            text = self._text.read(1 << 16)
            if not text:
                break
            self._pending += text.encode('utf-8')
        n = min(len(buffer), len(self._pending))
        buffer[:n], self._pending = self._pending[:n], self._pending[n:]
        return n

    def close(self) -> None:
        self._text.close()
        super().close()


def read_table(path: str, fmt: CsvFormat):
    """Every cell of ``path`` as a string, a missing cell (see ``fmt.missing``) as null."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    try:
        names = read_header(path, fmt)
    except GZIP_ERRORS as e:
        raise ValueError(f'{path}: {gzip_error(e)}') from e
    if len(set(names)) != len(names):
        raise ValueError(f'{path}: the header names a column twice: {names}')
    # pyarrow reads a local UTF-8 file itself (and gunzips it); otherwise it gets a stream.
    source = (path if fmt.utf8 and not is_remote(path) else open_binary(path) if fmt.utf8
              else io.BufferedReader(_Utf8Stream(path, fmt.encoding), 1 << 20))
    try:
        return pa_csv.read_csv(
            source,
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pa_csv.ParseOptions(delimiter=fmt.delimiter, newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={n: pa.string() for n in names}, null_values=sorted(fmt.missing),
                strings_can_be_null=True, quoted_strings_can_be_null=True))
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError, *GZIP_ERRORS) as e:
        raise ValueError(f'{path}: cannot read it as CSV with a header row '
                         f'(delimiter {describe_delimiter(fmt.delimiter)}, encoding '
                         f'{fmt.encoding}): {e}') from e
    finally:
        if not isinstance(source, str):
            source.close()


def read_tables(paths: Sequence[str], fmt: CsvFormat):
    """``paths`` read as one table (they must share one header), and each column's type as
    CsvExampleGen infers it ({name: ColumnType})."""
    import pyarrow as pa

    tables = [read_table(path, fmt) for path in paths]
    names = tables[0].column_names
    for path, table in zip(paths[1:], tables[1:]):
        if table.column_names != names:
            raise RuntimeError(f'{path}: header {table.column_names} differs from {paths[0]}\'s '
                               f'{names}; files of one split must have the same columns')
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    del tables
    return table, {name: infer_type(table.column(name)) for name in names}


def _column_type():
    from tfx_bsl.coders import csv_decoder
    return csv_decoder.ColumnType


def infer_type(column) -> int:
    """CsvExampleGen's column type (tfx_bsl's rule: INT if every present cell is an int64,
    else FLOAT if every one is a float, else STRING; UNKNOWN with no cell present), decided
    on the distinct present values."""
    import pyarrow as pa
    from pyarrow import compute as pc

    column_type = _column_type()
    values = pc.unique(column.drop_null())
    if len(values) == 0:
        return column_type.UNKNOWN
    try:
        pc.cast(values, pa.int64())
        return column_type.INT
    except pa.ArrowInvalid:
        pass
    # Not all int64. tfx_bsl calls an integer beyond int64 a STRING; Arrow would call it a float.
    integers = values.filter(pc.match_substring_regex(values, r'^[+-]?[0-9]+$'))
    try:
        pc.cast(integers, pa.int64())
        pc.cast(values, pa.float64())
        # Arrow parses a subset of what int()/float() parse; if it parses every value,
        # so would tfx_bsl.
        return column_type.FLOAT
    except pa.ArrowInvalid:
        pass
    # The exact rule, in Python, only when Arrow was unsure (spaces, '1_000', overflow...).
    from tfx_bsl.coders import csv_decoder
    return max(csv_decoder._InferValueType(v.encode()) for v in values.to_pylist())  # pylint: disable=protected-access


def to_values(cells, column_type: int):
    """``cells`` converted as CsvExampleGen converts them (int(), float(), bytes); a null
    stays null. Also components/batch_inference.py's raw-feature tensors."""
    import pyarrow as pa
    from pyarrow import compute as pc

    types = _column_type()
    if column_type == types.STRING:
        return cells.cast(pa.binary())
    target = pa.int64() if column_type == types.INT else pa.float64()
    try:
        values = pc.cast(cells, target)
    except pa.ArrowInvalid:
        parse = int if column_type == types.INT else float
        encoded = cells.dictionary_encode()
        table = pa.array([parse(v) for v in encoded.dictionary.to_pylist()], target)
        values = table.take(encoded.indices)
    return values.cast(pa.float32(), safe=False) if column_type == types.FLOAT else values


def to_record_batch(batch, types_by_name: Dict[str, int]):
    """Each column as a list column, the shape of tf.Example features: one value per present
    cell, an empty list for a missing one; a column of no value at all is null."""
    import numpy as np
    import pyarrow as pa
    from pyarrow import compute as pc

    columns, names = [], sorted(types_by_name)
    for name in names:
        column_type, cells = types_by_name[name], batch.column(name)
        if column_type == _column_type().UNKNOWN:
            columns.append(pa.nulls(len(cells), pa.list_(pa.binary())))
            continue
        present = pc.is_valid(cells)
        offsets = np.zeros(len(cells) + 1, dtype=np.int32)
        np.cumsum(present.to_numpy(zero_copy_only=False), out=offsets[1:])
        columns.append(pa.ListArray.from_arrays(
            pa.array(offsets), to_values(cells.filter(present), column_type)))
    return pa.RecordBatch.from_arrays(columns, names)
