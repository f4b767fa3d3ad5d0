"""FAKE TensorRT and FAKE cuda-python runtime, for compatibility tests only.

THIS IS NOT TENSORRT. It mirrors the Python API surface of each TensorRT release a Jetson runs,
plus the parts of cuda-python's runtime module the backend uses, so that edgepose's
version-dispatch, engine cache and buffer plumbing can be exercised without a GPU.

Which names exist in which release was checked against the real bindings' source, the pybind11
definitions in NVIDIA/TensorRT ``python/src/infer/pyCore.cpp`` and ``python/src/parsers/pyOnnx.cpp``
at branches release/8.2, release/8.4, release/8.5 and tags v8.6.1, v10.0.0, v10.3.0 (github.com/
NVIDIA/TensorRT), and against the TensorRT 10 API migration guide ("Removed Python APIs",
docs.nvidia.com/deeplearning/tensorrt/latest/api/migration-guide.html):

- 8.2 (JetPack 4.6, the Nano's last): bindings only: ``ICudaEngine.num_bindings``,
  ``get_binding_name/index/shape/dtype``, ``binding_is_input``; ``IExecutionContext.
  set_binding_shape/get_binding_shape``, ``execute_v2``, ``execute_async_v2``;
  ``Builder.build_engine`` and ``build_serialized_network``; ``IBuilderConfig.max_workspace_size``;
  no ``MemoryPoolType``/``set_memory_pool_limit``, no named-tensor method, no ``TensorIOMode``;
- 8.4 (JetPack 5.0.2): + ``MemoryPoolType`` and ``IBuilderConfig.set_memory_pool_limit``
  (``max_workspace_size`` deprecated, still there);
- 8.5 (JetPack 5.1) and 8.6 (JetPack 6.0): + named tensors: ``ICudaEngine.num_io_tensors``,
  ``get_tensor_name/mode/shape/dtype``, ``TensorIOMode``; ``IExecutionContext.set_input_shape``,
  ``get_tensor_shape``, ``set_tensor_address``, ``execute_async_v3``; bindings deprecated, still there;
- 10.x (JetPack 6.1/6.2: 10.3): the bindings API, ``execute_async_v2``, ``Builder.build_engine`` and
  ``max_workspace_size`` removed; ``execute_v2``, ``set_calibration_profile``,
  ``all_binding_shapes_specified`` and the (deprecated) ``EXPLICIT_BATCH`` flag remain.

All releases: ``OnnxParser.parse``/``parse_from_file``/``num_errors``/``get_error``,
``Builder.platform_has_fast_int8``/``platform_has_fast_fp16``/``num_DLA_cores``,
``IBuilderConfig.DLA_core``/``default_device_type``/``int8_calibrator``/``set_calibration_profile``,
``Runtime.DLA_core``/``deserialize_cuda_engine``, ``IInt8EntropyCalibrator2``, ``nptype``. "Engines" are a fake container that
runs the ONNX model in onnxruntime on the CPU; "device memory" is host memory. Nothing measured
with it says anything about TensorRT accuracy or speed.

Behaviour mirrored from TensorRT where edgepose depends on it:
- ``Runtime.deserialize_cuda_engine`` returns None (after logging an error) for a plan built by
  another TensorRT version or for bytes that are not a plan;
- implicit INT8: the calibrator's cache is used only if its header names this TensorRT version
  and the calibrator's algorithm; otherwise TensorRT would calibrate, calls ``get_batch``, gets
  None and the build fails (returns None);
- a network holding Q/DQ nodes needs the INT8 flag; a dynamic input needs an optimisation profile;
- 8.x ONNX parsing needs an explicit-batch network.
"""
import ctypes
import enum
import io
import json
import struct
import sys
import types
from typing import Dict, List, Optional

import numpy as np

PLAN_MAGIC = b"FAKE-TRT-PLAN\0"

_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_}
_ONNX_TO_DT = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 9: "BOOL"}


