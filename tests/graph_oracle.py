"""Test-only NumPy interpreter for the decoder subgraph of MoveNet MultiPose (TFJS graph model).

It executes, node by node and with TensorFlow semantics, every node between the six head
convolutions and the graph output ``Identity``.  It is deliberately literal: one small NumPy
function per TF op, float32 arithmetic everywhere, int32 index maths, ``TopKV2`` sorted with
ties resolved to the lower index, ``ArgMax`` returning the first maximum, ``AddN`` folded left
to right, ``FloorDiv`` flooring.  It knows nothing about what the decoder *means*; it is the
reference that ``multipose_decode.decode_multipose`` is checked against.

Usage::

    g = read_graph_model(".../movenet-multipose.json")
    out = run_decoder(g, {"heatmap": ..., "center": ..., ...})   # NHWC, batch 1 -> [1, 6, 56]
"""
from __future__ import annotations

import base64

import numpy as np

PREFIX = "StatefulPartitionedCall/"

# Argument name of decode_multipose -> head node feeding the decoder.
HEAD_NODES = {
    "heatmap": PREFIX + "kpt_heatmap_0/conv2d_7/BiasAdd",
    "center": PREFIX + "center_0/conv2d_4/BiasAdd",
    "regress": PREFIX + "kpt_regress_0/conv2d_8/BiasAdd",
    "offset": PREFIX + "kpt_offset_0/conv2d_9/BiasAdd",
    "box_scale": PREFIX + "box_scale_0/conv2d_5/BiasAdd",
    "box_offset": PREFIX + "box_offset_0/conv2d_6/BiasAdd",
}
OUTPUT_NODE = "Identity"

_TF_DTYPES = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_BOOL": np.bool_, "DT_INT64": np.int64}


# ----------------------------------------------------------------------------- attributes
def _attr_int(node, key, default=None):
    a = node.attr.get(key)
    if a is None:
        return default
    return int(a["i"]) if "i" in a else default


def _attr_ints(node, key):
    a = node.attr.get(key)
    if a is None:
        return []
    return [int(v) for v in a.get("list", {}).get("i", [])]


def _attr_bool(node, key, default=False):
    a = node.attr.get(key)
    return bool(a.get("b", default)) if a is not None else default


def _attr_str(node, key, default=""):
    a = node.attr.get(key)
    return base64.b64decode(a["s"]).decode() if a is not None and "s" in a else default


def _attr_dtype(node, key):
    return _TF_DTYPES[node.attr[key]["type"]]


# ----------------------------------------------------------------------------- op kernels
def _f32(x):
    return np.asarray(x, dtype=np.float32)


