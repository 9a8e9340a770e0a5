"""Date and time columns: the formats the product recognises, checks and records.

A date column is recorded in the schema the TFDV way, as the feature's ``time_domain``:
``string_format`` holds a strptime format (``%Y-%m-%d``), ``integer_format: UNIX_SECONDS``
marks whole seconds since 1970. Drafting (``pipeline/schema.py``) recognises the formats
below in string columns; ``features.datetime: {column: format}`` in the config overrides
the guess (a format, or ``unix_seconds``); the preflight refuses a value that does not read
in its column's format, naming the line (``pipeline/preflight.py``).

Formats are strptime formats made of these directives, each at most once, and literal
characters; ``%Y``, ``%m`` and ``%d`` are required:

    %Y  4-digit year        %H  hour 0-23 (1 or 2 digits)     %f  fraction of a second, 1-6 digits
    %m  month 1-12 (1 or 2 digits)   %M  minute 00-59         %z  zone: Z, +HH:MM or +HHMM
    %d  day 1-31 (1 or 2 digits)     %S  second 00-59         %%  a literal %

A value reads in a format when it matches :func:`pattern` (an RE2-compatible regular
expression, also usable in a TensorFlow graph with ``tf.strings.regex_full_match`` /
``regex_replace``) and its day exists in its month (no 30 February).

Why not TFDV's own inference (``StatsOptions(enable_semantic_domain_stats=True)``, its
``TimeStatsGenerator``): tried on the pinned TFDV 1.15.1, it does not know ``DD.MM.YYYY``
or time zones, settles ``01/02/2021`` as ``%m/%d/%Y`` by the order of its list rather than
the values, marks a column whose values are 80% dates as a date column, needs at least 100
values, and marks any integer column between 7,305 and 21,915 (prices, say) as Unix days.
"""
import calendar
import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

UNIX_SECONDS = 'unix_seconds'

_DIRECTIVES = {
    'Y': r'[0-9]{4}',
    'm': r'1[0-2]|0?[1-9]',
    'd': r'3[01]|[12][0-9]|0?[1-9]',
    'H': r'2[0-3]|[01]?[0-9]',
    'M': r'[0-5][0-9]',
    'S': r'[0-5][0-9]',
    'f': r'[0-9]{1,6}',
    'z': r'Z|[+-][0-9]{2}:?[0-9]{2}',
}
_REQUIRED = ('Y', 'm', 'd')
_SPECIAL = set('.^$*+?()[]{}|\\')

# The formats drafting tries, most specific first within each date layout. Day-first and
# month-first slashes are both tried; the values decide between them (see ``guess``).
_DATES = ('%Y-%m-%d', '%Y/%m/%d', '%d.%m.%Y', '%d/%m/%Y', '%m/%d/%Y')
_TIMES = ('%H:%M', '%H:%M:%S', '%H:%M:%S.%f')
CANDIDATES = tuple(
    list(_DATES)
    + [f'{d}{sep}{t}{zone}' for d in _DATES for sep in ('T', ' ') for t in _TIMES
       for zone in ('', '%z')])
# A column is called "date-like" (and a failed guess explained) when at least this share
# of its distinct values read in one candidate format.
DATE_LIKE = 0.8


def directives(fmt: str) -> List[str]:
    """The directive letters of ``fmt`` in order (``'%d.%m.%Y'`` -> ``['d', 'm', 'Y']``)."""
    return [m.group(1) for m in re.finditer(r'%(.)', fmt) if m.group(1) != '%']


def format_error(fmt: str) -> str:
    """Why ``fmt`` is not a format this module reads, or '' when it is."""
    found = directives(fmt)
    unknown = sorted({d for d in found if d not in _DIRECTIVES})
    if unknown:
        return (f'{fmt!r} uses {", ".join("%" + d for d in unknown)}; expected a strptime format '
                f'made of {", ".join("%" + d for d in _DIRECTIVES)} and literal characters, '
                f'or {UNIX_SECONDS!r}')
    repeated = sorted({d for d in found if found.count(d) > 1})
    if repeated:
        return f'{fmt!r} repeats {", ".join("%" + d for d in repeated)}'
    missing = [d for d in _REQUIRED if d not in found]
    if missing:
        return (f'{fmt!r} has no {", ".join("%" + d for d in missing)}; a date format needs '
                '%Y, %m and %d')
    if '%' in re.sub(r'%.', '', fmt):
        return f'{fmt!r} ends with a lone %'
    return ''


