"""The TensorRT backend: a bundle or an engine behind :class:`edgepose.backends.base.Backend`."""
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ... import trt_cache as tc
from ...errors import InputError, ModelError
from ..base import Backend, TensorSpec
from .build import build_engine
from .common import TRTEXEC_ENGINE, _import_tensorrt, _logger, _say, trt_version
from .cuda import Cuda


# ----------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------
def _np_dtype(trt, dt) -> np.dtype:
    try:
        return np.dtype(trt.nptype(dt))
    except Exception:
        names = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                 "BOOL": np.bool_, "UINT8": np.uint8, "INT64": np.int64}
        return np.dtype(names.get(str(dt).split(".")[-1].upper(), np.float32))


class _IO:
    def __init__(self, name: str, is_input: bool, shape: Tuple[int, ...], dtype: np.dtype, index: int):
        self.name, self.is_input, self.shape, self.dtype, self.index = name, is_input, shape, dtype, index


class TensorrtBackend(Backend):
    """A TensorRT engine. ``path``: a bundle directory (engine built or taken from the cache) or an
    ``.engine``/``.plan`` file (metadata from its sidecar JSON or the bundle it lives in).

    ``engine``: with a bundle, a prebuilt engine to use (e.g. trtexec's ``--saveEngine``);
    ``precision``/``dla_core``/``workspace_mb``/``int8_mode``: build overrides;
    ``api``: ``"tensors"`` or ``"bindings"`` to force an execution API (default: what the engine has).
    """

    name = "tensorrt"

    def __init__(self, path: str, engine: Optional[str] = None, precision: Optional[str] = None,
                 dla_core: Optional[int] = None, workspace_mb: Optional[int] = None,
                 int8_mode: Optional[str] = None, force_build: bool = False,
                 cache_dir: Optional[str] = None, device: int = 0, api: Optional[str] = None,
                 threads: Optional[int] = None, log: Optional[Callable[[str], None]] = None, **unused):
        super().__init__()
        self.log = log or _say
        self.path = path
        self.trt = _import_tensorrt()
        self.version = trt_version(self.trt)
        self._bufs: Dict[str, Tuple[int, int]] = {}
        self.cuda: Optional[Cuda] = None
        bundle_dir: Optional[str] = None
        build_kw = dict(precision=precision, workspace_mb=workspace_mb, dla_core=dla_core,
                        cache_dir=cache_dir, int8_mode=int8_mode, device=device, log=self.log)
        if os.path.isdir(path):
            bundle_dir = path
            b = tc.Bundle(path)
            self.meta = b.meta()
            trtexec_engine = os.path.join(path, TRTEXEC_ENGINE)
            overrides = any(v is not None for v in (precision, dla_core, workspace_mb, int8_mode, cache_dir))
            if engine is None and not force_build and not overrides and os.path.exists(trtexec_engine):
                # the README's trtexec line saves BUNDLE/model.engine: use it when TensorRT can
                engine = trtexec_engine
            if engine is None:
                engine_path = build_engine(path, force=force_build, **build_kw)
                from_cache = True
            else:
                engine_path, from_cache = engine, engine == trtexec_engine
        else:
            if not os.path.exists(path):
                raise ModelError("TensorRT engine not found: %s" % path)
            engine_path, from_cache = path, False
            bundle_dir = tc.find_bundle_for_engine(path)
        self.cuda = Cuda(device)
        gpu = self.cuda.gpu_identity()
        engine_path, side = self._check_engine(engine_path, bundle_dir, gpu, build_kw)
        if self.meta is None:
            if bundle_dir is not None:
                self.meta = tc.Bundle(bundle_dir).meta()
            elif side and side.get("meta"):
                from ...metadata import ModelMeta
                self.meta = ModelMeta(side["meta"])
        self.engine_path = engine_path
        dla = (side or {}).get("key", {}).get("dla_core") if side else None
        if dla is None and dla_core is not None:
            dla = dla_core
        if dla is None and side is None and bundle_dir is not None:   # e.g. trtexec --useDLACore
            dla = (tc.Bundle(bundle_dir).dla or {}).get("core")
        self.engine = self._deserialize(engine_path, dla)
        if self.engine is None and from_cache and bundle_dir is not None:
            self.log("engine %s could not be deserialised by TensorRT %s (corrupt, or built by another "
                     "TensorRT version or GPU): rebuilding from the bundle" % (os.path.basename(engine_path), self.version))
            trtexec = os.path.basename(engine_path) == TRTEXEC_ENGINE and tc.read_sidecar(engine_path) is None
            engine_path = build_engine(bundle_dir, force=not trtexec, **build_kw)
            side = tc.read_sidecar(engine_path)
            dla = (side or {}).get("key", {}).get("dla_core")
            self.engine_path = engine_path
            self.engine = self._deserialize(engine_path, dla)
        if self.engine is None:
            raise ModelError("%s could not be deserialised by TensorRT %s: the file is corrupt or was built by "
                             "another TensorRT version or GPU; rebuild it with 'edgepose build-engine BUNDLE --force'"
                             % (os.path.basename(engine_path), self.version))
        self.key = (side or {}).get("key")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ModelError("TensorRT could not create an execution context for %s (out of GPU memory?)"
                             % os.path.basename(engine_path))
        if api is None:
            api = "tensors" if hasattr(self.engine, "num_io_tensors") and \
                hasattr(self.context, "execute_async_v3") else "bindings"
        if api not in ("tensors", "bindings"):
            raise ModelError("api must be 'tensors' or 'bindings', got %r" % (api,))
        self.api = api
        self._io = self._list_io()
        self.inputs = [TensorSpec(i.name, [d if d >= 0 else None for d in i.shape], i.dtype)
                       for i in self._io if i.is_input]
        self.outputs = [TensorSpec(i.name, [d if d >= 0 else None for d in i.shape], i.dtype)
                        for i in self._io if not i.is_input]
        self._check_io_matches_meta()

    # --- loading -------------------------------------------------------------------------------
    def _check_engine(self, engine_path: str, bundle_dir: Optional[str], gpu: Tuple[str, str],
                      build_kw: dict) -> Tuple[str, Optional[dict]]:
        """Sidecar checks: another model → error; another TensorRT/GPU → rebuild (or error)."""
        if os.path.getsize(engine_path) == 0:
            raise ModelError("TensorRT engine %s is empty (an interrupted build?): rebuild it" % engine_path)
        side = tc.read_sidecar(engine_path)
        if bundle_dir is None and side and side.get("bundle") and tc.is_bundle(side["bundle"]):
            bundle_dir = side["bundle"]
        b = tc.Bundle(bundle_dir) if bundle_dir else None
        if side is None:
            return engine_path, None
        k = side["key"]
        if b is not None and k.get("model_sha256") != b.model_sha256:
            raise ModelError("%s was built from another model (sha256 %s…) than bundle %s holds (%s…): "
                             "rebuild it with 'edgepose build-engine %s --force'"
                             % (os.path.basename(engine_path), str(k.get("model_sha256"))[:12], b.path,
                                b.model_sha256[:12], b.path))
        here = {"trt_version": self.version, "gpu": gpu[0], "compute_capability": gpu[1]}
        diff = [(f, k.get(f), here[f]) for f in tc.ENV_FIELDS if k.get(f) != here[f]]
        if not diff:
            return engine_path, side
        if b is None:
            raise ModelError("%s was built for %s; rebuild it on this machine from its bundle with "
                             "'edgepose build-engine BUNDLE'" % (os.path.basename(engine_path), tc.describe_diff(diff)))
        self.log("engine %s was built for %s: rebuilding from the bundle %s"
                 % (os.path.basename(engine_path), tc.describe_diff(diff), b.path))
        kw = dict(build_kw)
        if kw.get("precision") is None:
            kw["precision"] = side.get("requested_precision")
        if kw.get("dla_core") is None:
            kw["dla_core"] = k.get("dla_core")
        p = build_engine(b.path, **kw)
        return p, tc.read_sidecar(p)

    def _deserialize(self, engine_path: str, dla_core: Optional[int]):
        trt = self.trt
        with open(engine_path, "rb") as f:
            data = f.read()
        runtime = trt.Runtime(_logger(trt))
        if dla_core is not None:
            runtime.DLA_core = int(dla_core)
        try:
            engine = runtime.deserialize_cuda_engine(data)
        except Exception:
            engine = None
        self._runtime = runtime
        return engine

    def _list_io(self) -> "List[_IO]":
        trt, e = self.trt, self.engine
        out = []
        if self.api == "tensors":
            for i in range(e.num_io_tensors):
                n = e.get_tensor_name(i)
                out.append(_IO(n, e.get_tensor_mode(n) == trt.TensorIOMode.INPUT,
                               tuple(int(d) for d in e.get_tensor_shape(n)),
                               _np_dtype(trt, e.get_tensor_dtype(n)), i))
        else:
            for i in range(e.num_bindings):
                out.append(_IO(e.get_binding_name(i), bool(e.binding_is_input(i)),
                               tuple(int(d) for d in e.get_binding_shape(i)),
                               _np_dtype(trt, e.get_binding_dtype(i)), i))
        return out

    def _check_io_matches_meta(self) -> None:
        if self.meta is None:
            return
        names = set(i.name for i in self._io)
        want = [self.meta.input.get("name")] + [o.get("name") for o in self.meta.outputs.values()]
        missing = [w for w in want if w and w not in names]
        if missing:
            raise ModelError("%s is an engine for another model: it has no tensor %s (its tensors: %s)"
                             % (os.path.basename(self.engine_path), ", ".join(repr(m) for m in missing),
                                ", ".join(sorted(names))))

    # --- running -------------------------------------------------------------------------------
    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._bufs.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr = self.cuda.malloc(nbytes)
            self._bufs[name] = (ptr, nbytes)
        return ptr

    def run(self, feeds: Dict[str, np.ndarray],
            output_names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        ctx = self.context
        ins = [i for i in self._io if i.is_input]
        outs = [i for i in self._io if not i.is_input]
        unknown = [k for k in feeds if k not in set(i.name for i in ins)]
        if unknown:
            raise InputError("unknown input(s) %s; the engine's inputs are %s"
                             % (", ".join(unknown), ", ".join(i.name for i in ins)))
        hold = []
        ptrs: Dict[str, int] = {}
        for io in ins:
            if io.name not in feeds:
                raise InputError("missing input %r" % io.name)
            a = np.ascontiguousarray(np.asarray(feeds[io.name]), dtype=io.dtype)
            if a.ndim != len(io.shape) or any(d >= 0 and d != s for d, s in zip(io.shape, a.shape)):
                raise InputError("input %r has shape %s; the engine expects %s"
                                 % (io.name, a.shape, tuple(d if d >= 0 else "?" for d in io.shape)))
            ok = ctx.set_input_shape(io.name, a.shape) if self.api == "tensors" \
                else ctx.set_binding_shape(io.index, a.shape)
            if ok is False:
                raise InputError("input %r shape %s is outside the engine's optimisation profile%s: "
                                 "rebuild with other --min/--max shapes"
                                 % (io.name, a.shape, self._profile_text(io.name)))
            ptr = self._buffer(io.name, a.nbytes)
            self.cuda.htod(ptr, a)
            hold.append(a)
            ptrs[io.name] = ptr
        results: Dict[str, np.ndarray] = {}
        for io in outs:
            shape = tuple(int(d) for d in (ctx.get_tensor_shape(io.name) if self.api == "tensors"
                                           else ctx.get_binding_shape(io.index)))
            if any(d < 0 for d in shape):
                raise InputError("output %r has an unresolved shape %s for these inputs" % (io.name, shape))
            arr = np.empty(shape, io.dtype)
            results[io.name] = arr
            ptrs[io.name] = self._buffer(io.name, arr.nbytes)
        if self.api == "tensors":
            for n, p in ptrs.items():
                ctx.set_tensor_address(n, p)
            ok = ctx.execute_async_v3(stream_handle=self.cuda.stream_handle)
        else:
            bindings = [0] * len(self._io)
            for io in self._io:
                bindings[io.index] = ptrs[io.name]
            ok = ctx.execute_async_v2(bindings=bindings, stream_handle=self.cuda.stream_handle)
        if ok is False:
            raise ModelError("TensorRT inference failed (see TensorRT's messages above)")
        for n, arr in results.items():
            self.cuda.dtoh(arr, ptrs[n])
        self.cuda.sync()
        del hold
        names = list(output_names) if output_names else [o.name for o in outs]
        missing = [n for n in names if n not in results]
        if missing:
            raise InputError("unknown output(s) %s" % ", ".join(missing))
        return {n: results[n].astype(np.float32) if results[n].dtype == np.float16 else results[n]
                for n in names}

    def _profile_text(self, name: str) -> str:
        shapes = (self.key or {}).get("input_shapes", {}).get(name)
        if not shapes:
            return ""
        return " (min %s, max %s)" % (tuple(shapes["min"]), tuple(shapes["max"]))

    def describe(self) -> str:
        k = self.key or {}
        return "TensorRT %s (%s API, %s%s) %s" % (
            self.version, self.api, k.get("precision", "?"),
            ", DLA core %s" % k["dla_core"] if k.get("dla_core") is not None else "", self.engine_path)

    def close(self) -> None:
        if self.cuda is not None:
            for ptr, _ in self._bufs.values():
                try:
                    self.cuda.free(ptr)
                except ModelError:
                    pass
            self._bufs = {}
            self.cuda.close()
            self.cuda = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
