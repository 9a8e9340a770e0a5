"""A cheap profile of the data, for the feature plan's rules (components/features.py).

``data_profile(config, schema, fmt)`` reads the CSV files the run trains on, as ExampleGen
reads them (``components.csv_format.read_table``: pyarrow, the run's delimiter, encoding and
NA tokens), and returns one
``ColumnProfile`` per column of the schema: how many values are present, how many distinct,
the numeric range, mean, standard deviation and skewness (and, for a non-negative column,
the mean and standard deviation of its log1p), and the most frequent values.
It runs once, while the run's inputs are resolved (``pipeline/inputs.py``); the plan it
informs is passed along in
Transform's and the Trainer's ``custom_config``.

Cost: reading is pyarrow's C++ parser (~0.5 s per million taxi rows on this machine); the
facts are computed on at most ``PROFILE_ROWS`` rows, evenly spaced through the files (every
k-th row), so a larger file costs its reading and no more. The facts of a sample are
estimates: a column's distinct share, skewness and class shares are taken from it.
A remote data root (``gs://...``) is not profiled: the plan then follows the schema and the
config alone (no rule that needs data applies).
"""
import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from components import input_files
from components.features import (DECIMAL_MARKS, FORMATTED_NUMBER, FORMATTING_CHARS,
                                 ColumnProfile)
from pipeline import spans

PROFILE_ROWS = 200_000
TOP_VALUES = 50          # the most frequent values kept per column (the label's classes)


def training_files(config) -> List[str]:
    """The CSV files of the spans trained on (or the flat root's)."""
    root = config.data.root
    window = spans.window(root, config.data.spans) or [None]
    return [f for span in window for f in spans.input_files(root, span)]


def _missing(cells, na_values: Sequence[str]):
    """A boolean numpy mask of the cells that hold no value."""
    import pyarrow as pa
    from pyarrow import compute as pc
    cells = cells.fill_null('')
    return pc.is_in(cells, value_set=pa.array(sorted({'', *na_values}))).to_numpy(
        zero_copy_only=False)