def pattern(fmt: str) -> str:
    """A full-match regular expression for ``fmt``: one capturing group per directive, in
    the order of ``directives(fmt)``; everything else literal. RE2 syntax."""
    def literal(text: str) -> str:  # RE2 and Python agree on backslash-escaped punctuation
        return ''.join('\\' + c if c in _SPECIAL else c for c in text)

    parts, i = [], 0
    for m in re.finditer(r'%(.)', fmt):
        parts.append(literal(fmt[i:m.start()]))
        letter = m.group(1)
        parts.append('%' if letter == '%' else f'({_DIRECTIVES[letter]})')
        i = m.end()
    parts.append(literal(fmt[i:]))
    return ''.join(parts)


class Reader:
    """Tells whether values read in one format (regex, then the day within its month)."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.regex = re.compile(pattern(fmt))
        names = directives(fmt)
        self.year, self.month, self.day = (names.index(d) + 1 for d in _REQUIRED)

    def reads(self, value: str) -> bool:
        m = self.regex.fullmatch(value)
        if m is None:
            return False
        day = int(m.group(self.day))
        return day <= 28 or day <= calendar.monthrange(int(m.group(self.year)),
                                                       int(m.group(self.month)))[1]


def unreadable(values: Iterable[str], fmt: str, limit: int = 3) -> List[str]:
    """Up to ``limit`` of ``values`` that do not read in ``fmt``."""
    reader, bad = Reader(fmt), []
    for value in values:
        if not reader.reads(value):
            bad.append(value)
            if len(bad) >= limit:
                break
    return bad


class Guess(NamedTuple):
    """Drafting's decision on one string column: a format, or none and maybe why not."""
    format: str = ''
    note: str = ''


def guess(values: Sequence[str]) -> Guess:
    """The format every one of ``values`` (a column's distinct present values) reads in.

    No format when no candidate reads them all; then, when the column is date-like (one
    candidate reads at least ``DATE_LIKE`` of them), the note says why it was left a
    string. Day-first and month-first (``31/01/2021``, ``01/31/2021``) are told apart only
    by the values: a part above 12 settles it; when none is, the column is ambiguous and
    stays a string, with a note.
    """
    if not values:
        return Guess()
    # Candidates that read the first value, then the ones that read every value.
    readers = [Reader(f) for f in CANDIDATES]
    first = [r for r in readers if r.reads(values[0])]
    if not first:
        sample = values[:200]
        readers_and_share = [(sum(map(r.reads, sample)) / len(sample), r) for r in readers]
        share, best = max(readers_and_share, key=lambda x: x[0])
        if share < DATE_LIKE:
            return Guess()
        first = [best]
    counts = {r.fmt: sum(map(r.reads, values)) for r in first}
    complete = [f for f, n in counts.items() if n == len(values)]
    if len(complete) == 1:
        return Guess(complete[0])
    if len(complete) > 1:
        return Guess('', f'ambiguous dates: every value reads as {" and as ".join(complete)} '
                     '(no day above 12 tells day-first from month-first); left a string: '
                     'name the format in features.datetime')
    fmt, n = max(counts.items(), key=lambda x: x[1])
    if n < DATE_LIKE * len(values):
        return Guess()
    bad = unreadable(values, fmt)
    return Guess('', f'looks like dates ({fmt}), but {len(values) - n} of {len(values)} '
                 f'distinct values do not read so, e.g. {", ".join(map(repr, bad))}; left a '
                 'string: fix those values, add them to data.na_values if they mean '
                 '"missing", or name the format in features.datetime')


def formats(schema, overrides: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """{column: strptime format or ``UNIX_SECONDS``} of the schema's time domains, with the
    config's ``features.datetime`` overriding them."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    found = {}
    for f in (schema.feature if schema is not None else ()):
        if f.WhichOneof('domain_info') != 'time_domain':
            continue
        if f.time_domain.HasField('string_format'):
            found[f.name] = f.time_domain.string_format
        elif f.time_domain.integer_format == schema_pb2.TimeDomain.UNIX_SECONDS:
            found[f.name] = UNIX_SECONDS
    found.update(overrides or {})
    return found
