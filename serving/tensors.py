"""Turning request payloads into numpy arrays a signature accepts, and outputs back.

Three payload kinds meet here: TF Serving's REST JSON (row and columnar formats, with
`{"b64": ...}` for bytes), gRPC TensorProtos, and JSON tf.Examples for classify/regress.
Every check a client can fail raises `ServingError` with a message naming the input.

Missing values: a signature that follows the pipeline's `serving_json` convention (see
`components.signatures`) takes a missing value of any input as "" (strings), NaN (floats) or
`MISSING_INT64` (integers). For such a signature, the `fills` these functions take map each
input to that value, and JSON's `null` or an input left out (a key absent from a row, a
column or a gRPC request) is filled with it. Without `fills`, both are refused, as TF
Serving refuses them. In JSON examples (classify/regress), `null` leaves the feature out of
the tf.Example, as an absent key does.
"""

import base64
import binascii
import dataclasses
import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from components.signatures import MISSING_INT64
from serving.errors import invalid

_NUMPY_DTYPES = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_HALF: np.float16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_UINT16: np.uint16,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
    types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_STRING: object,
}
_FLOATS = {types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF}
_NONE = type(None)
# dtype -> the Python types of the JSON values that fill it as they are (bool is not an int here).
_JSON_TYPES = {
    **{d: frozenset({float, int}) for d in _FLOATS},
    **{d: frozenset({int}) for d in _NUMPY_DTYPES if d not in _FLOATS | {types_pb2.DT_BOOL, types_pb2.DT_STRING}},
    types_pb2.DT_BOOL: frozenset({bool}),
    types_pb2.DT_STRING: frozenset({str}),
}


