"""TFLite backend: ai-edge-litert's interpreter (tflite-runtime as a fall-back import).

- Callers always feed and get float32: int8/uint8 model inputs are quantized and int8/uint8
  outputs dequantized with each tensor's scale and zero point.
- Tensors are bound by name. Names come from the model's signature (``serving_default``), so a
  model converted with litert-torch exposes the output names its PyTorch module returned; the
  edgepose metadata may add a ``tflite.names`` map (public name → signature name) for models whose
  TFLite names differ from the ONNX names the metadata uses.
- The edgepose metadata (ModelMeta JSON) is read from the flatbuffer's ``metadata`` table, entry
  ``"edgepose"``, with a tiny flatbuffer reader (no schema package needed; Python 3.8 friendly).
  A sidecar ``<model>.tflite.json`` is read when the flatbuffer carries none.
"""
import os
import struct
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, ModelError, first_line
from ..metadata import ModelMeta
from .base import Backend, TensorSpec

TFLITE_META_KEY = "edgepose"
TFLITE_IDENTIFIER = b"TFL3"


# ----------------------------------------------------------------------------------------------
# minimal flatbuffer reader for Model.metadata (schema.fbs: Model field 4 = buffers,
# field 6 = metadata; Metadata {name: string; buffer: uint} ; Buffer {data: [ubyte];
# offset: ulong; size: ulong})
# ----------------------------------------------------------------------------------------------
class _FB:
    def __init__(self, buf: bytes):
        self.buf = buf

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.buf, pos)[0]

    def u64(self, pos: int) -> int:
        return struct.unpack_from("<Q", self.buf, pos)[0]

    def field(self, table: int, idx: int) -> Optional[int]:
        """Absolute position of field ``idx`` of the table at ``table`` (None if absent)."""
        vtable = table - struct.unpack_from("<i", self.buf, table)[0]
        vsize = struct.unpack_from("<H", self.buf, vtable)[0]
        off = 4 + 2 * idx
        if off >= vsize:
            return None
        rel = struct.unpack_from("<H", self.buf, vtable + off)[0]
        return table + rel if rel else None

    def deref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, pos: int) -> Tuple[int, int]:
        """(start, length) of the vector referenced at ``pos``."""
        v = self.deref(pos)
        return v + 4, self.u32(v)

    def string(self, pos: int) -> bytes:
        start, n = self.vector(pos)
        return bytes(self.buf[start:start + n])


def read_tflite_metadata(buf: bytes) -> Dict[str, bytes]:
    """All entries of a TFLite flatbuffer's ``metadata`` table: name → buffer bytes."""
    if len(buf) < 8 or bytes(buf[4:8]) != TFLITE_IDENTIFIER:
        raise ModelError("not a TFLite flatbuffer (missing 'TFL3' identifier)")
    fb = _FB(buf)
    try:
        model = fb.deref(0)
        md_field = fb.field(model, 6)
        buf_field = fb.field(model, 4)
        if md_field is None or buf_field is None:
            return {}
        bstart, bcount = fb.vector(buf_field)
        mstart, mcount = fb.vector(md_field)
        out: Dict[str, bytes] = {}
        for i in range(mcount):
            md = fb.deref(mstart + 4 * i)
            name_f = fb.field(md, 0)
            bidx_f = fb.field(md, 1)
            if name_f is None or bidx_f is None:
                continue
            name = fb.string(name_f).decode("utf-8", "replace")
            bidx = fb.u32(bidx_f)
            if bidx >= bcount:
                raise ModelError("TFLite metadata %r points at missing buffer %d" % (name, bidx))
            b = fb.deref(bstart + 4 * bidx)
            data_f = fb.field(b, 0)
            off_f = fb.field(b, 1)
            size_f = fb.field(b, 2)
            if data_f is not None:
                out[name] = fb.string(data_f)
            elif off_f is not None and size_f is not None and fb.u64(off_f) > 1:
                o, s = fb.u64(off_f), fb.u64(size_f)
                out[name] = bytes(buf[o:o + s])
            else:
                out[name] = b""
        return out
    except (struct.error, IndexError) as e:
        raise ModelError("TFLite flatbuffer is truncated or corrupt (%s)" % e)


def sidecar_path(path: str) -> str:
    return path + ".json"


def read_meta(path: str, buf: Optional[bytes] = None) -> Optional[ModelMeta]:
    """The edgepose metadata of a .tflite file: flatbuffer entry, else sidecar JSON, else None."""
    if buf is None:
        with open(path, "rb") as f:
            buf = f.read()
    entries = read_tflite_metadata(buf)
    if TFLITE_META_KEY in entries:
        return ModelMeta.from_json(entries[TFLITE_META_KEY].decode("utf-8"))
    side = sidecar_path(path)
    if os.path.exists(side):
        with open(side, "r", encoding="utf-8") as f:
            return ModelMeta.from_json(f.read())
    return None