# The TensorRT of each JetPack, the releases this fake models
JETPACK_TRT = (
    "8.2.1",     # JetPack 4.6 (Jetson Nano's last): bindings API, max_workspace_size
    "8.4.1",     # JetPack 5.0.2: bindings API, memory pools
    "8.5.2",     # JetPack 5.1: + named tensors (execute_async_v3)
    "8.6.2",     # JetPack 6.0
    "10.3.0",    # JetPack 6.1 / 6.2: named tensors only
)


def _code(version: str) -> int:
    major, minor, patch = [int(x) for x in version.split(".")[:3]]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


# ----------------------------------------------------------------------------------------------
# fake cuda-python runtime (cuda.bindings.runtime)
# ----------------------------------------------------------------------------------------------
class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidValue = 1


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class _Stream:
    def __init__(self, h):
        self.h = h

    def __int__(self):
        return self.h


class _Props:
    def __init__(self, name: bytes, major: int, minor: int):
        self.name, self.major, self.minor = name, major, minor


def make_fake_cudart(gpu_name: str = "FAKE GPU (not a device)", cc=(8, 7)) -> types.ModuleType:
    m = types.ModuleType("cuda.bindings.runtime")
    m.__fake__ = True
    m.cudaError_t = cudaError_t
    m.cudaMemcpyKind = cudaMemcpyKind
    m.allocs: Dict[int, ctypes.Array] = {}
    m.copies = {"htod": 0, "dtoh": 0}
    m.synced = [0]

    def cudaSetDevice(dev):
        return (cudaError_t.cudaSuccess,)

    def cudaStreamCreate():
        return (cudaError_t.cudaSuccess, _Stream(0xC0FFEE))

    def cudaStreamDestroy(s):
        return (cudaError_t.cudaSuccess,)

    def cudaStreamSynchronize(s):
        m.synced[0] += 1
        return (cudaError_t.cudaSuccess,)

    def cudaMalloc(n):
        buf = ctypes.create_string_buffer(int(n))
        addr = ctypes.addressof(buf)
        m.allocs[addr] = buf
        return (cudaError_t.cudaSuccess, addr)

    def cudaFree(p):
        if int(p) not in m.allocs:
            return (cudaError_t.cudaErrorInvalidValue,)
        del m.allocs[int(p)]
        return (cudaError_t.cudaSuccess,)

    def _is_dev(p, n):
        p = int(p)
        for a, b in m.allocs.items():
            if a <= p and p + n <= a + ctypes.sizeof(b):
                return True
        return False

    def cudaMemcpyAsync(dst, src, n, kind, stream):
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            if not _is_dev(dst, n):
                return (cudaError_t.cudaErrorInvalidValue,)
            m.copies["htod"] += 1
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            if not _is_dev(src, n):
                return (cudaError_t.cudaErrorInvalidValue,)
            m.copies["dtoh"] += 1
        ctypes.memmove(int(dst), int(src), int(n))
        return (cudaError_t.cudaSuccess,)

    def cudaGetDeviceProperties(dev):
        return (cudaError_t.cudaSuccess, _Props(gpu_name.encode() + b"\0\0", cc[0], cc[1]))

    def cudaGetErrorString(err):
        return (cudaError_t.cudaSuccess, ("fake " + cudaError_t(err).name).encode())

    for f in (cudaSetDevice, cudaStreamCreate, cudaStreamDestroy, cudaStreamSynchronize, cudaMalloc,
              cudaFree, cudaMemcpyAsync, cudaGetDeviceProperties, cudaGetErrorString):
        setattr(m, f.__name__, f)
    m.is_device_ptr = _is_dev
    return m


