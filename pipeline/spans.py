"""Where the CSV files are: a flat data root, or dated spans under it.

Two layouts are accepted:

* flat: ``<root>/*.csv`` — one body of data, read as a whole (the bundled sample);
* spans: ``<root>/span-<N>/*.csv`` — one directory per delivery, ``N`` a whole number that
  grows with time (``span-1``, ``span-2``, ... or ``span-20260101``).

A CSV file is ``*.csv`` or gzipped ``*.csv.gz``, in any letter case
(``components.csv_format.is_csv_name``). ExampleGen's glob is ``*.[cC][sS][vV]*`` and its
executor keeps the files that rule names, so it reads exactly the files listed here.

With spans, a run trains on the newest ``data.spans`` spans (default 1), each read by an
ExampleGen of its own (``{SPAN}`` pattern with a static range pinned to the span the
preflight checked, so the files that were checked are the files that are read), and, when
drift thresholds are configured, also reads the span before the newest to compare their
statistics. Files at the top of a span layout are ignored.
"""
import os
import re
from typing import List, Optional, Tuple

from components.csv_format import CSV_GLOB, is_csv_name

SPAN_DIR = re.compile(r'^span-(\d+)$')
SPAN_PATTERN = 'span-{SPAN}/' + CSV_GLOB
FLAT_PATTERN = CSV_GLOB


def spans(root: str) -> List[int]:
    """The span numbers under ``root``, oldest first (empty for a flat root)."""
    if not os.path.isdir(root):
        return []
    return sorted(int(m.group(1)) for m in map(SPAN_DIR.match, os.listdir(root))
                  if m and os.path.isdir(os.path.join(root, m.group(0))))


def _csvs(directory: str) -> List[str]:
    if not os.path.isdir(directory):
        return []
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if is_csv_name(n) and os.path.isfile(os.path.join(directory, n)))


def span_dir(root: str, span: int) -> str:
    return os.path.join(root, f'span-{span}')


def latest_span(root: str) -> Optional[int]:
    found = spans(root)
    return found[-1] if found else None


def previous_span(root: str) -> Optional[int]:
    found = spans(root)
    return found[-2] if len(found) >= 2 else None


def window(root: str, count: int) -> List[int]:
    """The newest ``count`` span numbers under ``root`` (fewer if there are fewer), oldest
    first; empty for a flat root."""
    return spans(root)[-count:]


def input_files(root: str, span: Optional[int] = None) -> List[str]:
    """The CSV files one ExampleGen reads: a span's (default the newest), or the flat root's."""
    if span is None:
        span = latest_span(root)
    return _csvs(root if span is None else span_dir(root, span))


def input_glob(root: str) -> str:
    """A glob of the newest span's CSV files (or the flat root's); it also matches other
    names (``*.csv.bak``): keep those ``is_csv_name`` accepts, as ExampleGen and drafting do."""
    span = latest_span(root)
    return os.path.join(root if span is None else span_dir(root, span), CSV_GLOB)


def example_gen_input(root: str, span: Optional[int] = None) -> Tuple[object, object]:
    """(example_gen_pb2.Input, RangeConfig or None) for a CsvExampleGen reading ``input_files``."""
    return example_gen_config(latest_span(root) if span is None else span)


def example_gen_config(span: Optional[int]) -> Tuple[object, object]:
    """(example_gen_pb2.Input, RangeConfig or None) of an ExampleGen reading one span (None:
    the flat root), without looking at the data root."""
    from tfx.proto import example_gen_pb2, range_config_pb2

    if span is None:
        return example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='single_split',
                                                             pattern=FLAT_PATTERN)]), None
    return (example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='single_split',
                                                          pattern=SPAN_PATTERN)]),
            range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
                start_span_number=span, end_span_number=span)))