def _binary(fn):
    def op(node, a, b):
        out = fn(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype, (node.name, a.dtype, b.dtype)
        return np.asarray(out)

    return op


def _floordiv(a, b):
    if np.issubdtype(a.dtype, np.integer):
        return np.floor_divide(a, b).astype(a.dtype)
    return np.floor(a / b).astype(a.dtype)


def _squared_difference(a, b):
    d = a - b
    return d * d


def _sigmoid(node, x):
    x = _f32(x)
    one = np.float32(1.0)
    return one / (one + np.exp(-x))


def _maxpool(node, x):
    assert _attr_str(node, "data_format", "NHWC") == "NHWC"
    _, kh, kw, _ = _attr_ints(node, "ksize")
    _, sh, sw, _ = _attr_ints(node, "strides")
    padding = _attr_str(node, "padding")
    n, h, w, c = x.shape
    if padding == "SAME":
        oh, ow = -(-h // sh), -(-w // sw)
        ph = max((oh - 1) * sh + kh - h, 0)
        pw = max((ow - 1) * sw + kw - w, 0)
        pads = ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
    elif padding == "VALID":
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        pads = ((0, 0),) * 4
    else:
        raise NotImplementedError(padding)
    xp = np.pad(x, pads, constant_values=-np.inf)
    out = np.full((n, oh, ow, c), -np.inf, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out = np.maximum(out, xp[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :])
    return out


def _cast(node, x):
    dst = _attr_dtype(node, "DstT")
    x = np.asarray(x)
    if np.issubdtype(dst, np.integer) and np.issubdtype(x.dtype, np.floating):
        return np.trunc(x).astype(dst)
    return x.astype(dst)


def _reshape(node, x, shape):
    return np.reshape(x, [int(s) for s in np.asarray(shape).ravel()])


def _topk(node, x, k):
    assert _attr_bool(node, "sorted", True)
    k = int(k)
    x = np.asarray(x)
    # Sort descending along the last axis; ties: lower index first (stable sort on -x).
    # lexsort's last key is primary: primary = -x, secondary = index.
    idx_axis = np.broadcast_to(np.arange(x.shape[-1]), x.shape)
    order = np.lexsort((idx_axis, -x), axis=-1)[..., :k]
    values = np.take_along_axis(x, order, axis=-1)
    return values, order.astype(np.int32)


def _gather_nd(node, params, indices):
    indices = np.asarray(indices)
    r = indices.shape[-1]
    flat = indices.reshape(-1, r)
    for d in range(r):
        if np.any(flat[:, d] < 0) or np.any(flat[:, d] >= params.shape[d]):
            raise IndexError(f"{node.name}: GatherNd index out of range")
    got = params[tuple(flat[:, d] for d in range(r))]
    return got.reshape(indices.shape[:-1] + params.shape[r:])


def _strided_slice(node, x, begin, end, strides):
    begin, end, strides = (np.asarray(v).ravel().tolist() for v in (begin, end, strides))
    bm = _attr_int(node, "begin_mask", 0)
    em = _attr_int(node, "end_mask", 0)
    elm = _attr_int(node, "ellipsis_mask", 0)
    nam = _attr_int(node, "new_axis_mask", 0)
    sam = _attr_int(node, "shrink_axis_mask", 0)
    spec = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        bit = 1 << i
        if elm & bit:
            spec.append(Ellipsis)
        elif nam & bit:
            spec.append(None)
        elif sam & bit:
            spec.append(int(b))
        else:
            spec.append(slice(None if bm & bit else int(b), None if em & bit else int(e), int(s)))
    return np.asarray(np.asarray(x)[tuple(spec)])


def _range(node, start, limit, delta):
    dt = np.asarray(start).dtype
    return np.arange(start, limit, delta, dtype=dt)


def _fill(node, dims, value):
    value = np.asarray(value)
    return np.full([int(d) for d in np.asarray(dims).ravel()], value, dtype=value.dtype)


def _tile(node, x, multiples):
    return np.tile(x, [int(m) for m in np.asarray(multiples).ravel()])


def _pack(node, *xs):
    return np.stack([np.asarray(x) for x in xs], axis=_attr_int(node, "axis", 0))


def _unpack(node, x):
    axis = _attr_int(node, "axis", 0)
    num = _attr_int(node, "num")
    assert x.shape[axis] == num
    return tuple(np.take(x, i, axis=axis) for i in range(num))


def _split(node, axis, x):
    return tuple(np.split(x, _attr_int(node, "num_split"), axis=int(axis)))


def _squeeze(node, x):
    dims = _attr_ints(node, "squeeze_dims")
    if not dims:
        return np.squeeze(x)
    for d in dims:
        assert x.shape[d] == 1, (node.name, x.shape, d)
    return np.squeeze(x, axis=tuple(dims))


def _expand_dims(node, x, dim):
    return np.expand_dims(x, int(dim))


def _addn(node, *xs):
    acc = np.asarray(xs[0])
    for x in xs[1:]:
        acc = acc + x  # ((a + b) + c) ..., as TF's Add3 / AddN kernels
    return acc


def _reduce(fn):
    def op(node, x, axes):
        axes = tuple(int(a) for a in np.asarray(axes).ravel())
        return np.asarray(fn(x, axis=axes, keepdims=_attr_bool(node, "keep_dims")))

    return op


def _argmax(node, x, axis):
    out_t = _TF_DTYPES[node.attr.get("output_type", {"type": "DT_INT64"})["type"]]
    return np.argmax(x, axis=int(axis)).astype(out_t)  # first maximum wins


def _select(node, cond, a, b):
    cond = np.asarray(cond)
    if cond.ndim == 1 and np.asarray(a).ndim > 1:  # v1 Select with a vector condition
        cond = cond.reshape((-1,) + (1,) * (np.asarray(a).ndim - 1))
    else:
        assert cond.shape == np.asarray(a).shape == np.asarray(b).shape, node.name
    return np.where(cond, a, b)


def _concat(node, *args):
    *xs, axis = args
    return np.concatenate([np.asarray(x) for x in xs], axis=int(axis))


def _reciprocal(node, x):
    x = np.asarray(x)
    return x.dtype.type(1) / x


OPS = {
    "Identity": lambda node, x: x,
    "Sigmoid": _sigmoid,
    "Exp": lambda node, x: np.exp(_f32(x)),
    "Abs": lambda node, x: np.abs(x),
    "Reciprocal": _reciprocal,
    "MaxPool": _maxpool,
    "Cast": _cast,
    "Reshape": _reshape,
    "TopKV2": _topk,
    "GatherNd": _gather_nd,
    "StridedSlice": _strided_slice,
    "Range": _range,
    "Fill": _fill,
    "Tile": _tile,
    "Pack": _pack,
    "Unpack": _unpack,
    "Split": _split,
    "Squeeze": _squeeze,
    "ExpandDims": _expand_dims,
    "AddN": _addn,
    "Max": _reduce(np.max),
    "Sum": _reduce(np.sum),
    "ArgMax": _argmax,
    "Select": _select,
    "ConcatV2": _concat,
    "Shape": lambda node, x: np.asarray(np.shape(x), dtype=_attr_dtype(node, "out_type")),
    "Size": lambda node, x: np.asarray(np.size(x), dtype=_attr_dtype(node, "out_type")),
    "Add": _binary(np.add),
    "AddV2": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "RealDiv": _binary(np.divide),
    "FloorDiv": _binary(_floordiv),
    "Minimum": _binary(np.minimum),
    "Maximum": _binary(np.maximum),
    "SquaredDifference": _binary(_squared_difference),
    "Less": _binary(np.less),
    "LessEqual": _binary(np.less_equal),
    "Greater": _binary(np.greater),
    "GreaterEqual": _binary(np.greater_equal),
    "Equal": _binary(np.equal),
    "LogicalAnd": _binary(np.logical_and),
}


# ----------------------------------------------------------------------------- interpreter
def _split_ref(ref: str) -> tuple[str, int]:
    name, _, port = ref.partition(":")
    return name, int(port) if port else 0


def evaluate(graph, feeds: dict, output: str = OUTPUT_NODE, ops: dict | None = None,
             trace: dict | None = None):
    """Evaluate node ``output`` of ``graph`` with the node values in ``feeds`` given.

    ``ops`` maps op type -> kernel(node, *inputs) (default ``OPS``).  Evaluation stops at fed
    nodes and constants; reaching the graph ``Placeholder`` unfed is an error.
    """
    ops = OPS if ops is None else ops
    values: dict[str, object] = dict(feeds)

    stack = [output]  # iterative post-order evaluation
    while stack:
        name = stack[-1]
        if name in values:
            stack.pop()
            continue
        node = graph.nodes[name]
        if node.op == "Const":
            values[name] = np.asarray(graph.weights[name])
            stack.pop()
            continue
        if node.op == "Placeholder":
            raise RuntimeError(f"evaluation reached the unfed graph input {name}")
        refs = [_split_ref(r) for r in node.inputs if not r.startswith("^")]
        pending = [n for n, _ in refs if n not in values]
        if pending:
            stack.extend(pending)
            continue
        args = []
        for n, port in refs:
            v = values[n]
            args.append(v[port] if isinstance(v, tuple) else v)
        kernel = ops.get(node.op)
        if kernel is None:
            raise NotImplementedError(f"op {node.op} ({name})")
        values[name] = kernel(node, *args)
        stack.pop()

    if trace is not None:
        trace.update(values)
    out = values[output]
    return out[0] if isinstance(out, tuple) else out


def run_decoder(graph, heads: dict, output: str = OUTPUT_NODE, trace: dict | None = None) -> np.ndarray:
    """Execute the decoder subgraph and return the value of ``output`` (``[1, 6, 56]`` float32).

    Args:
        graph: a ``TFJSGraph`` of movenet-multipose.
        heads: NHWC (batch 1) float32 arrays, keyed by ``HEAD_NODES`` keys or head node names.
        output: node to evaluate.
        trace: if given, filled with every evaluated node's value (name -> value or tuple).
    """
    feeds = {}
    for key, arr in heads.items():
        name = HEAD_NODES.get(key, key)
        arr = np.asarray(arr)
        assert arr.dtype == np.float32 and arr.ndim == 4 and arr.shape[0] == 1, (key, arr.dtype, arr.shape)
        feeds[name] = arr
    missing = set(HEAD_NODES.values()) - set(feeds)
    assert not missing, f"missing heads: {sorted(missing)}"
    return evaluate(graph, feeds, output, trace=trace)