def numpy_dtype(dtype: int):
    return _NUMPY_DTYPES[dtype]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a signature, as its SignatureDef declares it."""

    name: str
    dtype: int  # a types_pb2.DataType value
    shape: tuple[int, ...] | None  # -1 for an unknown dimension; None for unknown rank

    @classmethod
    def from_tensor_info(cls, name, info) -> "TensorSpec":
        shape = None
        if not info.tensor_shape.unknown_rank:
            shape = tuple(d.size for d in info.tensor_shape.dim)
        return cls(name, info.dtype, shape)

    def __post_init__(self):
        # Worked out once: they are read for every input of every request.
        # batched: the leading dimension is the (unknown) batch dimension.
        object.__setattr__(self, "batched", self.shape is not None and len(self.shape) >= 1 and self.shape[0] == -1)
        # column: a [batch] vector, as the pipeline's serving_json inputs are.
        object.__setattr__(self, "column", self.shape == (-1,))
        object.__setattr__(self, "json_types", _JSON_TYPES.get(self.dtype, frozenset()))

    @property
    def dtype_name(self) -> str:
        return types_pb2.DataType.Name(self.dtype)


def missing_fills(inputs: dict[str, TensorSpec]) -> dict[str, object]:
    """For a signature that takes missing values (the pipeline's `serving_json`): input name
    -> the value that stands for "missing", for the inputs whose dtype has one."""
    fills = {}
    for name, spec in inputs.items():
        if spec.dtype == types_pb2.DT_STRING:
            fills[name] = b""
        elif spec.dtype in _FLOATS:
            fills[name] = float("nan")
        elif spec.dtype == types_pb2.DT_INT64:
            fills[name] = MISSING_INT64
    return fills


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _no_null(spec: TensorSpec) -> Exception:
    return invalid(
        f"input '{spec.name}' got null: this signature takes no missing values (the pipeline's "
        "serving_json signature does)"
    )


# --------------------------------------------------------------------------------------
# JSON -> numpy


def _leaf(value, spec: TensorSpec, fill):
    dtype = spec.dtype
    if value is None:
        if fill is None:
            raise _no_null(spec)
        return fill
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict) and len(value) == 1 and "b64" in value:
            return decode_b64(value["b64"], spec.name)
    elif dtype in _FLOATS:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif dtype == types_pb2.DT_BOOL:
        if isinstance(value, bool):
            return value
    elif dtype in _NUMPY_DTYPES:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    else:
        raise invalid(f"input '{spec.name}' has dtype {spec.dtype_name}, which JSON requests cannot fill")
    kind = {types_pb2.DT_STRING: 'strings (or {"b64": ...} objects)', types_pb2.DT_BOOL: "booleans"}.get(
        dtype, "numbers" if dtype in _FLOATS else "integers"
    )
    raise invalid(f"input '{spec.name}' expects {kind} ({spec.dtype_name}), got {_short(value)}")


def decode_b64(text, name: str) -> bytes:
    if not isinstance(text, str):
        raise invalid(f"'b64' value for '{name}' must be a string, got {_short(text)}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise invalid(f"'b64' value for '{name}' is not valid base64: {e}") from None


def _flatten(value, spec: TensorSpec, fill, out: list, levels: int) -> tuple[int, ...]:
    """Appends the leaves of a nested JSON list to `out`; returns its shape (must be
    rectangular). `levels`: how many more levels of list the input's shape allows."""
    if not isinstance(value, list):
        out.append(_leaf(value, spec, fill))
        return ()
    if levels == 0:
        raise invalid(f"input '{spec.name}' must have shape {_describe_shape(spec.shape)} (-1: any size), but nests deeper")
    if not value:
        return (0,)
    inner = _flatten(value[0], spec, fill, out, levels - 1)
    for item in value[1:]:
        if _flatten(item, spec, fill, out, levels - 1) != inner:
            raise invalid(f"input '{spec.name}' is ragged: all lists at one nesting level must have the same length")
    return (len(value),) + inner


def check_shape(shape: tuple[int, ...], spec: TensorSpec) -> None:
    if spec.shape is None:
        return
    ok = len(shape) == len(spec.shape) and all(want in (-1, got) for want, got in zip(spec.shape, shape))
    if not ok:
        raise invalid(
            f"input '{spec.name}' must have shape {_describe_shape(spec.shape)} (-1: any size), "
            f"got shape {_describe_shape(shape)}"
        )


def _flat_array(value: list, spec: TensorSpec, fill) -> np.ndarray | None:
    """The common case fast: a flat list of plain values of the right JSON type (checked
    with one pass over their types), nulls filled when `fill` allows. None when the general
    path must look closer (and name what is wrong)."""
    types = set(map(type, value))
    if _NONE in types:
        if fill is None:
            return None
        types.discard(_NONE)
        if spec.dtype != types_pb2.DT_STRING:
            value = [fill if v is None else v for v in value]
    dtype = spec.dtype
    if dtype == types_pb2.DT_STRING:
        if not types <= {str}:
            return None
        array = np.empty(len(value), dtype=object)
        array[:] = [fill if v is None else v.encode("utf-8") for v in value]
        return array
    if dtype in _FLOATS:
        ok = types <= {float, int}
    elif dtype == types_pb2.DT_BOOL:
        ok = types <= {bool}
    else:
        ok = types <= {int} and dtype in _NUMPY_DTYPES
    if not ok:
        return None
    try:
        return np.array(value, dtype=_NUMPY_DTYPES[dtype])
    except OverflowError:
        return None  # the general path names the input


def json_to_array(value, spec: TensorSpec, fill=None) -> np.ndarray:
    """A JSON value (nested lists) as the array `spec` wants; `fill` stands in for null."""
    if isinstance(value, list) and value:
        array = _flat_array(value, spec, fill)
        if array is not None:
            check_shape(array.shape, spec)
            return array
    leaves: list = []
    levels = len(spec.shape) if spec.shape is not None else 64
    shape = _flatten(value, spec, fill, leaves, levels)
    check_shape(shape, spec)
    array = np.empty(len(leaves), dtype=_NUMPY_DTYPES[spec.dtype])
    try:
        array[:] = leaves
    except OverflowError:
        raise invalid(f"input '{spec.name}' has a value out of range for {spec.dtype_name}") from None
    return array.reshape(shape)


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def rows_to_arrays(instances, inputs: dict[str, TensorSpec], fills: dict | None = None) -> dict[str, np.ndarray]:
    """TF Serving's row format: a list of instances, each an object keyed by input name
    (or, for a signature with one input, the bare value of that input). With `fills`, an
    instance may leave out an input: its value is missing."""
    if not isinstance(instances, list):
        raise invalid("'instances' must be a list")
    if not instances:
        raise invalid("'instances' is empty: send at least one instance")
    names = list(inputs)
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named:
        if len(names) != 1:
            raise invalid(f"each instance must be an object with the inputs {sorted(names)}")
        name = names[0]
        return {name: json_to_array(instances, inputs[name], _fill(fills, name))}
    expected = inputs.keys()
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or _is_b64(instance):
            raise invalid(f"instance {i} is not an object like instance 0")
        if instance.keys() != expected:
            _check_names(instance.keys(), names, f"instance {i}", fills is not None)
    if len(instances) == 1:
        return _one_row(instances[0], inputs, fills)
    if fills is None:
        return {name: json_to_array([row[name] for row in instances], inputs[name]) for name in names}
    return {name: json_to_array([row.get(name) for row in instances], inputs[name], _fill(fills, name)) for name in names}


def _one_row(instance: dict, inputs: dict[str, TensorSpec], fills: dict | None) -> dict[str, np.ndarray]:
    """A one-row request, the most common kind, without the general path's list work."""
    arrays = {}
    for name, spec in inputs.items():
        value = instance.get(name)
        kind = type(value)
        if spec.column and kind in spec.json_types:
            if kind is str:
                array = np.empty(1, dtype=object)
                array[0] = value.encode("utf-8")
            else:
                try:
                    array = np.array([value], dtype=_NUMPY_DTYPES[spec.dtype])
                except OverflowError:
                    array = json_to_array([value], spec, _fill(fills, name))  # names the input
            arrays[name] = array
        else:
            arrays[name] = json_to_array([value], spec, _fill(fills, name))
    return arrays


def _fill(fills: dict | None, name: str):
    return fills.get(name) if fills is not None else None


def columns_to_arrays(value, inputs: dict[str, TensorSpec], fills: dict | None = None) -> dict[str, np.ndarray]:
    """TF Serving's columnar format: `inputs` maps input name to a (batched) value, or is the
    bare value of a signature's only input. With `fills`, an input left out is missing in
    every row."""
    names = list(inputs)
    if isinstance(value, dict) and not _is_b64(value):
        _check_names(value.keys(), names, "'inputs'", fills is not None)
        arrays = {name: json_to_array(value[name], inputs[name], _fill(fills, name)) for name in names if name in value}
        return fill_absent(arrays, inputs, fills, "'inputs'")
    if len(names) != 1:
        raise invalid(f"'inputs' must be an object with the inputs {sorted(names)}")
    return {names[0]: json_to_array(value, inputs[names[0]], _fill(fills, names[0]))}


def fill_absent(arrays: dict[str, np.ndarray], inputs: dict[str, TensorSpec], fills: dict | None, where: str) -> dict[str, np.ndarray]:
    """Adds a column of missing values for each input a request left out (with `fills`), as
    long as the inputs it did send tell the batch size."""
    absent = [name for name in inputs if name not in arrays]
    if not absent:
        return arrays
    sizes = {a.shape[0] for name, a in arrays.items() if inputs[name].batched and a.ndim}
    if not sizes:
        raise invalid(
            f"{where}: missing input(s) {sorted(absent)}; send at least one batched input, so that "
            "the number of rows is known"
        )
    if len(sizes) > 1:
        raise invalid(f"{where}: inputs disagree on the batch size (dimension 0): {sorted(sizes)}")
    rows = sizes.pop()
    for name in absent:
        spec = inputs[name]
        if name not in fills or spec.shape is None or len(spec.shape) != 1:
            raise invalid(f"{where}: input '{name}' ({spec.dtype_name}) cannot be left out")
        column = np.empty(rows, dtype=_NUMPY_DTYPES[spec.dtype])
        column[:] = fills[name]
        arrays[name] = column
    return arrays


def _check_names(got, expected: list[str], where: str, absent_ok: bool = False) -> None:
    missing = [] if absent_ok else sorted(set(expected) - set(got))
    unknown = sorted(set(got) - set(expected))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing input(s) {missing}")
        if unknown:
            parts.append(f"unknown input(s) {unknown}")
        raise invalid(f"{where}: {' and '.join(parts)}; the signature takes {sorted(expected)}")


# --------------------------------------------------------------------------------------
# numpy -> JSON


def _bytes_to_json(value: bytes, as_b64: bool):
    if not as_b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(value).decode("ascii")}


