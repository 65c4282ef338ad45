"""Read an OpenVINO IR (v10 / v11: ``model.xml`` + ``model.bin``) with numpy, no OpenVINO needed.

The xml lists layers (id, name, type, ``<data>`` attributes, input and output ports with their shapes) and
edges (``from-layer:from-port -> to-layer:to-port``); every ``Const`` layer points at ``size`` bytes at
``offset`` in the bin, of its ``element_type`` (f16, f32, i8, u8, i32, i64, ...) and ``shape``.

:meth:`IRGraph.value` evaluates a constant subgraph (Const, Convert, Subtract, Add, Multiply, Reshape,
FakeQuantize) in float64 with no rounding but FakeQuantize's own: an int8 weight ``q`` with an f16 zero point
``zp`` and an f16 scale ``s`` (``Const(i8) -> Convert -> Subtract(zp) -> Multiply(s)``, the usual compressed
int8 weight) becomes exactly ``(q - zp) * s``. For ``|zp| < 2^8`` (any f16 is a multiple of 2^-24) ``q - zp``
has at most 32 significant bits and its product with an 11-bit f16 scale at most 43, inside float64's 53
(Intel's zero points, 0 and +-2^-17, need 25 and 36). Float32's 24 bits hold the product where ``zp`` is 0
(8 + 11 bits), not in general otherwise (:func:`float32_exact` tells). The IR types this chain f16;
OpenVINO's float build of the same weights (the golden oracle) computes it in float32.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: numpy dtype of each IR ``element_type``.
ELEMENT_TYPES = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "i8": np.int8, "u8": np.uint8,
                 "i16": np.int16, "u16": np.uint16, "i32": np.int32, "u32": np.uint32, "i64": np.int64,
                 "u64": np.uint64, "boolean": np.bool_}


@dataclass
class Port:
    """One port of a layer: its id, shape (dims; () for a scalar) and precision ('' when not given)."""

    id: int
    shape: tuple[int, ...]
    precision: str = ""


@dataclass
class Layer:
    """One IR layer: ``type`` is the op (Convolution, Const, ...), ``data`` its ``<data>`` attributes (text)."""

    id: int
    name: str
    type: str
    version: str
    data: dict[str, str]
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)

    def ints(self, key: str) -> tuple[int, ...]:
        """A comma-separated integer attribute, e.g. ``strides="2,2"`` -> (2, 2)."""
        text = self.data.get(key, "")
        return tuple(int(v) for v in text.split(",")) if text.strip() else ()


@dataclass
class IRGraph:
    """A parsed IR: layers by id, edges, and the weights blob.

    ``sources[(layer, port)]`` is the ``(layer, port)`` feeding an input port; ``consumers[layer]`` the ids
    of the layers reading any output of ``layer``.
    """

    version: int
    name: str
    layers: dict[int, Layer]
    sources: dict[tuple[int, int], tuple[int, int]]
    consumers: dict[int, list[int]]
    blob: bytes
    xml_path: Path | None = None
    bin_path: Path | None = None

    def by_type(self, *types: str) -> list[Layer]:
        """Layers of the given op types, in id order."""
        return [layer for _, layer in sorted(self.layers.items()) if layer.type in types]

    def by_name(self, name: str) -> Layer:
        """The layer named ``name`` (KeyError naming it when absent or ambiguous)."""
        found = [layer for layer in self.layers.values() if layer.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} layers named {name!r}")
        return found[0]

    def input_of(self, layer: Layer, index: int) -> Layer:
        """The layer feeding ``layer``'s ``index``-th input port."""
        src = self.sources.get((layer.id, layer.inputs[index].id))
        if src is None:
            raise KeyError(f"input {index} of {layer.name!r} is not connected")
        return self.layers[src[0]]

    def const(self, layer: Layer) -> np.ndarray:
        """The raw array of a ``Const`` layer, in its own element type and shape."""
        if layer.type != "Const":
            raise ValueError(f"{layer.name!r} is a {layer.type}, not a Const")
        dtype = np.dtype(ELEMENT_TYPES[layer.data["element_type"]]).newbyteorder("<")
        offset, size = int(layer.data["offset"]), int(layer.data["size"])
        shape = layer.ints("shape")
        if offset < 0 or offset + size > len(self.blob) or size != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"Const {layer.name!r}: {size} bytes at {offset} do not hold a {shape} "
                             f"{layer.data['element_type']} array in a {len(self.blob)}-byte bin")
        return np.frombuffer(self.blob, dtype, count=size // dtype.itemsize, offset=offset).reshape(shape)

    def value(self, layer: Layer) -> np.ndarray:
        """Evaluate the constant subgraph ending at ``layer`` in float64, without intermediate rounding.

        Integer constants are widened exactly; f16 / f32 too. Supported: Const, Convert (a no-op on the
        exact value), Subtract, Add, Multiply (numpy broadcasting, as ``auto_broadcast="numpy"``),
        Reshape (``special_zero``) and FakeQuantize (the opset1 formula).
        """
        t = layer.type
        if t == "Const":
            return self.const(layer).astype(np.float64)
        if t == "Convert":
            return self.value(self.input_of(layer, 0))
        if t in ("Subtract", "Add", "Multiply"):
            a, b = self.value(self.input_of(layer, 0)), self.value(self.input_of(layer, 1))
            return {"Subtract": np.subtract, "Add": np.add, "Multiply": np.multiply}[t](a, b)
        if t == "Reshape":
            x = self.value(self.input_of(layer, 0))
            shape = [int(v) for v in self.const(self.input_of(layer, 1)).reshape(-1)]
            if layer.data.get("special_zero") == "true":
                shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return x.reshape(shape)
        if t == "FakeQuantize":
            x, il, ih, ol, oh = (self.value(self.input_of(layer, i)) for i in range(5))
            levels = int(layer.data["levels"])
            q = np.round((x - il) / (ih - il) * (levels - 1)) / (levels - 1) * (oh - ol) + ol
            return np.where(x <= np.minimum(il, ih), ol, np.where(x > np.maximum(il, ih), oh, q))
        raise ValueError(f"{layer.name!r}: cannot evaluate a {t} as a constant")

    def chain(self, layer: Layer) -> list[str]:
        """The op types of the constant subgraph ending at ``layer``, depth first (to check its form)."""
        if layer.type == "Const":
            return ["Const"]
        out = [layer.type]
        for i in range(len(layer.inputs)):
            out += self.chain(self.input_of(layer, i))
        return out


def _ports(node: ET.Element | None) -> list[Port]:
    if node is None:
        return []
    return [Port(int(p.get("id")), tuple(int(d.text) for d in p.findall("dim")), p.get("precision", ""))
            for p in node.findall("port")]


def read_ir(xml_path: str | Path, bin_path: str | Path | None = None) -> IRGraph:
    """Parse ``model.xml`` and its weights ``model.bin`` (by default beside it, same stem).

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: naming the file, when it is not an OpenVINO IR v10 / v11.
    """
    xml_path = Path(xml_path)
    bin_path = Path(bin_path) if bin_path is not None else xml_path.with_suffix(".bin")
    for p in (xml_path, bin_path):
        if not p.is_file():
            raise FileNotFoundError(f"OpenVINO IR file not found: {p}")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{xml_path}: not an XML file ({exc}); pass an OpenVINO IR .xml") from None
    version = root.get("version", "")
    if root.tag != "net" or version not in ("10", "11"):
        raise ValueError(f"{xml_path}: not an OpenVINO IR v10/v11 (<{root.tag} version={version!r}>); "
                         "pass an OpenVINO IR .xml")
    layers: dict[int, Layer] = {}
    for node in root.find("layers") if root.find("layers") is not None else []:
        data = node.find("data")
        layer = Layer(int(node.get("id")), node.get("name", ""), node.get("type", ""), node.get("version", ""),
                      dict(data.attrib) if data is not None else {}, _ports(node.find("input")),
                      _ports(node.find("output")))
        layers[layer.id] = layer
    sources: dict[tuple[int, int], tuple[int, int]] = {}
    consumers: dict[int, list[int]] = {i: [] for i in layers}
    for edge in root.find("edges") if root.find("edges") is not None else []:
        fl, fp, tl, tp = (int(edge.get(k)) for k in ("from-layer", "from-port", "to-layer", "to-port"))
        if fl not in layers or tl not in layers:
            raise ValueError(f"{xml_path}: an edge joins unknown layers {fl} -> {tl}")
        sources[(tl, tp)] = (fl, fp)
        consumers[fl].append(tl)
    if not layers:
        raise ValueError(f"{xml_path}: the IR has no layers")
    return IRGraph(int(version), root.get("name", ""), layers, sources, consumers, bin_path.read_bytes(),
                   xml_path, bin_path)


def float32_exact(values: np.ndarray) -> bool:
    """Whether every float64 value survives a round trip through float32 bit for bit."""
    values = np.asarray(values, np.float64)
    return bool(np.array_equal(values.astype(np.float32).astype(np.float64), values))