# ----------------------------------------------------------------------------------------------
# fake tensorrt
# ----------------------------------------------------------------------------------------------
def make_fake_tensorrt(version: str = "10.3.0", fast_int8: bool = True, dla_cores: int = 0,
                       cudart: Optional[types.ModuleType] = None) -> types.ModuleType:
    """A module object named ``tensorrt`` with the API of TensorRT ``version`` (8.2, 8.6 or 10.x)."""
    major, minor = [int(x) for x in version.split(".")[:2]]
    if not ((8, 2) <= (major, minor) <= (8, 6) or major == 10):
        raise ValueError("the fake models TensorRT 8.2-8.6 and 10.x, not %s" % version)
    has_pools = (major, minor) >= (8, 4)       # MemoryPoolType, set_memory_pool_limit
    has_named = (major, minor) >= (8, 5)       # the name-based tensor API, execute_async_v3
    has_bindings = major < 10                  # the bindings API, execute_async_v2, build_engine
    code = _code(version)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version + ".0"
    trt.__fake__ = True
    trt.log: List[str] = []
    trt.built: List[dict] = []

    class DataType(enum.IntEnum):
        FLOAT = 0
        HALF = 1
        INT8 = 2
        INT32 = 3
        BOOL = 4

    trt.DataType = DataType
    trt.float32, trt.float16, trt.int8, trt.int32, trt.bool = (DataType.FLOAT, DataType.HALF, DataType.INT8,
                                                             DataType.INT32, DataType.BOOL)
    trt.nptype = lambda dt: _NP[DataType(dt).name]

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

        def __init__(self, severity=2):
            self.severity = severity

    trt.Logger = Logger

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH = 0            # deprecated (and ignored) in 10, still present
        if major >= 10:
            STRONGLY_TYPED = 5

    trt.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag

    class BuilderFlag(enum.IntEnum):
        FP16 = 0
        INT8 = 1
        DEBUG = 2
        GPU_FALLBACK = 3
        STRICT_TYPES = 4

    trt.BuilderFlag = BuilderFlag

    class DeviceType(enum.IntEnum):
        GPU = 0
        DLA = 1

    trt.DeviceType = DeviceType
    if has_pools:
        class MemoryPoolType(enum.IntEnum):
            WORKSPACE = 0
            DLA_MANAGED_SRAM = 1
        trt.MemoryPoolType = MemoryPoolType
    if has_named:
        class TensorIOMode(enum.IntEnum):
            NONE = 0
            INPUT = 1
            OUTPUT = 2
        trt.TensorIOMode = TensorIOMode

    class ITensor:
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class INetworkDefinition:
        def __init__(self, flags):
            self.flags = flags
            self.explicit_batch = major >= 10 or bool(flags & (1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH)))
            self.inputs: List[ITensor] = []
            self.outputs: List[ITensor] = []
            self.onnx = b""
            self.has_qdq = False

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

        @property
        def num_outputs(self):
            return len(self.outputs)

        def get_output(self, i):
            return self.outputs[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.errors: List[str] = []

        def parse(self, model: bytes, path=None):
            if not self.network.explicit_batch:
                self.errors.append("Network must have explicit batch dimension (fake)")
                return False
            try:
                import onnx
            except ImportError:     # a runtime-only install (the device's Python): no onnx
                return self._parse_with_onnxruntime(bytes(model))
            try:
                m = onnx.load_from_string(bytes(model))
            except Exception as e:
                self.errors.append("ModelImporter: failed to parse ONNX model: %s (fake)" % type(e).__name__)
                return False
            inits = {i.name for i in m.graph.initializer}
            for v in m.graph.input:
                if v.name in inits:
                    continue
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
                self.network.inputs.append(ITensor(v.name, dims, DataType[_ONNX_TO_DT.get(v.type.tensor_type.elem_type, "FLOAT")]))
            for v in m.graph.output:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
                self.network.outputs.append(ITensor(v.name, dims, DataType[_ONNX_TO_DT.get(v.type.tensor_type.elem_type, "FLOAT")]))
            self.network.has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)
            self.network.onnx = bytes(model)
            return True

        def _parse_with_onnxruntime(self, model):
            """The same inputs and outputs as the onnx path, read through onnxruntime; Q/DQ nodes are
            found by their op_type strings in the serialized graph (a fake may be crude here)."""
            import onnxruntime as ort
            try:
                sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            except Exception as e:
                self.errors.append("ModelImporter: failed to parse ONNX model: %s (fake)" % type(e).__name__)
                return False
            types = {"tensor(float)": "FLOAT", "tensor(float16)": "HALF", "tensor(int8)": "INT8",
                     "tensor(int32)": "INT32", "tensor(bool)": "BOOL"}
            for src, dst in ((sess.get_inputs(), self.network.inputs), (sess.get_outputs(), self.network.outputs)):
                for v in src:
                    dims = tuple(d if isinstance(d, int) else -1 for d in v.shape)
                    dst.append(ITensor(v.name, dims, DataType[types.get(v.type, "FLOAT")]))
            self.network.has_qdq = b"QuantizeLinear" in model or b"DequantizeLinear" in model
            self.network.onnx = model
            return True

        def parse_from_file(self, path):
            with open(path, "rb") as f:
                return self.parse(f.read())

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    trt.OnnxParser = OnnxParser

    class IOptimizationProfile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):
            for a, b, c in zip(min, opt, max):
                if not (a <= b <= c):
                    raise ValueError("min <= opt <= max violated for %s (fake)" % name)
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    _CONFIG_ATTRS = {"default_device_type", "DLA_core", "int8_calibrator", "flags"}
    if not major >= 10:
        _CONFIG_ATTRS.add("max_workspace_size")

    class IBuilderConfig:
        def __init__(self):
            object.__setattr__(self, "_flags", set())
            object.__setattr__(self, "profiles", [])
            object.__setattr__(self, "calib_profile", None)
            object.__setattr__(self, "pool", {})
            object.__setattr__(self, "default_device_type", DeviceType.GPU)
            object.__setattr__(self, "DLA_core", -1)
            object.__setattr__(self, "int8_calibrator", None)
            if major < 10:
                object.__setattr__(self, "max_workspace_size", 1 << 20)

        def __setattr__(self, k, v):   # pybind objects reject unknown attributes
            if k not in _CONFIG_ATTRS:
                raise AttributeError("'tensorrt.IBuilderConfig' object has no attribute '%s' (fake %s)" % (k, version))
            object.__setattr__(self, k, v)

        def set_flag(self, f):
            self._flags.add(BuilderFlag(f))

        def get_flag(self, f):
            return BuilderFlag(f) in self._flags

        def add_optimization_profile(self, p):
            self.profiles.append(p)
            return len(self.profiles) - 1

        def set_calibration_profile(self, p):     # every release (deprecated in 10.1, still there)
            object.__setattr__(self, "calib_profile", p)

        if has_pools:
            def set_memory_pool_limit(self, pool, size):
                self.pool[MemoryPoolType(pool)] = int(size)

    class IHostMemory(bytes):
        @property
        def nbytes(self):
            return len(self)

    class IInt8EntropyCalibrator2:
        algorithm = "EntropyCalibration2"

        def __init__(self):
            pass

    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    class Builder:
        def __init__(self, logger):
            self.logger = logger
            self.platform_has_fast_int8 = fast_int8
            self.platform_has_fast_fp16 = True
            self.num_DLA_cores = dla_cores

        def create_network(self, flags=0):
            return INetworkDefinition(flags)

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def _fail(self, msg):
            trt.log.append("ERROR: " + msg)
            return None

        def build_serialized_network(self, network, config):
            flags = config._flags
            if network.has_qdq and BuilderFlag.INT8 not in flags:
                return self._fail("Q/DQ layers need the INT8 builder flag (fake)")
            prof = config.profiles[0] if config.profiles else None
            for t in network.inputs:
                if any(d < 0 for d in t.shape) and (prof is None or t.name not in prof.shapes):
                    return self._fail("dynamic input %s has no optimization profile (fake)" % t.name)
            if config.default_device_type == DeviceType.DLA and not (0 <= config.DLA_core < self.num_DLA_cores):
                return self._fail("DLA core %d unavailable (fake)" % config.DLA_core)
            cache_used = None
            if BuilderFlag.INT8 in flags and not network.has_qdq:
                cal = config.int8_calibrator
                if cal is None:
                    return self._fail("INT8 without Q/DQ needs a calibrator (fake)")
                text = bytes(cal.read_calibration_cache() or b"").decode()
                header = text.split("\n", 1)[0]
                want = "TRT-%d-%s" % (code, getattr(cal, "algorithm", "?"))
                if header != want:
                    trt.log.append("WARNING: calibration cache header %r ignored, expected %r (fake)" % (header, want))
                    if cal.get_batch([t.name for t in network.inputs]) is None:
                        return self._fail("calibration failure: no batches (fake)")
                cache_used = text
            if has_pools:
                ws = config.pool.get(MemoryPoolType.WORKSPACE)
            else:
                ws = config.max_workspace_size
            desc = {
                "version": code,
                "inputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.inputs],
                "outputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.outputs],
                "profile": {k: [list(x) for x in v] for k, v in (prof.shapes.items() if prof else [])},
                "flags": sorted(f.name for f in flags),
                "dla_core": config.DLA_core if config.default_device_type == DeviceType.DLA else None,
                "workspace": ws,
                "has_qdq": network.has_qdq,
                "calib_cache": cache_used,
            }
            trt.built.append(desc)
            head = json.dumps(desc).encode()
            return IHostMemory(PLAN_MAGIC + struct.pack("<I", len(head)) + head + network.onnx)

        if major < 10:
            def build_engine(self, network, config):   # deprecated since 8.0; gone in 10
                raise AssertionError("edgepose must use build_serialized_network (fake)")

    trt.Builder = Builder

    class ICudaEngine:
        def __init__(self, desc, onnx_bytes):
            self.desc = desc
            self.onnx_bytes = onnx_bytes
            self.io = [(n, tuple(s), DataType(dt), True) for n, s, dt in desc["inputs"]] + \
                      [(n, tuple(s), DataType(dt), False) for n, s, dt in desc["outputs"]]
            self._sess = None

        def session(self):
            if self._sess is None:
                import onnxruntime as ort
                so = ort.SessionOptions()
                so.log_severity_level = 3
                self._sess = ort.InferenceSession(self.onnx_bytes, sess_options=so,
                                                  providers=["CPUExecutionProvider"])
            return self._sess

        def create_execution_context(self):
            return IExecutionContext(self)

        def _t(self, name):
            for t in self.io:
                if t[0] == name:
                    return t
            raise KeyError(name)

        if has_bindings:
            @property
            def num_bindings(self):
                return len(self.io)

            def get_binding_name(self, i):
                return self.io[i][0]

            def get_binding_index(self, name):
                for i, t in enumerate(self.io):
                    if t[0] == name:
                        return i
                return -1

            def binding_is_input(self, i):
                return self.io[i][3]

            def get_binding_shape(self, i):
                return self.io[i][1]

            def get_binding_dtype(self, i):
                return self.io[i][2]

        if has_named:
            @property
            def num_io_tensors(self):
                return len(self.io)

            def get_tensor_name(self, i):
                return self.io[i][0]

            def get_tensor_mode(self, name):
                return TensorIOMode.INPUT if self._t(name)[3] else TensorIOMode.OUTPUT

            def get_tensor_shape(self, name):
                return self._t(name)[1]

            def get_tensor_dtype(self, name):
                return self._t(name)[2]

    class IExecutionContext:
        def __init__(self, engine):
            self.engine = engine
            self.shapes: Dict[str, tuple] = {}
            self.addr: Dict[str, int] = {}
            self._out_shapes: Dict[tuple, Dict[str, tuple]] = {}

        def _set_shape(self, name, shape):
            shape = tuple(int(d) for d in shape)
            prof = self.engine.desc["profile"].get(name)
            if prof is not None:
                lo, _, hi = prof
                if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
                    trt.log.append("ERROR: shape %s of %s outside profile (fake)" % (shape, name))
                    return False
            self.shapes[name] = shape
            return True

        def _out_shape(self, name):
            ins = [t for t in self.engine.io if t[3]]
            if any(t[0] not in self.shapes for t in ins):
                return tuple(-1 for _ in self.engine._t(name)[1])
            key = tuple(self.shapes[t[0]] for t in ins)
            if key not in self._out_shapes:
                feeds = {t[0]: np.zeros(self.shapes[t[0]], _NP[t[2].name]) for t in ins}
                outs = self.engine.session().run(None, feeds)
                names = [o.name for o in self.engine.session().get_outputs()]
                self._out_shapes[key] = {n: o.shape for n, o in zip(names, outs)}
            return self._out_shapes[key][name]

        def _execute(self, addrs):
            rt = cudart
            feeds = {}
            for n, s, dt, is_in in self.engine.io:
                p = addrs.get(n)
                if not p:
                    trt.log.append("ERROR: tensor %s is bound to nullptr (fake)" % n)
                    return False
                if rt is not None and not rt.is_device_ptr(p, 1):
                    trt.log.append("ERROR: %s is not a device pointer (fake)" % n)
                    return False
                if is_in:
                    shape = self.shapes[n]
                    nb = int(np.prod(shape)) * np.dtype(_NP[dt.name]).itemsize
                    buf = (ctypes.c_char * nb).from_address(p)
                    feeds[n] = np.frombuffer(buf, _NP[dt.name]).reshape(shape).copy()
            outs = self.engine.session().run(None, feeds)
            names = [o.name for o in self.engine.session().get_outputs()]
            for n, o in zip(names, outs):
                o = np.ascontiguousarray(o)
                ctypes.memmove(addrs[n], o.ctypes.data, o.nbytes)
            return True

        @property
        def all_binding_shapes_specified(self):     # every release, 10.x too
            return all(t[0] in self.shapes for t in self.engine.io if t[3])

        def execute_v2(self, bindings):             # synchronous; every release, 10.x too
            trt.log.append("execute_v2")
            return self._execute({t[0]: bindings[i] for i, t in enumerate(self.engine.io)})

        if has_bindings:
            def set_binding_shape(self, i, shape):
                return self._set_shape(self.engine.io[i][0], shape)

            def get_binding_shape(self, i):
                n, s, dt, is_in = self.engine.io[i]
                return self.shapes.get(n, s) if is_in else self._out_shape(n)

            def execute_async_v2(self, bindings, stream_handle, input_consumed=None):
                trt.log.append("execute_async_v2")
                return self._execute({t[0]: bindings[i] for i, t in enumerate(self.engine.io)})

        if has_named:
            def set_input_shape(self, name, shape):
                return self._set_shape(name, shape)

            def get_tensor_shape(self, name):
                t = self.engine._t(name)
                return self.shapes.get(name, t[1]) if t[3] else self._out_shape(name)

            def set_tensor_address(self, name, ptr):
                self.addr[name] = int(ptr)
                return True

            def execute_async_v3(self, stream_handle):
                trt.log.append("execute_async_v3")
                return self._execute(self.addr)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger
            self.DLA_core = -1

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            if not data.startswith(PLAN_MAGIC):
                trt.log.append("ERROR: 1: [stdArchiveReader.cpp] Serialization assertion magicTagRead failed (fake)")
                return None
            try:
                n = struct.unpack("<I", data[len(PLAN_MAGIC):len(PLAN_MAGIC) + 4])[0]
                off = len(PLAN_MAGIC) + 4
                desc = json.loads(data[off:off + n].decode())
                onnx_bytes = data[off + n:]
            except Exception:
                trt.log.append("ERROR: corrupt plan (fake)")
                return None
            if desc["version"] != code:
                trt.log.append("ERROR: The engine plan file is not compatible with this version of TensorRT, "
                               "expecting library version %d got %d (fake)" % (code, desc["version"]))
                return None
            if desc["dla_core"] is not None and self.DLA_core != desc["dla_core"]:
                trt.log.append("ERROR: DLA engine deserialised with Runtime.DLA_core %d (fake)" % self.DLA_core)
                return None
            return ICudaEngine(desc, onnx_bytes)

    trt.Runtime = Runtime
    trt.ICudaEngine, trt.IExecutionContext, trt.IBuilderConfig = ICudaEngine, IExecutionContext, IBuilderConfig
    trt.INetworkDefinition, trt.IOptimizationProfile = INetworkDefinition, IOptimizationProfile
    return trt


def install(monkeypatch, version: str = "10.3.0", fast_int8: bool = True, dla_cores: int = 0,
            gpu_name: str = "FAKE GPU (not a device)", cc=(8, 7)):
    """Put a fake ``tensorrt`` and a fake ``cuda.bindings.runtime`` into sys.modules."""
    rt = make_fake_cudart(gpu_name, cc)
    trt = make_fake_tensorrt(version, fast_int8=fast_int8, dla_cores=dla_cores, cudart=rt)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = rt
    cuda.bindings = bindings
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    return trt, rt