def _nest(flat: list, shape: tuple[int, ...]):
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape).tolist()


def array_to_json(array: np.ndarray, name: str):
    """A value `jsonio.dumps` writes: numeric arrays as they are (written directly, float32
    as its shortest text); strings as UTF-8 text, or, as in TF Serving, `{"b64": ...}` when
    the output's name ends in `_bytes` (or the bytes are not UTF-8)."""
    if array.dtype != object:
        return array
    as_b64 = name.endswith("_bytes")
    return _nest([_bytes_to_json(v, as_b64) for v in array.reshape(-1)], array.shape)


# --------------------------------------------------------------------------------------
# TensorProto <-> numpy (gRPC)


# dtype -> the TensorProto field that lists its values (when not in tensor_content).
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_HALF: "half_val",
    types_pb2.DT_INT8: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val", types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val", types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}
_DATA_TYPES = {np.dtype(v): k for k, v in _NUMPY_DTYPES.items() if v is not object}


def proto_to_array(proto, spec: TensorSpec) -> np.ndarray:
    """A TensorProto as an array, in numpy (tf.make_ndarray takes ~250 us an input; this ~8:
    each read of a field of a C++ protobuf message costs ~0.3 us, so each is read once)."""
    dtype_enum = proto.dtype
    if dtype_enum != spec.dtype:
        raise invalid(
            f"input '{spec.name}' expects {spec.dtype_name} but the request sent "
            f"{types_pb2.DataType.Name(dtype_enum)}"
        )
    shape = tuple([d.size for d in proto.tensor_shape.dim])
    count = math.prod(shape)
    if any(d < 0 for d in shape):
        raise invalid(f"input '{spec.name}' has a negative dimension in its TensorProto shape")
    dtype = _NUMPY_DTYPES[dtype_enum]
    content = proto.tensor_content if dtype is not object else b""
    if content:
        if len(content) != count * np.dtype(dtype).itemsize:
            raise invalid(f"input '{spec.name}': tensor_content holds {len(content)} bytes, "
                          f"not the {count} values of its shape")
        array = np.frombuffer(content, dtype=dtype).reshape(shape)
    else:
        values = getattr(proto, _VALUE_FIELDS[dtype_enum])
        n = len(values)
        if dtype_enum == types_pb2.DT_HALF:
            flat = np.fromiter(values, dtype=np.uint16, count=n).view(np.float16)
        elif dtype is object:
            flat = np.empty(n, dtype=object)
            flat[:] = list(values)
        else:
            flat = np.fromiter(values, dtype=dtype, count=n)
        if n == count:
            array = flat.reshape(shape)
        elif n == 1 or (n == 0 and count == 0):
            array = np.full(shape, flat[0] if n else 0, dtype=dtype)  # one value fills the shape, as in TF
        else:
            raise invalid(f"input '{spec.name}' has {n} values for a shape of {count}")
    check_shape(array.shape, spec)
    return array


