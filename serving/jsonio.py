"""JSON in and out of the REST API, with orjson (a C library: ~6x faster than `json` to parse
a 100-row request, ~50x to write 100 float32 predictions, and it writes a float32 as its
shortest text, `0.7`, not `0.699999988079071`).

Parsing refuses a body nested deeper than `max_depth` levels with a 400 before anything reads
it. orjson itself stops at a fixed depth (`_ORJSON_DEPTH`, measured at import); a body with
more than `max_depth` containers is parsed behind `_ORJSON_DEPTH - max_depth` extra levels of
`[`, so that orjson's own check, in C, is the limit. Bodies with `NaN` or `Infinity`
(which TF Serving's parser accepts and orjson does not) go to Python's `json`, with the
depth checked on the result.
"""

import json

import numpy as np
import orjson

from serving.errors import invalid


def _orjson_depth() -> int:
    """The deepest nesting orjson parses (1024 in orjson 3.x)."""
    low, high = 1, 4096
    while high - low > 1:
        middle = (low + high) // 2
        try:
            orjson.loads(b"[" * middle + b"]" * middle)
            low = middle
        except orjson.JSONDecodeError:
            high = middle
    return low


_ORJSON_DEPTH = _orjson_depth()
MAX_DEPTH_LIMIT = _ORJSON_DEPTH - 1  # the deepest --max-json-depth can be


def _too_deep(max_depth: int) -> Exception:
    return invalid(f"JSON Parse error: the body nests deeper than {max_depth} levels (--max-json-depth)")


def _depth(value) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (list, dict)))
    return deepest


def parse(body: bytes, max_depth: int):
    """The JSON value of a request body; INVALID_ARGUMENT when it is not JSON or too deep."""
    pad = 0
    if body.count(b"[") + body.count(b"{") > max_depth:  # else it cannot be too deep
        pad = _ORJSON_DEPTH - max_depth
    try:
        value = orjson.loads(b"[" * pad + body + b"]" * pad if pad else body)
    except orjson.JSONDecodeError as e:
        if str(e).startswith("depth limit exceeded"):
            raise _too_deep(max_depth) from None
        return _parse_with_nan(body, max_depth, e)
    for _ in range(pad):
        value = value[0]
    return value


def _parse_with_nan(body: bytes, max_depth: int, error: orjson.JSONDecodeError):
    if not any(token in body for token in (b"NaN", b"Infinity")):
        raise invalid(f"JSON Parse error: {error}") from None
    try:
        value = json.loads(body)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid(f"JSON Parse error: {e}") from None
    if _depth(value) > max_depth:
        raise _too_deep(max_depth)
    return value


def non_finite(arrays) -> bool:
    """Whether any of these numpy arrays holds a NaN or an infinity."""
    return any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrays)


def _plain(value):
    """numpy values as Python ones, for `json`; float32 keeps its shortest text."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.float32:
            return _plain(list(value))
        return value.tolist()
    if isinstance(value, np.float32):
        return float(repr(value)) if np.isfinite(value) else float(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def dumps(value, has_non_finite: bool = False) -> bytes:
    """JSON for a response; numpy arrays and scalars are written directly. When the caller
    says the value holds a NaN or an infinity (`has_non_finite`), it is written as `NaN` /
    `Infinity`, as TF Serving writes them, by Python's `json` (orjson would write null)."""
    if has_non_finite:
        return json.dumps(_plain(value), separators=(",", ":")).encode("utf-8")
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