def _import_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore
        return Interpreter, "tflite-runtime"
    except ImportError:
        raise ModelError("no TFLite runtime installed: pip install ai-edge-litert "
                         "(or tflite-runtime on older platforms)")




class _Tensor:
    """One bound model tensor: public name, interpreter index, dtype and quantization."""

    def __init__(self, name: str, detail: dict):
        self.name = name
        self.index = int(detail["index"])
        self.dtype = np.dtype(detail["dtype"])
        self.shape = [int(d) for d in detail["shape"]]
        sig = detail.get("shape_signature")
        self.shape_signature = [int(d) for d in sig] if sig is not None and len(sig) else list(self.shape)
        scale, zp = detail.get("quantization", (0.0, 0))
        self.scale = float(scale)
        self.zero_point = int(zp)
        self.quantized = self.dtype in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16)) \
            and self.scale > 0

    def spec(self) -> TensorSpec:
        shape = [None if s < 0 else s for s in self.shape_signature]
        return TensorSpec(self.name, shape, np.float32 if (self.quantized or self.dtype.kind == "f")
                          else self.dtype)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        q = np.rint(np.asarray(x, np.float32) * np.float32(1.0 / self.scale)) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)


class TfliteBackend(Backend):
    """A .tflite model on the CPU (XNNPACK where the runtime applies it).

    ``threads``: interpreter threads (None: the runtime's default). Inputs and outputs are float32
    for the caller whatever the model's IO types.
    """

    name = "tflite"

    def __init__(self, path: str, threads: Optional[int] = None, **kwargs):
        super().__init__()
        self.path = path
        if not os.path.exists(path):
            raise ModelError("model file not found: %s" % path)
        with open(path, "rb") as f:
            buf = f.read()
        base = os.path.basename(path)
        if len(buf) < 8 or buf[4:8] != TFLITE_IDENTIFIER:
            raise ModelError("%s is not a TFLite model (no 'TFL3' flatbuffer identifier)" % base)
        try:
            self.meta = read_meta(path, buf)
        except ModelError as e:
            raise ModelError("%s: %s" % (base, e))
        Interpreter, self.runtime = _import_interpreter()
        self.threads = int(threads) if threads else None
        try:
            kw = {"model_content": buf}
            if self.threads:
                kw["num_threads"] = self.threads
            self.interpreter = Interpreter(**kw)
            self.interpreter.allocate_tensors()
        except Exception as e:  # the runtime raises ValueError/RuntimeError on bad flatbuffers
            raise ModelError("%s is not a loadable TFLite model: %s" % (base, first_line(e)))
        self._bind()

    # --------------------------------------------------------------------------------------
    def _bind(self) -> None:
        it = self.interpreter
        by_index_in = {int(d["index"]): d for d in it.get_input_details()}
        by_index_out = {int(d["index"]): d for d in it.get_output_details()}
        sig_in: Dict[str, int] = {}
        sig_out: Dict[str, int] = {}
        try:
            sigs = it._get_full_signature_list()
        except Exception:
            sigs = {}
        if sigs:
            key = "serving_default" if "serving_default" in sigs else sorted(sigs)[0]
            sig_in = {k: int(v) for k, v in sigs[key].get("inputs", {}).items()}
            sig_out = {k: int(v) for k, v in sigs[key].get("outputs", {}).items()}
        if not sig_in or not sig_out or set(sig_in.values()) != set(by_index_in) \
                or set(sig_out.values()) != set(by_index_out):
            sig_in = {d["name"]: int(d["index"]) for d in it.get_input_details()}
            sig_out = {d["name"]: int(d["index"]) for d in it.get_output_details()}
        # public name → signature name (metadata name map), identity otherwise
        names = {}
        if self.meta is not None:
            names = dict((self.meta.get("tflite") or {}).get("names") or {})
        rev = {v: k for k, v in names.items()}
        # keep the model's own tensor order (interpreter input/output order)
        order_in = [int(d["index"]) for d in it.get_input_details()]
        order_out = [int(d["index"]) for d in it.get_output_details()]
        idx2sig_in = {v: k for k, v in sig_in.items()}
        idx2sig_out = {v: k for k, v in sig_out.items()}
        self._in: "List[_Tensor]" = [_Tensor(rev.get(idx2sig_in[i], idx2sig_in[i]), by_index_in[i])
                                   for i in order_in]
        self._out: "List[_Tensor]" = [_Tensor(rev.get(idx2sig_out[i], idx2sig_out[i]), by_index_out[i])
                                    for i in order_out]
        self._in_by_name = {t.name: t for t in self._in}
        self._out_by_name = {t.name: t for t in self._out}
        self.inputs = [t.spec() for t in self._in]
        self.outputs = [t.spec() for t in self._out]
        if self.meta is not None:
            self._check_source_io()

    def _check_source_io(self) -> None:
        """The metadata's record of the model's own tensor types (``source_io.tensors``, written
        by the TFLite import) against the real tensors: a model swapped under its metadata, or a
        metadata that lies about the quantization, is refused."""
        io = self.meta.get("source_io")
        tensors = io.get("tensors") if isinstance(io, dict) else None
        if not tensors:
            return
        by_name = dict(self._in_by_name, **self._out_by_name)
        base = os.path.basename(self.path)
        for name, rec in tensors.items():
            t = by_name.get(name)
            field = "source_io.tensors[%s]" % name
            if t is None:
                raise ModelError("%s: metadata %s names no tensor of the model" % (base, field))
            if rec.get("dtype") != t.dtype.name:
                raise ModelError("%s: metadata %s.dtype = %r but the tensor is %s"
                                 % (base, field, rec.get("dtype"), t.dtype.name))
            if t.quantized != ("scale" in rec) or (t.quantized and (
                    abs(float(rec["scale"]) - t.scale) > 1e-6 * t.scale or int(rec["zero_point"]) != t.zero_point)):
                raise ModelError("%s: metadata %s.scale/zero_point = %s/%s but the tensor has %s/%s"
                                 % (base, field, rec.get("scale"), rec.get("zero_point"),
                                    t.scale if t.quantized else None, t.zero_point if t.quantized else None))

    @property
    def quantized_io(self) -> Dict[str, str]:
        """name → the model's own IO dtype for tensors that the backend (de)quantizes."""
        return {t.name: t.dtype.name for t in self._in + self._out if t.quantized}

    def _set_input(self, t: "_Tensor", x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.ndim != len(t.shape):
            raise InputError("input %r must have %d dimensions, got shape %s"
                             % (t.name, len(t.shape), tuple(x.shape)))
        if list(x.shape) != t.shape:
            ok = all(s < 0 or s == d for s, d in zip(t.shape_signature, x.shape))
            if not ok:
                raise InputError("input %r has shape %s; this TFLite model takes %s"
                                 % (t.name, tuple(x.shape), tuple(t.shape_signature)))
            try:
                self.interpreter.resize_tensor_input(t.index, list(x.shape), strict=True)
                self.interpreter.allocate_tensors()
            except Exception as e:
                raise InputError("cannot resize input %r to %s: %s" % (t.name, tuple(x.shape), first_line(e)))
            t.shape = list(x.shape)
        if x.dtype.kind == "f" and not np.isfinite(np.sum(x, dtype=np.float64)):
            raise InputError("input %r contains NaN or infinite values" % t.name)
        if t.quantized:
            x = t.quantize(x)
        elif t.dtype.kind == "f":
            x = np.ascontiguousarray(x, dtype=t.dtype)
        elif x.dtype != t.dtype:   # an unquantized integer input (MoveNet's uint8 pixels)
            info = np.iinfo(t.dtype)
            x = np.clip(np.rint(x), info.min, info.max).astype(t.dtype)
        self.interpreter.set_tensor(t.index, x)

    def run(self, feeds: Dict[str, np.ndarray],
            output_names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        # a batch bigger than a fixed batch of 1 (top-down crops): one item at a time
        if len(self._in) == 1 and len(feeds) == 1:
            t = self._in_by_name.get(next(iter(feeds)))
            x = np.asarray(next(iter(feeds.values())))
            if t is not None and x.ndim == len(t.shape) and x.shape[0] > 1 \
                    and t.shape_signature[0] == 1 and list(x.shape[1:]) == t.shape[1:]:
                parts = [self.run({t.name: x[i:i + 1]}, output_names) for i in range(x.shape[0])]
                return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
        for name, x in feeds.items():
            t = self._in_by_name.get(name)
            if t is None:
                raise InputError("unknown input %r (model inputs: %s)"
                                 % (name, ", ".join(repr(n.name) for n in self._in)))
            self._set_input(t, x)
        missing = [t.name for t in self._in if t.name not in feeds]
        if missing:
            raise InputError("missing model input(s): %s" % ", ".join(missing))
        names = list(output_names) if output_names else [t.name for t in self._out]
        for n in names:
            if n not in self._out_by_name:
                raise InputError("unknown output %r (model outputs: %s)"
                                 % (n, ", ".join(repr(t.name) for t in self._out)))
        try:
            self.interpreter.invoke()
        except Exception as e:
            raise ModelError("inference failed: %s" % first_line(e))
        res = {}
        for n in names:
            t = self._out_by_name[n]
            y = self.interpreter.get_tensor(t.index)
            if t.quantized:
                y = t.dequantize(y)
            elif y.dtype != np.float32 and y.dtype.kind == "f":
                y = y.astype(np.float32)
            res[n] = y
        return res

    def describe(self) -> str:
        return "%s (%s, %s threads)" % (self.runtime, os.path.basename(self.path),
                                        self.threads or "default")
