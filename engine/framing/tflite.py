"""A small TFLite reader and a torch executor for the few ops that MediaPipe's face mesh uses.

Why our own: the face-mesh model ships as a ``.tflite`` flatbuffer, and every runtime for it is a
heavy or conflicting dependency (TensorFlow; the ``mediapipe`` wheel brings a second ``cv2``,
jax and protobuf<5). The model is a plain CNN, so reading the flatbuffer (public schema,
``tensorflow/lite/schema/schema.fbs``) and running its ops with ``torch.nn.functional`` costs
~250 lines and no dependency beyond torch, which the engine has anyway. Any op or option we do
not implement raises :class:`TFLiteError` naming it, so a different model file fails loudly
instead of computing nonsense. Parity with the reference interpreter (``ai-edge-litert``) is
checked in tests/engine/test_face_mesh.py.

Flatbuffers in brief: little-endian; a table starts with an int32 back-offset to its vtable
(uint16 vtable size, uint16 table size, one uint16 field offset per field, 0 = absent); tables,
vectors and strings are referenced by a uint32 offset relative to where the reference sits;
vectors are a uint32 length followed by the elements.

Activations are kept NCHW inside the executor (torch's layout); TFLite's NHWC semantics (axes,
paddings, broadcasting of constants) are mapped at build time, once.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:   # annotations only: torch loads when a program is built
    import torch


class TFLiteError(ValueError):
    """The file is not a TFLite model we can run (corrupt, or an op/option we do not implement)."""


# -- flatbuffer tables --------------------------------------------------------------------------

class _Table:
    """One flatbuffer table: typed access to its fields by index (schema order)."""

    __slots__ = ("b", "pos", "vt", "vlen")

    def __init__(self, b: bytes, pos: int) -> None:
        self.b, self.pos = b, pos
        self.vt = pos - struct.unpack_from("<i", b, pos)[0]
        self.vlen = struct.unpack_from("<H", b, self.vt)[0]

    def _off(self, i: int) -> int:
        o = 4 + 2 * i
        return 0 if o >= self.vlen else struct.unpack_from("<H", self.b, self.vt + o)[0]

    def scalar(self, i: int, fmt: str, default: Any = 0) -> Any:
        o = self._off(i)
        return default if not o else struct.unpack_from("<" + fmt, self.b, self.pos + o)[0]

    def _ref(self, i: int) -> int | None:
        o = self._off(i)
        if not o:
            return None
        p = self.pos + o
        return p + struct.unpack_from("<I", self.b, p)[0]

    def table(self, i: int) -> "_Table | None":
        p = self._ref(i)
        return None if p is None else _Table(self.b, p)

    def _vector(self, i: int) -> tuple[int, int]:
        p = self._ref(i)
        if p is None:
            return 0, 0
        n = struct.unpack_from("<I", self.b, p)[0]
        return p + 4, n

    def tables(self, i: int) -> list["_Table"]:
        start, n = self._vector(i)
        out = []
        for k in range(n):
            e = start + 4 * k
            out.append(_Table(self.b, e + struct.unpack_from("<I", self.b, e)[0]))
        return out

    def ints(self, i: int, fmt: str = "i") -> list[int]:
        start, n = self._vector(i)
        return list(struct.unpack_from(f"<{n}{fmt}", self.b, start)) if n else []

    def raw(self, i: int) -> memoryview:
        start, n = self._vector(i)
        if start + n > len(self.b):
            raise TFLiteError("a buffer runs past the end of the file")
        return memoryview(self.b)[start:start + n]

    def string(self, i: int) -> str:
        return bytes(self.raw(i)).decode("utf-8", "replace")


# -- the model ----------------------------------------------------------------------------------

#: BuiltinOperator codes (schema.fbs) of the ops we know by name (a few beyond what we run, so
#: that an unsupported op is reported by name)
OP_NAMES = {0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
            6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL",
            19: "RELU", 21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX", 28: "TANH",
            34: "PAD", 40: "MEAN", 41: "SUB", 54: "PRELU", 60: "PADV2"}
#: TensorType → numpy dtype
DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
          9: np.int8, 10: np.float64}
#: options tables we read: BuiltinOptions union type → [(name, field index, struct format, default)]
_OPTIONS = {
    1: [("padding", 0, "b", 0), ("stride_w", 1, "i", 1), ("stride_h", 2, "i", 1), ("activation", 3, "b", 0),
        ("dilation_w", 4, "i", 1), ("dilation_h", 5, "i", 1)],                       # Conv2DOptions
    2: [("padding", 0, "b", 0), ("stride_w", 1, "i", 1), ("stride_h", 2, "i", 1), ("depth_multiplier", 3, "i", 0),
        ("activation", 4, "b", 0), ("dilation_w", 5, "i", 1), ("dilation_h", 6, "i", 1)],  # DepthwiseConv2DOptions
    5: [("padding", 0, "b", 0), ("stride_w", 1, "i", 1), ("stride_h", 2, "i", 1), ("filter_w", 3, "i", 1),
        ("filter_h", 4, "i", 1), ("activation", 5, "b", 0)],                          # Pool2DOptions
    10: [("axis", 0, "i", 0), ("activation", 1, "b", 0)],                            # ConcatenationOptions
    11: [("activation", 0, "b", 0)],                                                  # AddOptions
}
PADDING = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: type[np.generic]
    data: np.ndarray | None  # constant data (weights), None for activations


@dataclass
class Operator:
    op: str
    inputs: list[int]        # tensor indices, -1 = optional input left out
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Model:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    version: int
    description: str

    @property
    def op_names(self) -> list[str]:
        return sorted({o.op for o in self.operators})


def read_model(data: bytes, source: str = "model") -> Model:
    """Parse a ``.tflite`` flatbuffer (first subgraph). Raises TFLiteError on anything malformed."""
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise TFLiteError(f"{source} is not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        return _read(data)
    except (struct.error, IndexError, OverflowError) as e:
        raise TFLiteError(f"{source} is a corrupt TFLite model ({e})") from None


def _read(b: bytes) -> Model:
    root = _Table(b, struct.unpack_from("<I", b, 0)[0])
    version = root.scalar(0, "I", 0)
    codes = []
    for oc in root.tables(1):
        code = max(oc.scalar(0, "b", 0), oc.scalar(3, "i", 0))
        codes.append(OP_NAMES.get(code, f"builtin#{code}") if code != 32 else f"CUSTOM:{oc.string(1)}")
    subgraphs = root.tables(2)
    if not subgraphs:
        raise TFLiteError("the model has no subgraph")
    buffers = root.tables(4)
    g = subgraphs[0]
    tensors = []
    for t in g.tables(0):
        shape = tuple(t.ints(0))
        ttype = t.scalar(1, "b", 0)
        if ttype not in DTYPES:
            raise TFLiteError(f"tensor type {ttype} is not supported")
        dtype = DTYPES[ttype]
        data = None
        bi = t.scalar(2, "I", 0)
        if bi >= len(buffers):
            raise TFLiteError(f"tensor buffer index {bi} out of range")
        if bi:
            raw = buffers[bi].raw(0)
            if not len(raw) and buffers[bi].scalar(1, "Q", 0):  # large models: data after the flatbuffer
                off, size = buffers[bi].scalar(1, "Q", 0), buffers[bi].scalar(2, "Q", 0)
                raw = memoryview(b)[off:off + size]
            if len(raw):
                n = int(np.prod(shape)) if shape else 1
                if len(raw) != n * np.dtype(dtype).itemsize:
                    raise TFLiteError(f"tensor {t.string(3)!r}: {len(raw)} bytes for shape {shape}")
                data = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).copy()
        tensors.append(Tensor(t.string(3), shape, dtype, data))
    operators = []
    for o in g.tables(3):
        idx = o.scalar(0, "I", 0)
        if idx >= len(codes):
            raise TFLiteError(f"operator code index {idx} out of range")
        opts: dict[str, Any] = {}
        otype = o.scalar(3, "B", 0)
        table = o.table(4)
        if table is not None and otype in _OPTIONS:
            for name, fi, fmt, default in _OPTIONS[otype]:
                opts[name] = table.scalar(fi, fmt, default)
        ins, outs = o.ints(1), o.ints(2)
        if any(i >= len(tensors) for i in ins + outs):
            raise TFLiteError("operator refers to a tensor out of range")
        operators.append(Operator(codes[idx], ins, outs, opts))
    return Model(tensors, operators, g.ints(1), g.ints(2), version, root.string(3))


def load_model(path: str | Path) -> Model:
    p = Path(path)
    if not p.is_file():
        raise TFLiteError(f"model file {p} is missing (reinstall the engine)")
    return read_model(p.read_bytes(), str(p))


# -- the torch executor -------------------------------------------------------------------------

def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite 'SAME': out = ceil(in / stride), the extra padding goes after (bottom/right)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _nhwc_const_to_nchw(a: np.ndarray) -> np.ndarray:
    """A constant broadcast against an NHWC activation → the same broadcast against NCHW."""
    if a.ndim > 4:
        raise TFLiteError(f"cannot broadcast a {a.ndim}-D constant")
    a = a.reshape((1,) * (4 - a.ndim) + a.shape)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


class TorchProgram:
    """The model's first subgraph as a list of torch steps over NCHW activations (float32, CPU)."""

    def __init__(self, model: Model) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.consts: dict[int, Any] = {}
        self.steps: list[tuple[Callable[..., Any], list[int], int]] = []
        self._produced: set[int] = set()
        for i, t in enumerate(model.tensors):
            if t.data is not None:
                self.consts[i] = t.data
        for op in model.operators:
            self._build(op)
        for i in model.outputs:
            if i not in self._produced and i not in self.consts:
                raise TFLiteError(f"output tensor {model.tensors[i].name!r} is never computed")

    # helpers ----------------------------------------------------------------------------------
    def _const(self, i: int, what: str) -> np.ndarray:
        if i not in self.consts:
            raise TFLiteError(f"{what} must be a constant in this executor")
        c = self.consts[i]
        return c if np.issubdtype(c.dtype, np.integer) else np.asarray(c, np.float32)

    def _activation(self, name_code: int) -> Callable[[Any], Any]:
        F = self.torch.nn.functional
        name = ACTIVATIONS.get(name_code)
        if name is None:
            raise TFLiteError(f"fused activation {name_code} is not supported")
        return {"NONE": lambda x: x, "RELU": F.relu, "RELU6": lambda x: x.clamp(0.0, 6.0),
                "RELU_N1_TO_1": lambda x: x.clamp(-1.0, 1.0), "TANH": self.torch.tanh}[name]

    def _shape(self, i: int) -> tuple[int, ...]:
        return self.model.tensors[i].shape

    def _add_step(self, fn: Callable[..., Any], ins: list[int], out: int) -> None:
        self.steps.append((fn, ins, out))
        self._produced.add(out)

    def _padding(self, op: Operator, in_shape: tuple[int, ...], kh: int, kw: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) for an NHWC input."""
        mode = PADDING.get(op.options.get("padding", 0))
        if mode is None:
            raise TFLiteError(f"{op.op}: padding mode {op.options.get('padding')} is not supported")
        if mode == "VALID":
            return 0, 0, 0, 0
        t, b = _same_pads(in_shape[1], kh, op.options.get("stride_h", 1), op.options.get("dilation_h", 1))
        l, r = _same_pads(in_shape[2], kw, op.options.get("stride_w", 1), op.options.get("dilation_w", 1))
        return t, b, l, r

    # ops --------------------------------------------------------------------------------------
    def _build(self, op: Operator) -> None:
        torch = self.torch
        F = torch.nn.functional
        out = op.outputs[0]
        if op.op == "DEQUANTIZE":  # fp16 weights → float32, folded at build time
            src = op.inputs[0]
            if src not in self.consts:
                raise TFLiteError("DEQUANTIZE of a non-constant tensor is not supported")
            if self.consts[src].dtype != np.float16:
                raise TFLiteError(f"DEQUANTIZE from {self.consts[src].dtype} is not supported (float16 only)")
            self.consts[out] = self.consts[src].astype(np.float32)
            return
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, w_i = op.inputs[0], op.inputs[1]
            b_i = op.inputs[2] if len(op.inputs) > 2 else -1
            w = self._const(w_i, f"{op.op} weights")            # OHWI (conv) / 1HW(C·m) (depthwise)
            in_shape = self._shape(x)
            if len(in_shape) != 4 or w.ndim != 4:
                raise TFLiteError(f"{op.op} needs 4-D NHWC input and weights")
            kh, kw = w.shape[1], w.shape[2]
            cin = in_shape[3]
            if op.op == "CONV_2D":
                if cin % w.shape[3]:
                    raise TFLiteError("CONV_2D: input channels do not match the weights")
                groups = cin // w.shape[3]
                wt = torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2)))
            else:
                mult = w.shape[3] // cin
                if w.shape[0] != 1 or mult * cin != w.shape[3]:
                    raise TFLiteError("DEPTHWISE_CONV_2D: weights do not match the input channels")
                groups = cin
                wt = torch.from_numpy(np.ascontiguousarray(w[0].transpose(2, 0, 1)[:, None]))
            bias = torch.from_numpy(np.ascontiguousarray(self._const(b_i, "bias"))) if b_i >= 0 else None
            t, b, l, r = self._padding(op, in_shape, kh, kw)
            stride = (op.options.get("stride_h", 1), op.options.get("stride_w", 1))
            dil = (op.options.get("dilation_h", 1), op.options.get("dilation_w", 1))
            act = self._activation(op.options.get("activation", 0))
            if t == b and l == r:
                fn = lambda a, wt=wt, bias=bias, p=(t, l): act(F.conv2d(a, wt, bias, stride, p, dil, groups))  # noqa: E731
            else:
                fn = lambda a, wt=wt, bias=bias, p=(l, r, t, b): act(F.conv2d(F.pad(a, p), wt, bias, stride, 0, dil, groups))  # noqa: E731
            self._add_step(fn, [x], out)
            return
        if op.op == "MAX_POOL_2D":
            x = op.inputs[0]
            kh, kw = op.options.get("filter_h", 1), op.options.get("filter_w", 1)
            t, b, l, r = self._padding(op, self._shape(x), kh, kw)
            stride = (op.options.get("stride_h", 1), op.options.get("stride_w", 1))
            act = self._activation(op.options.get("activation", 0))
            pads = (l, r, t, b)
            if any(pads):  # TFLite ignores padded cells: pad with -inf
                fn = lambda a: act(F.max_pool2d(F.pad(a, pads, value=-math.inf), (kh, kw), stride))  # noqa: E731
            else:
                fn = lambda a: act(F.max_pool2d(a, (kh, kw), stride))  # noqa: E731
            self._add_step(fn, [x], out)
            return
        if op.op == "PRELU":
            x, a_i = op.inputs
            alpha = _nhwc_const_to_nchw(self._const(a_i, "PRELU alpha"))
            if alpha.shape[0] == 1 and alpha.shape[2] == 1 and alpha.shape[3] == 1:
                at = torch.from_numpy(alpha.reshape(-1).copy())
                fn = lambda a: F.prelu(a, at)  # noqa: E731
            else:
                at = torch.from_numpy(alpha)
                fn = lambda a: torch.where(a >= 0, a, a * at)  # noqa: E731
            self._add_step(fn, [x], out)
            return
        if op.op == "ADD":
            a_i, b_i = op.inputs
            act = self._activation(op.options.get("activation", 0))
            consts = [i for i in (a_i, b_i) if i in self.consts]
            if len(consts) == 2:
                raise TFLiteError("ADD of two constants is not supported")
            if consts:
                c = self._const(consts[0], "ADD operand")
                other = b_i if consts[0] == a_i else a_i
                ct = torch.from_numpy(_nhwc_const_to_nchw(c) if len(self._shape(other)) == 4 else c)
                self._add_step(lambda a: act(a + ct), [other], out)
            else:
                if len(self._shape(a_i)) != len(self._shape(b_i)):
                    raise TFLiteError("ADD of activations with different ranks is not supported")
                self._add_step(lambda a, c: act(a + c), [a_i, b_i], out)
            return
        if op.op == "PAD":
            x, p_i = op.inputs[:2]
            p = np.asarray(self._const(p_i, "PAD paddings")).reshape(-1, 2)
            if p.shape[0] != 4 or p[0].any():
                raise TFLiteError("PAD is supported on 4-D NHWC activations without batch padding")
            pads = (int(p[2, 0]), int(p[2, 1]), int(p[1, 0]), int(p[1, 1]), int(p[3, 0]), int(p[3, 1]))
            self._add_step(lambda a: F.pad(a, pads), [x], out)
            return
        if op.op == "CONCATENATION":
            act = self._activation(op.options.get("activation", 0))
            rank = len(self._shape(out))
            axis = op.options.get("axis", 0) % rank
            if rank == 4:
                axis = {0: 0, 1: 2, 2: 3, 3: 1}[axis]
            if any(i in self.consts for i in op.inputs):
                raise TFLiteError("CONCATENATION with constant inputs is not supported")
            self._add_step(lambda *xs: act(torch.cat(xs, axis)), list(op.inputs), out)
            return
        if op.op == "RESHAPE":
            x = op.inputs[0]
            shape = tuple(self._shape(out))
            in_rank = len(self._shape(x))

            def reshape(a: torch.Tensor) -> torch.Tensor:
                if in_rank == 4:
                    a = a.permute(0, 2, 3, 1)
                a = a.reshape(shape)
                return a.permute(0, 3, 1, 2) if len(shape) == 4 else a
            self._add_step(reshape, [x], out)
            return
        raise TFLiteError(f"operator {op.op} is not supported by engine/framing/tflite.py")

    # run --------------------------------------------------------------------------------------
    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """NHWC float32 inputs (as the model declares) → the model's outputs, NHWC numpy."""
        torch = self.torch
        if len(inputs) != len(self.model.inputs):
            raise TFLiteError(f"the model takes {len(self.model.inputs)} input(s), got {len(inputs)}")
        env: dict[int, Any] = {}
        for i, x in zip(self.model.inputs, inputs):
            want = self._shape(i)
            x = np.asarray(x, np.float32)
            if tuple(x.shape) != tuple(want):
                raise TFLiteError(f"input {self.model.tensors[i].name!r} must have shape {want}, got {x.shape}")
            t = torch.from_numpy(np.ascontiguousarray(x))
            env[i] = t.permute(0, 3, 1, 2).contiguous() if x.ndim == 4 else t
        with torch.inference_mode():
            for fn, ins, out in self.steps:
                env[out] = fn(*(env[i] for i in ins))
        res = []
        for i in self.model.outputs:
            t = env[i]
            if t.ndim == 4:
                t = t.permute(0, 2, 3, 1)
            res.append(t.contiguous().numpy().reshape(self._shape(i)))
        return res