def protos_to_arrays(protos, inputs: dict[str, TensorSpec], fills: dict | None, signature_name: str) -> dict[str, np.ndarray]:
    """A PredictRequest's `inputs` map as arrays. With `fills`, an input left out is missing."""
    sent = set(protos)  # one pass over the C++ map; each `in` on it costs ~0.3 us
    missing = [] if fills is not None else sorted(set(inputs) - sent)
    unknown = sorted(sent - set(inputs))
    if missing or unknown:
        raise invalid(
            f"request inputs do not match signature '{signature_name}': missing {missing}, "
            f"unknown {unknown}; the signature takes {sorted(inputs)}"
        )
    arrays = {name: proto_to_array(protos[name], spec) for name, spec in inputs.items() if name in sent}
    return fill_absent(arrays, inputs, fills, f"signature '{signature_name}'")


def array_to_proto(array: np.ndarray):
    """An output array as a TensorProto, in numpy (tf.make_tensor_proto takes ~90 us)."""
    proto = tensor_pb2.TensorProto()
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape)
    if array.dtype == object:
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.reshape(-1))
        return proto
    proto.dtype = _DATA_TYPES[array.dtype]
    proto.tensor_content = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return proto


# --------------------------------------------------------------------------------------
# JSON examples -> tf.Example (classify / regress)

_STRING, _INT, _FLOAT = "string", "int", "float"


def feature_kinds(specs: dict[str, TensorSpec]) -> dict[str, str]:
    """Raw feature name -> 'string' / 'int' / 'float', from a signature that takes one tensor
    per raw feature (the pipeline's `serving_json`)."""
    kinds = {}
    for name, spec in specs.items():
        if spec.dtype == types_pb2.DT_STRING:
            kinds[name] = _STRING
        elif spec.dtype in _FLOATS:
            kinds[name] = _FLOAT
        else:
            kinds[name] = _INT
    return kinds


