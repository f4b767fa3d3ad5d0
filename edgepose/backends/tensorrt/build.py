"""Engine building and the engine cache: ``build_engine`` / ``edgepose build-engine``."""
import contextlib
import json
import os
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ... import trt_cache as tc
from ...errors import ModelError
from .common import _import_tensorrt, _logger, _say, trt_version
from .cuda import _gpu_identity


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


def _build_plan_bytes(trt, plan: "_Plan", log: Callable[[str], None]) -> bytes:
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


def _write_engine(path: str, data: bytes, plan: "_Plan") -> None:
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


# ----------------------------------------------------------------------------------------------
# one build at a time per engine cache
# ----------------------------------------------------------------------------------------------
LOCK_FILE = ".build.lock"     # in the cache directory (BUNDLE/engines/.build.lock); never removed
_thread_locks: Dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def build_lock(cache: str, log: Callable[[str], None]) -> Iterator[bool]:
    """Hold the engine cache's exclusive lock (flock on ``cache/.build.lock``; the kernel drops
    it when its holder dies, even by SIGKILL); yields whether another build had to be waited
    for (said in one log line). Threads of one process queue on a lock of their own first (a
    flock emulated by fcntl locks, as on NFS, would not keep them apart)."""
    path = os.path.join(cache, LOCK_FILE)
    key = os.path.realpath(path)
    with _thread_locks_guard:
        tl = _thread_locks.setdefault(key, threading.Lock())
    waited = False
    if not tl.acquire(False):
        log("another build of an engine in %s runs in this process: waiting for it" % cache)
        waited = True
        tl.acquire()
    try:
        try:
            import fcntl
        except ImportError:     # not POSIX: threads are kept apart, processes are not
            yield waited
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise ModelError("cannot open the engine cache lock %s: %s" % (path, e.strerror or e))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()  # novermin (bytes.decode)
                except OSError:
                    holder = ""
                log("another edgepose build-engine%s is building in %s: waiting for it to finish"
                    % (" (pid %s)" % holder if holder.isdigit() else "", cache))
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, b"%d\n" % os.getpid(), 0)
            except OSError:
                pass    # the pid is only for the message above
            yield waited
        finally:
            os.close(fd)     # releases the flock
    finally:
        tl.release()


def _cached(path: str, key: Dict[str, Any]) -> bool:
    if not os.path.exists(path):
        return False
    side = tc.read_sidecar(path)
    return side is not None and side["key"] == key


def _file_state(path: str) -> Optional[Tuple[int, int, int]]:
    """What tells a rewritten engine from the one seen before (atomic writes: a new inode)."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return s.st_ino, s.st_mtime_ns, s.st_size


def build_engine(bundle: str, precision: Optional[str] = None, workspace_mb: Optional[int] = None,
                 dla_core: Optional[int] = None, force: bool = False, cache_dir: Optional[str] = None,
                 int8_mode: Optional[str] = None, device: int = 0,
                 log: Optional[Callable[[str], None]] = None) -> str:
    """Build (or find in the cache) the engine for a bundle on this machine; returns its path.

    ``precision``: fp32 / fp16 / int8 / int8-dla (default: the bundle's; int8 needs an int8 bundle). ``int8_mode``: explicit (Q/DQ
    ONNX), implicit (calibration cache) or auto. ``force``: rebuild even when cached.

    Concurrent calls on one cache (two ``edgepose build-engine`` on a bundle, or two threads)
    build one at a time (:func:`build_lock`); one that waited uses the engine the other wrote
    if it is the one it needs, also with ``force`` (that engine is new). The engine and its
    sidecar are written atomically, the sidecar last: an engine without one is rebuilt.
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
    if not force and _cached(path, plan.key):
        return path
    seen = (_file_state(path), _file_state(tc.sidecar_path(path)))
    with build_lock(cache, log) as waited:
        if _cached(path, plan.key) and (not force or (waited and seen != (
                _file_state(path), _file_state(tc.sidecar_path(path))))):
            log("engine %s was built by another build meanwhile: using it" % path)
            return path
        for p, d in _stale_engines(cache, plan.key):
            log("engine %s was built for %s: rebuilding from the bundle"
                % (os.path.basename(p), tc.describe_diff([x for x in d if x[0] in tc.ENV_FIELDS])))
        data = _build_plan_bytes(trt, plan, log)
        _write_engine(path, data, plan)
    log("engine written: %s" % path)
    return path
