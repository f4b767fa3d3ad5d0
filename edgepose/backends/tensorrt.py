"""TensorRT backend, engine building and the engine cache (runs on the Jetson).

One code path for TensorRT 8.x and 10.x:

- engines: ``build_serialized_network`` (8.0+ and 10); workspace through
  ``set_memory_pool_limit`` (8.4+) or ``max_workspace_size`` (8.0–8.3); explicit-batch networks
  (the flag is needed before 10 and deprecated in 10);
- execution: named tensors (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``,
  ``execute_async_v3``: 8.5+ and 10) where the engine has them, else bindings
  (``get_binding_index``, ``set_binding_shape``, ``execute_async_v2``: 8.0–8.4);
- device memory: cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` in older
  releases), pycuda as a fall-back.

INT8: explicit quantization (the bundle's symmetric Q/DQ ONNX) on TensorRT >= 8.5 GPUs; implicit
INT8 (FP32 ONNX + the bundle's calibration cache, header rewritten for this TensorRT) on 8.0–8.4
and on the DLA. A GPU without fast INT8 (Jetson Nano, Maxwell) gets an fp16 engine, said aloud.

Engines are cached beside the bundle (``BUNDLE/engines``; ``EDGEPOSE_TRT_CACHE`` or
``~/.cache/edgepose/engines`` when the bundle is read-only) under a key of everything the plan
depends on (:func:`edgepose.trt_cache.engine_key`); an engine whose key names another TensorRT
version or GPU is never deserialised: the bundle is rebuilt, with a message.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import trt_cache as tc
from ..errors import InputError, ModelError
from .base import Backend, TensorSpec

TRTEXEC_ENGINE = "model.engine"   # where the bundle README's trtexec lines save the engine
MISSING_TRT = (
    "TensorRT's Python bindings are not importable (import tensorrt failed): run this on the Jetson, "
    "where JetPack ships them (sudo apt install python3-libnvinfer; a virtualenv needs "
    "--system-site-packages), or build the engine there with 'edgepose build-engine BUNDLE' "
    "or the trtexec line in BUNDLE/README.md")
MISSING_CUDA = (
    "no CUDA Python bindings: install cuda-python matching JetPack's CUDA "
    "(e.g. pip install 'cuda-python==11.4.*' on JetPack 4.6, '11.4.*' on JetPack 5, '12.*' on "
    "JetPack 6) or pycuda")


def _say(msg: str) -> None:
    from ..log import logger
    logger.info(msg)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


# ----------------------------------------------------------------------------------------------
# imports (overridable in tests through sys.modules)
# ----------------------------------------------------------------------------------------------
def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise ModelError(MISSING_TRT)
    return trt


_LOGGERS: Dict[int, Any] = {}


def _logger(trt):
    # TensorRT wants one logger per process; keyed by module so that tests may swap modules
    lg = _LOGGERS.get(id(trt))
    if lg is None:
        lg = trt.Logger(trt.Logger.WARNING)
        _LOGGERS[id(trt)] = lg
    return lg


def trt_version(trt) -> str:
    return str(getattr(trt, "__version__", "0.0.0"))


class Cuda:
    """Device buffers and one stream through cuda-python, or pycuda when that is missing."""

    def __init__(self, device: int = 0):
        self.device = int(device)
        rt = None
        try:
            from cuda.bindings import runtime as rt  # cuda-python >= 12.6 (cuda-bindings)
        except ImportError:
            try:
                from cuda import cudart as rt  # older cuda-python
            except ImportError:
                rt = None
        if rt is not None:
            self.kind = "cuda-python"
            self.rt = rt
            self._check(rt.cudaSetDevice(self.device), "cudaSetDevice")
            self.stream = self._check(rt.cudaStreamCreate(), "cudaStreamCreate")
            self.stream_handle = int(self.stream)
            return
        try:
            import pycuda.driver as drv
            drv.init()
        except ImportError:
            raise ModelError(MISSING_CUDA)
        except Exception as e:
            raise ModelError("pycuda could not initialise CUDA: %s" % _first_line(e))
        self.kind = "pycuda"
        self.drv = drv
        self.ctx = drv.Device(self.device).retain_primary_context()
        self.ctx.push()
        self.stream = drv.Stream()
        self.stream_handle = int(self.stream.handle)
        self._pyc_allocs: Dict[int, Any] = {}

    # cuda-python returns (err, value...) tuples
    def _check(self, ret, what: str):
        if not isinstance(ret, tuple):
            ret = (ret,)
        err = ret[0]
        if int(err) != 0:
            try:
                msg = self.rt.cudaGetErrorString(err)[1]
                msg = msg.decode() if isinstance(msg, bytes) else str(msg)  # novermin (bytes.decode)
            except Exception:
                msg = str(err)
            raise ModelError("CUDA error in %s: %s" % (what, msg))
        if len(ret) == 1:
            return None
        return ret[1] if len(ret) == 2 else ret[1:]

    def gpu_identity(self) -> Tuple[str, str]:
        if self.kind == "cuda-python":
            prop = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
            name = prop.name
            if isinstance(name, (bytes, bytearray)):
                name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")  # novermin (bytes.decode)
            return str(name).strip(), "%d.%d" % (prop.major, prop.minor)
        dev = self.drv.Device(self.device)
        major, minor = dev.compute_capability()
        return str(dev.name()).strip(), "%d.%d" % (major, minor)

    def malloc(self, nbytes: int) -> int:
        nbytes = max(int(nbytes), 1)
        if self.kind == "cuda-python":
            return int(self._check(self.rt.cudaMalloc(nbytes), "cudaMalloc"))
        a = self.drv.mem_alloc(nbytes)
        self._pyc_allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        if self.kind == "cuda-python":
            self._check(self.rt.cudaFree(ptr), "cudaFree")
        else:
            a = self._pyc_allocs.pop(int(ptr), None)
            if a is not None:
                a.free()

    def htod(self, ptr: int, arr: np.ndarray) -> None:
        if self.kind == "cuda-python":
            self._check(self.rt.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes,
                                                self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                                self.stream), "cudaMemcpyAsync(host→device)")
        else:
            self.drv.memcpy_htod_async(ptr, arr, self.stream)

    def dtoh(self, arr: np.ndarray, ptr: int) -> None:
        if self.kind == "cuda-python":
            self._check(self.rt.cudaMemcpyAsync(arr.ctypes.data, ptr, arr.nbytes,
                                                self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                                self.stream), "cudaMemcpyAsync(device→host)")
        else:
            self.drv.memcpy_dtoh_async(arr, ptr, self.stream)

    def sync(self) -> None:
        if self.kind == "cuda-python":
            self._check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        else:
            self.stream.synchronize()

    def close(self) -> None:
        if self.kind == "cuda-python":
            try:
                self.rt.cudaStreamDestroy(self.stream)
            except Exception:
                pass
        else:
            try:
                self.ctx.pop()
            except Exception:
                pass


def _gpu_identity(device: int = 0) -> Tuple[str, str]:
    """(GPU name, compute capability) for the engine key."""
    try:
        c = Cuda(device)
    except ModelError:
        # no CUDA bindings: on a Jetson the board model still tells engines apart
        model = "unknown-gpu"
        for p in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
            try:
                with open(p, "rb") as f:
                    model = f.read().split(b"\0", 1)[0].decode(errors="replace").strip()  # novermin (bytes.decode)
                break
            except OSError:
                continue
        return model, "unknown"
    try:
        return c.gpu_identity()
    finally:
        c.close()


# ----------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------
def _version_tuple(trt) -> Tuple[int, int, int]:
    return tc.parse_version(trt_version(trt))


def _int8_mode(ver: Tuple[int, int, int], dla: bool, bundle: tc.Bundle, override: Optional[str]) -> str:
    has_qdq, has_cache = bundle.has(tc.QDQ_ONNX), bundle.has(tc.CALIB_CACHE)
    if override in ("explicit", "implicit"):
        need = tc.QDQ_ONNX if override == "explicit" else tc.CALIB_CACHE
        if not bundle.has(need):
            raise ModelError("bundle %s has no %s for %s INT8" % (bundle.path, need, override))
        return override
    if override not in (None, "auto"):
        raise ModelError("int8_mode must be 'explicit', 'implicit' or 'auto', got %r" % (override,))
    # DLA and TensorRT < 8.5: implicit INT8 from the calibration cache; otherwise Q/DQ
    if (dla or ver < (8, 5, 0)) and has_cache:
        return "implicit"
    if has_qdq:
        return "explicit"
    return "implicit"


def _cache_dir(bundle: tc.Bundle, cache_dir: Optional[str]) -> str:
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        return cache_dir
    d = os.path.join(bundle.path, tc.ENGINES_DIR)
    try:
        os.makedirs(d, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    base = os.environ.get("EDGEPOSE_TRT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                 "edgepose", "engines")
    d = os.path.join(base, bundle.model_sha256[:16])
    os.makedirs(d, exist_ok=True)
    return d


class _Plan:
    """What to build: the resolved settings and the engine key."""

    def __init__(self, bundle: tc.Bundle, trt, precision: Optional[str], dla_core: Optional[int],
                 workspace_mb: Optional[int], int8_mode: Optional[str], gpu: Tuple[str, str],
                 fast_int8: Optional[bool] = None):
        self.bundle = bundle
        self.version = trt_version(trt)
        ver = tc.parse_version(self.version)
        requested = precision or bundle.precision
        if requested not in tc.PRECISIONS + ("fp32",):
            raise ModelError("precision must be one of %s, got %r" % ("/".join(tc.PRECISIONS + ("fp32",)), requested))
        if requested.startswith("int8") and not (bundle.has(tc.QDQ_ONNX) or bundle.has(tc.CALIB_CACHE)):
            raise ModelError("bundle %s was exported without INT8 calibration (precision %s): re-export it with "
                             "--target jetson-int8 --calib SOURCE" % (bundle.path, bundle.precision))
        self.requested = requested
        if dla_core is None and requested == "int8-dla":
            dla_core = int((bundle.dla or {}).get("core", 0))
        self.dla_core = None if dla_core is None else int(dla_core)
        self.gpu_fallback = bool((bundle.dla or {}).get("gpu_fallback", True))
        self.precision = "int8" if requested.startswith("int8") else requested
        self.notes: List[str] = []
        if self.precision == "int8" and fast_int8 is False and self.dla_core is None:
            self.notes.append("this GPU (%s, compute %s) has no fast INT8 kernels: building fp16 instead"
                              % gpu)
            self.precision = "fp16"
        self.int8_mode = _int8_mode(ver, self.dla_core is not None, bundle, int8_mode) \
            if self.precision == "int8" else None
        self.onnx = bundle.file(tc.QDQ_ONNX if self.int8_mode == "explicit" else tc.MODEL_ONNX)
        files = bundle.build.get("files") or {}
        onnx_sha = files.get(os.path.basename(self.onnx)) or tc.sha256_file(self.onnx)
        self.workspace_mb = int(workspace_mb or bundle.workspace_mb)
        self.key = tc.engine_key(
            model_sha256=bundle.model_sha256, trt_version=self.version, gpu=gpu[0],
            compute_capability=gpu[1], precision=self.precision, dla_core=self.dla_core,
            input_shapes=bundle.input_shapes,
            calib_hash=bundle.calib_hash if self.precision == "int8" else None,
            int8_mode=self.int8_mode, onnx_sha256=onnx_sha)


def _make_calibrator(trt, cache_bytes: bytes):
    """An IInt8EntropyCalibrator2 that serves a prepared cache and has no batches of its own."""
    base = trt.IInt8EntropyCalibrator2

    def __init__(self):
        base.__init__(self)

    def get_batch_size(self):
        return 1

    def get_batch(self, names, *args):
        return None   # never called when the cache covers the network

    def read_calibration_cache(self, *args):
        return cache_bytes

    def write_calibration_cache(self, cache, *args):
        return None

    cls = type("EdgeposeCacheCalibrator", (base,), {
        "__init__": __init__, "get_batch_size": get_batch_size, "get_batch": get_batch,
        "read_calibration_cache": read_calibration_cache,
        "write_calibration_cache": write_calibration_cache})
    return cls()


def _build_plan_bytes(trt, plan: _Plan, log: Callable[[str], None]) -> bytes:
    ver = tc.parse_version(plan.version)
    logger = _logger(trt)
    builder = trt.Builder(logger)
    if ver[0] >= 10:
        network = builder.create_network(0)   # explicit batch is the only mode in 10
    else:
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if hasattr(parser, "parse_from_file"):
        ok = parser.parse_from_file(plan.onnx)
    else:
        with open(plan.onnx, "rb") as f:
            ok = parser.parse(f.read())
    if not ok:
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelError("TensorRT %s could not parse %s: %s" % (plan.version, os.path.basename(plan.onnx),
                                                                 (errs[0].splitlines() or ["?"])[0] if errs else "unknown error"))
    config = builder.create_builder_config()
    ws = plan.workspace_mb << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ws)
    else:
        config.max_workspace_size = ws
    # fp16 everywhere it helps; with INT8 it is the precision of the layers kept in float
    if plan.precision != "fp32" and getattr(builder, "platform_has_fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if plan.dla_core is not None:
        n = int(getattr(builder, "num_DLA_cores", 0))
        if plan.dla_core >= n:
            raise ModelError("DLA core %d requested but this device has %d DLA core(s) (the Nano has none): "
                             "use --target jetson-int8 or --dla-core within range" % (plan.dla_core, n))
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        if plan.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    profile = builder.create_optimization_profile()
    shapes = plan.bundle.input_shapes
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = tuple(t.shape)
        if t.name in shapes:
            s = shapes[t.name]
            profile.set_shape(t.name, tuple(s["min"]), tuple(s["opt"]), tuple(s["max"]))
        elif any(int(d) < 0 for d in dims):
            raise ModelError("bundle %s gives no min/opt/max shapes for dynamic input %r"
                             % (plan.bundle.path, t.name))
    config.add_optimization_profile(profile)
    if plan.int8_mode == "implicit":
        text = tc.recode_calib_header(plan.bundle.calib_text(), plan.version, tc.CALIB_ALGORITHM)
        config.int8_calibrator = _make_calibrator(trt, text.encode())
        if hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)
    log("building a TensorRT %s %s engine%s from %s (workspace %d MiB); this takes minutes on a Jetson"
        % (plan.version, plan.precision + (" (%s INT8)" % plan.int8_mode if plan.int8_mode else ""),
           " on DLA core %d" % plan.dla_core if plan.dla_core is not None else "",
           os.path.basename(plan.onnx), plan.workspace_mb))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError("TensorRT %s failed to build an engine from %s (see TensorRT's messages above; "
                         "try a larger --workspace-mb or --precision fp16)"
                         % (plan.version, os.path.basename(plan.onnx)))
    return memoryview(serialized).tobytes()


def _write_engine(path: str, data: bytes, plan: _Plan) -> None:
    tc.write_atomic(path, data)
    side = {
        "key": plan.key,
        "bundle": plan.bundle.path,
        "requested_precision": plan.requested,
        "workspace_mb": plan.workspace_mb,
        "onnx": os.path.basename(plan.onnx),
        "notes": plan.notes,
        "built_unix": int(time.time()),
        "meta": json.loads(plan.bundle.meta().to_json()),
    }
    tc.write_atomic(tc.sidecar_path(path), json.dumps(side, indent=1, sort_keys=True))


def _stale_engines(cache: str, key: Dict[str, Any]) -> List[Tuple[str, list]]:
    """Engines in ``cache`` for this model whose key differs (another TensorRT, GPU, ...)."""
    out = []
    try:
        names = sorted(os.listdir(cache))
    except OSError:
        return out
    for n in names:
        if not n.endswith(".engine"):
            continue
        p = os.path.join(cache, n)
        try:
            side = tc.read_sidecar(p)
        except ModelError:
            continue
        if not side:
            continue
        k = side["key"]
        if k.get("model_sha256") != key["model_sha256"] or k == key:
            continue
        d = tc.key_diff(k, key)
        if any(f in tc.ENV_FIELDS for f, _, _ in d):
            out.append((p, d))
    return out


def build_engine(bundle: str, precision: Optional[str] = None, workspace_mb: Optional[int] = None,
                 dla_core: Optional[int] = None, force: bool = False, cache_dir: Optional[str] = None,
                 int8_mode: Optional[str] = None, device: int = 0,
                 log: Optional[Callable[[str], None]] = None) -> str:
    """Build (or find in the cache) the engine for a bundle on this machine; returns its path.

    ``precision``: fp32 / fp16 / int8 / int8-dla (default: the bundle's; int8 needs an int8 bundle). ``int8_mode``: explicit (Q/DQ
    ONNX), implicit (calibration cache) or auto. ``force``: rebuild even when cached.
    """
    log = log or _say
    b = tc.Bundle(bundle)
    b.verify_files()
    trt = _import_tensorrt()
    gpu = _gpu_identity(device)
    fast_int8 = None
    try:
        fast_int8 = bool(trt.Builder(_logger(trt)).platform_has_fast_int8)
    except Exception:
        pass
    plan = _Plan(b, trt, precision, dla_core, workspace_mb, int8_mode, gpu, fast_int8)
    for n in plan.notes:
        log(n)
    cache = _cache_dir(b, cache_dir)
    path = os.path.join(cache, tc.engine_file_name(plan.key))
    if os.path.exists(path) and not force:
        side = tc.read_sidecar(path)
        if side is not None and side["key"] == plan.key:
            return path
    for p, d in _stale_engines(cache, plan.key):
        log("engine %s was built for %s: rebuilding from the bundle"
            % (os.path.basename(p), tc.describe_diff([x for x in d if x[0] in tc.ENV_FIELDS])))
    data = _build_plan_bytes(trt, plan, log)
    _write_engine(path, data, plan)
    log("engine written: %s" % path)
    return path


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
                from ..metadata import ModelMeta
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

    def _list_io(self) -> List[_IO]:
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