def _numbers(cells) -> np.ndarray:
    """Cells of a numeric column as float64 (NaN where one does not parse)."""
    import pyarrow as pa
    from pyarrow import compute as pc
    try:
        return pc.cast(cells, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        def number(v):
            try:
                return float(v)
            except ValueError:
                return float('nan')
        return np.array([number(v) for v in cells.to_pylist()], dtype=np.float64)


def _as_text(value: float, dtype: str) -> str:
    """A numeric value as the transform writes it (tf.strings.as_string)."""
    return str(int(value)) if dtype == 'int' else f'{value:f}'


def _counts(values):
    """The number of distinct values of a pyarrow array, and the TOP_VALUES most frequent
    of them with their counts, most frequent first."""
    from pyarrow import compute as pc
    counts = pc.value_counts(values)
    n = counts.field('counts').to_numpy()
    top = np.argsort(-n, kind='stable')[:TOP_VALUES]
    return len(n), list(zip(counts.field('values').take(top).to_pylist(), n[top].tolist()))


# A text column whose present values are numbers but for at most this share, in at most
# STRAY_VALUES distinct values ("Total", "ERR", "-"), is likely numbers with a few tokens
# that mean missing: the draft and the feature plan say so.
STRAY_SHARE, STRAY_VALUES = 0.05, 3


def decimal_mark(cells) -> str:
    """The decimal mark of ``cells`` (a pyarrow string array of present values) when every
    one is a formatted number (``features.FORMATTED_NUMBER``), else ''."""
    from pyarrow import compute as pc
    for mark in DECIMAL_MARKS:
        if pc.all(pc.match_substring_regex(cells, FORMATTED_NUMBER[mark])).as_py():
            return mark
    return ''


def stray_text(cells) -> Tuple[Tuple[str, int], ...]:
    """The values (and counts) that keep the present ``cells`` (a pyarrow string array) from
    being a column of numbers, when they are few (STRAY_SHARE, STRAY_VALUES); else ()."""
    from pyarrow import compute as pc
    for mark in DECIMAL_MARKS:
        stray = cells.filter(pc.invert(pc.match_substring_regex(cells, FORMATTED_NUMBER[mark])))
        if 0 < len(stray) <= STRAY_SHARE * len(cells):
            counts = pc.value_counts(stray).to_pylist()
            if len(counts) <= STRAY_VALUES:
                return tuple((c['values'], c['counts']) for c in counts)
    return ()


def column_profile(cells, dtype: str, na_values: Sequence[str] = ()) -> ColumnProfile:
    """The facts of one column: ``cells`` is a pyarrow string array, as ExampleGen reads it;
    ``dtype`` the schema's type ('float', 'int' or 'string')."""
    import pyarrow as pa
    from pyarrow import compute as pc
    rows = len(cells)
    present_cells = cells.filter(pa.array(~_missing(cells, na_values))) if rows else cells
    present = len(present_cells)
    if dtype == 'string' and present:
        distinct, top = _counts(present_cells)
        mark = decimal_mark(present_cells)
        if mark:
            digits = pc.replace_substring_regex(present_cells, FORMATTING_CHARS[mark], '')
            numbers = _numbers(digits if mark == '.' else pc.replace_substring(digits, mark, '.'))
            return _numeric(rows, present, numbers, distinct=distinct, top=tuple(top),
                            formatted=mark)
        return ColumnProfile(rows=rows, present=present, distinct=distinct, top=tuple(top),
                             stray=stray_text(present_cells))
    x = _numbers(present_cells)
    x = x[np.isfinite(x)]
    if not len(x):
        return ColumnProfile(rows=rows, present=present, distinct=0)
    distinct, top = _counts(pa.array(x))
    return _numeric(rows, present, x, distinct=distinct,
                    top=tuple((_as_text(v, dtype), c) for v, c in top))


def _numeric(rows: int, present: int, x: np.ndarray, **facts) -> ColumnProfile:
    """The profile of a column of numbers ``x`` (its present values)."""
    mean, std = float(x.mean()), float(x.std())
    skew = float(np.mean(((x - mean) / std) ** 3)) if std > 0 else 0.0
    logs = np.log1p(x) if x.min() >= 0 else None
    return ColumnProfile(rows=rows, present=present, min=float(x.min()), max=float(x.max()),
                         mean=mean, std=std, skew=skew,
                         log_mean=None if logs is None else float(logs.mean()),
                         log_std=None if logs is None else float(logs.std()), **facts)


def profile_files(files: Sequence[str], dtypes: Dict[str, str], na_values: Sequence[str] = (),
                  max_rows: int = PROFILE_ROWS, fmt=None) -> Dict[str, ColumnProfile]:
    """The profile of the columns ``dtypes`` names ({column: 'float' | 'int' | 'string'})
    over ``files``, read as ``fmt`` says (default: comma-delimited UTF-8, with ``na_values``
    missing), on at most ``max_rows`` evenly spaced rows."""
    import pyarrow as pa
    from components import csv_format

    fmt = fmt or csv_format.CsvFormat(na_values=tuple(na_values))
    tables = [csv_format.read_table(path, fmt) for path in files]
    tables = [t.select([c for c in dtypes if c in t.column_names]) for t in tables]
    table = pa.concat_tables(tables, promote=True) if tables else None
    if table is None or not table.num_rows:
        return {}
    if table.num_rows > max_rows:
        step = table.num_rows / max_rows
        table = table.take(pa.array((np.arange(max_rows) * step).astype(np.int64)))
    return {name: column_profile(table.column(name).combine_chunks(), dtype, fmt.na_values)
            for name, dtype in dtypes.items() if name in table.column_names}


def data_profile(config, schema, fmt=None) -> Optional[Dict[str, ColumnProfile]]:
    """The profile of the data ``config`` trains on, for the columns of ``schema``, read as
    ``fmt`` says (default: as the config says, ``pipeline.config.read_format``); None for a
    remote data root.

    The last answer is kept in ``<pipeline_root>/_fast_rerun/profile.json`` under its key:
    the files' paths, sizes and modification times (CsvExampleGen's fingerprint), the
    columns' types, the reading format and this module's code. An unchanged rerun needs the
    plan, and so the profile, before it can tell that nothing changed
    (``pipeline/fast_rerun.py``); profiling the bundled 15k rows again was ~0.8 s of its
    ~1.7 s."""
    if '://' in config.data.root:
        return None
    from components.features import schema_dtype
    from pipeline.config import read_format
    dtypes = {f.name: schema_dtype(f) for f in schema.feature}
    fmt = fmt or read_format(config)
    files = training_files(config)
    cache = (os.path.join(config.paths.pipeline_root, CACHE)
             if '://' not in config.paths.pipeline_root else '')
    key = _cache_key(files, dtypes, fmt) if cache else None
    if key:
        try:
            with open(cache, encoding='utf-8') as f:
                entry = json.load(f)
            if entry.get('key') == key:
                return {name: ColumnProfile(**{**facts, 'top': tuple(map(tuple, facts['top'])),
                                               'stray': tuple(map(tuple, facts['stray']))})
                        for name, facts in entry['profile'].items()}
        except (OSError, ValueError, TypeError, KeyError):
            pass  # no cache, or one this code cannot read: profile again
    profile = profile_files(files, dtypes, fmt=fmt)
    if key:
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            tmp = f'{cache}.{os.getpid()}.tmp'  # two runs of one root may write at once
            with open(tmp, 'w', encoding='utf-8') as f:
                json.dump({'key': key, 'profile': {name: dataclasses.asdict(p)
                                                   for name, p in profile.items()}}, f)
            os.replace(tmp, cache)
        except (OSError, TypeError, ValueError):
            pass  # a read-only pipeline root (or a fact JSON cannot hold): profiled next time
    return profile


CACHE = os.path.join('_fast_rerun', 'profile.json')


def _cache_key(files: Sequence[str], dtypes: Dict[str, str], fmt) -> Optional[str]:
    """The key of ``data_profile``'s cache; None when a file cannot be stat'ed (profiling
    it then says why)."""
    try:
        stats = list(input_files.fingerprint(files).items())
        with open(__file__, 'rb') as f:
            code = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
    facts = [stats, sorted(dtypes.items()), dataclasses.asdict(fmt), code,
             PROFILE_ROWS, TOP_VALUES]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()