def _json_feature(name: str, value, kind: str | None) -> tf.train.Feature | None:
    """A JSON example's feature; None (left out of the example) for `null`."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool) or v is None or (isinstance(v, (list, dict)) and not _is_b64(v)):
            raise invalid(
                f"feature '{name}' must be a number, a string, a {{\"b64\": ...}} object, null, or a "
                f"flat list of numbers or of strings; got {_short(value)}"
            )
    strings = [isinstance(v, (str, dict)) for v in values]
    if not values:
        got = kind or _FLOAT
    elif all(strings):
        got = _STRING
    elif any(strings):
        raise invalid(f"feature '{name}' mixes strings and numbers: {_short(value)}")
    elif all(isinstance(v, int) for v in values):
        got = _FLOAT if kind == _FLOAT else _INT  # 3 for a float feature: a number is a number
    else:
        got = _FLOAT
    if kind is not None and got != kind:
        raise invalid(f"feature '{name}' is a {kind} feature, got {_short(value)}")
    if got == _STRING:
        data = [v.encode("utf-8") if isinstance(v, str) else decode_b64(v["b64"], name) for v in values]
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=data))
    if got == _INT:
        try:
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        except ValueError:
            raise invalid(f"feature '{name}' has a value out of the int64 range") from None
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _json_features(example: dict, kinds_get) -> dict:
    features = {}
    for name, value in example.items():
        feature = _json_feature(name, value, kinds_get(name))
        if feature is not None:
            features[name] = feature
    return features


def json_to_examples(examples, context, kinds: dict[str, str] | None) -> list[bytes]:
    """TF Serving's JSON example format: numbers with a fraction become float_list, other
    numbers int64_list, strings and {"b64": ...} bytes_list; null leaves the feature out.
    `context` features are merged into every example. With `kinds` (from the model), an
    integer given for a float feature is taken as a float, and unknown feature names are
    refused."""
    if not isinstance(examples, list):
        raise invalid("'examples' must be a list of objects")
    if not examples:
        raise invalid("'examples' is empty: send at least one example")
    if context is not None and not isinstance(context, dict):
        raise invalid("'context' must be an object")
    kinds_get = (kinds or {}).get
    base = _json_features(context or {}, kinds_get)
    serialized = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise invalid(f"example {i} must be an object mapping feature names to values")
        features = dict(base)
        for name, value in example.items():
            if value is None:
                features.pop(name, None)  # null: missing, whatever the context says
        features.update(_json_features(example, kinds_get))
        proto = tf.train.Example(features=tf.train.Features(feature=features))
        check_example(proto, kinds, i)
        serialized.append(proto.SerializeToString())
    return serialized


def check_example(example, kinds: dict[str, str] | None, index: int) -> None:
    """Refuses feature names the model does not know and values of the wrong kind."""
    if not kinds:
        return
    for name, feature in example.features.feature.items():
        if name not in kinds:
            raise invalid(f"example {index}: unknown feature '{name}'; the model takes {sorted(kinds)}")
        got = {"bytes_list": _STRING, "int64_list": _INT, "float_list": _FLOAT}.get(feature.WhichOneof("kind"))
        if got is not None and got != kinds[name]:
            raise invalid(f"example {index}: feature '{name}' is a {kinds[name]} feature, got a {got} list")


def examples_from_input(input_proto, kinds: dict[str, str] | None) -> list[bytes]:
    """The examples of a gRPC `tensorflow.serving.Input`, serialized, context merged in."""
    which = input_proto.WhichOneof("kind")
    if which == "example_list":
        protos = list(input_proto.example_list.examples)
    elif which == "example_list_with_context":
        ctx = input_proto.example_list_with_context.context
        protos = []
        for ex in input_proto.example_list_with_context.examples:
            merged = tf.train.Example()
            merged.CopyFrom(ctx)
            merged.MergeFrom(ex)
            protos.append(merged)
    else:
        raise invalid("Input is empty: set example_list or example_list_with_context")
    if not protos:
        raise invalid("Input has no examples: send at least one example")
    for i, proto in enumerate(protos):
        check_example(proto, kinds, i)
    return [p.SerializeToString() for p in protos]
