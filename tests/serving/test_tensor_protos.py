"""gRPC inputs: a TensorProto becomes the array TensorFlow's own `tf.make_ndarray` makes of it,
for every dtype the server takes, whether its values come as `tensor_content` or in the
dtype's value field (as TF Serving's clients in other languages send them)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.errors import ServingError
from serving.tensors import TensorSpec, _VALUE_FIELDS, proto_to_array, protos_to_arrays

VALUES = {
    types_pb2.DT_FLOAT: [1.5, -2.25, 0.0, 3e38, -1e-3, 7.0],
    types_pb2.DT_DOUBLE: [1.5, -2.25, 0.0, 1e300, -1e-3, 7.0],
    types_pb2.DT_HALF: [1.5, -2.25, 0.0, 65504.0, -0.5, 7.0],
    types_pb2.DT_INT8: [1, -2, 0, 127, -128, 7],
    types_pb2.DT_INT16: [1, -2, 0, 32767, -32768, 7],
    types_pb2.DT_INT32: [1, -2, 0, 2**31 - 1, -(2**31), 7],
    types_pb2.DT_INT64: [1, -2, 0, 2**63 - 1, -(2**63), 7],
    types_pb2.DT_UINT8: [1, 2, 0, 255, 128, 7],
    types_pb2.DT_UINT16: [1, 2, 0, 65535, 128, 7],
    types_pb2.DT_UINT32: [1, 2, 0, 2**32 - 1, 128, 7],
    types_pb2.DT_UINT64: [1, 2, 0, 2**64 - 1, 128, 7],
    types_pb2.DT_BOOL: [True, False, True, True, False, False],
    types_pb2.DT_STRING: [b"a", b"", b"\xff\x00", "é".encode(), b"x" * 300, b"7"],
}


def _in_value_field(dtype: int, values: list, shape) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for d in shape:
        proto.tensor_shape.dim.add(size=d)
    field = getattr(proto, _VALUE_FIELDS[dtype])
    if dtype == types_pb2.DT_HALF:  # half_val holds the float16 bits, as ints
        field.extend(int(b) for b in np.array(values, np.float16).view(np.uint16))
    else:
        field.extend(values)
    return proto


def _spec(dtype, shape=(-1, -1)) -> TensorSpec:
    return TensorSpec("x", dtype, shape)


@pytest.mark.parametrize("dtype", sorted(VALUES), ids=types_pb2.DataType.Name)
def test_every_dtype_reads_as_tensorflow_reads_it(dtype):
    values = VALUES[dtype]
    expected = tf.make_ndarray(_in_value_field(dtype, values, (2, 3)))
    for proto in (_in_value_field(dtype, values, (2, 3)), tf.make_tensor_proto(expected)):
        got = proto_to_array(proto, _spec(dtype))
        assert got.shape == (2, 3) and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [types_pb2.DT_FLOAT, types_pb2.DT_INT64, types_pb2.DT_STRING],
                         ids=types_pb2.DataType.Name)
def test_one_value_fills_the_shape_as_in_tensorflow(dtype):
    proto = _in_value_field(dtype, VALUES[dtype][:1], (2, 2))
    np.testing.assert_array_equal(proto_to_array(proto, _spec(dtype)), tf.make_ndarray(proto))


@pytest.mark.parametrize("proto, spec, message", [
    (_in_value_field(types_pb2.DT_INT64, [1, 2], (2,)), _spec(types_pb2.DT_FLOAT, (-1,)),
     "input 'x' expects DT_FLOAT but the request sent DT_INT64"),
    (_in_value_field(types_pb2.DT_FLOAT, [1.0, 2.0], (3,)), _spec(types_pb2.DT_FLOAT, (-1,)),
     "input 'x' has 2 values for a shape of 3"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\0" * 6,
                            tensor_shape={"dim": [{"size": 2}]}), _spec(types_pb2.DT_FLOAT, (-1,)),
     "tensor_content holds 6 bytes, not the 2 values of its shape"),
    (_in_value_field(types_pb2.DT_FLOAT, [1.0, 2.0], (2,)), _spec(types_pb2.DT_FLOAT, (-1, 1)),
     "input 'x' must have shape"),
])
def test_a_bad_tensor_is_refused_naming_the_input(proto, spec, message):
    with pytest.raises(ServingError) as e:
        proto_to_array(proto, spec)
    assert e.value.code == "INVALID_ARGUMENT" and message in e.value.message


def test_a_request_names_its_unknown_and_missing_inputs():
    inputs = {"a": TensorSpec("a", types_pb2.DT_FLOAT, (-1,)), "b": TensorSpec("b", types_pb2.DT_FLOAT, (-1,))}
    protos = {"a": _in_value_field(types_pb2.DT_FLOAT, [1.0], (1,)), "c": _in_value_field(types_pb2.DT_FLOAT, [1.0], (1,))}
    with pytest.raises(ServingError) as e:
        protos_to_arrays(protos, inputs, None, "serving_default")
    assert "missing ['b'], unknown ['c']" in e.value.message
