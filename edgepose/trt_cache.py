"""TensorRT bundles, calibration caches and engine-cache keys: pure Python, no TensorRT needed.

A *bundle* is the directory ``edgepose export --target jetson-*`` writes and ``edgepose
build-engine`` / :class:`edgepose.backends.tensorrt.TensorrtBackend` read on the Jetson::

    BUNDLE/
      model.onnx              FP32 ONNX with edgepose metadata (what TensorRT parses for fp16
                              and for implicit INT8 with calib.cache)
      model_int8_qdq.onnx     int8 modes: explicit-quantization ONNX (symmetric int8 Q/DQ)
      calib.cache             int8 modes: TensorRT calibration cache (text) for implicit INT8
      meta.json               the model metadata (ModelMeta JSON)
      build.json              build settings (precision, DLA, workspace, shapes, hashes)
      accuracy.json           int8 modes: the accuracy gate's report (Q/DQ ONNX in onnxruntime)
      README.md               equivalent trtexec lines per TensorRT major version
      engines/                engines built on the device: <key digest>.engine + .engine.json

An engine is specific to the TensorRT version and the GPU, so the engine cache is keyed by
everything that changes the plan: :func:`engine_key`.
"""
import hashlib
import json
import math
import os
import struct
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import ModelError
from .files import sha256_file, write_atomic  # noqa: F401 (re-exported)

BUNDLE_FORMAT = "edgepose-tensorrt-bundle"
BUNDLE_VERSION = 1
KEY_VERSION = 1

MODEL_ONNX = "model.onnx"
QDQ_ONNX = "model_int8_qdq.onnx"
CALIB_CACHE = "calib.cache"
META_JSON = "meta.json"
BUILD_JSON = "build.json"
ACCURACY_JSON = "accuracy.json"
README_MD = "README.md"
ENGINES_DIR = "engines"

PRECISIONS = ("fp16", "int8", "int8-dla")
# 256 MiB of builder workspace: fits a 2 GB Jetson Nano (about 1 GB free with a desktop off)
# and a 4 GB Nano alike; larger boards may pass workspace_mb=1024 or more.
DEFAULT_WORKSPACE_MB = 256
# The oldest TensorRT we target (JetPack 4.6 on the Nano): header of the bundle's calib.cache.
OLDEST_TRT = "8.2.1"
CALIB_ALGORITHM = "EntropyCalibration2"   # what trtexec's --calib calibrator reads


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def parse_version(v: str) -> Tuple[int, int, int]:
    """``"8.2.1.8"`` → ``(8, 2, 1)``."""
    parts = []
    for p in str(v).split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def trt_version_code(version: str) -> int:
    """``NV_TENSORRT_VERSION`` as in calibration-cache headers: 8.2.1 → 8201, 10.3.0 → 100300."""
    major, minor, patch = parse_version(version)
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


# ----------------------------------------------------------------------------------------------
# calibration cache (TensorRT's text format)
# ----------------------------------------------------------------------------------------------
def scale_to_hex(scale: float) -> str:
    """float32 scale → 8 hex digits of its big-endian IEEE-754 bits (TensorRT's cache format)."""
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text.strip().rjust(8, "0")))[0]


def calib_cache_text(amax: Mapping[str, float], trt_version: str = OLDEST_TRT,
                     algorithm: str = CALIB_ALGORITHM) -> str:
    """TensorRT calibration cache: header ``TRT-<version>-<algorithm>``, then one
    ``tensor_name: <hex>`` line per tensor with scale = amax / 127 (symmetric int8).

    ``amax`` maps tensor names (as TensorRT's ONNX parser names them: the ONNX tensor names) to
    the absolute range of the tensor. A zero range (a tensor that was always 0) gets the smallest
    normal float32 scale rather than 0, which TensorRT could not invert.
    """
    lines = ["TRT-%d-%s" % (trt_version_code(trt_version), algorithm)]
    for name, a in amax.items():
        a = float(a)
        if not math.isfinite(a) or a < 0:
            raise ModelError("calibration range of tensor %r is %r (must be finite and >= 0)" % (name, a))
        if "\n" in name:
            raise ModelError("tensor name %r contains a newline" % (name,))
        scale = max(a / 127.0, 1.1754944e-38)
        lines.append("%s: %s" % (name, scale_to_hex(scale)))
    return "\n".join(lines) + "\n"


def parse_calib_cache(text: str) -> Tuple[int, str, Dict[str, float]]:
    """(version code, algorithm, {tensor: scale}) of a calibration cache; ModelError if malformed."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("TRT-") or lines[0].count("-") < 2:
        raise ModelError("calibration cache has no 'TRT-<version>-<algorithm>' header line")
    _, ver, algo = lines[0].strip().split("-", 2)
    if not ver.isdigit():
        raise ModelError("calibration cache header %r has a non-numeric version" % lines[0])
    scales = {}
    for i, ln in enumerate(lines[1:], 2):
        name, sep, hx = ln.rpartition(":")   # tensor names may contain ':' (e.g. 'image:0')
        hx = hx.strip()
        if not sep or not name or len(hx) == 0 or len(hx) > 8:
            raise ModelError("calibration cache line %d is not 'tensor: hex': %r" % (i, ln))
        try:
            scales[name] = hex_to_scale(hx)
        except ValueError:
            raise ModelError("calibration cache line %d has a bad hex scale: %r" % (i, ln))
    return int(ver), algo, scales


def recode_calib_header(text: str, trt_version: str, algorithm: str = CALIB_ALGORITHM) -> str:
    """The same cache with its header rewritten for another TensorRT version / calibrator."""
    parse_calib_cache(text)
    body = text.split("\n", 1)[1] if "\n" in text else ""
    return "TRT-%d-%s\n%s" % (trt_version_code(trt_version), algorithm, body)


# ----------------------------------------------------------------------------------------------
# engine cache keys
# ----------------------------------------------------------------------------------------------
# fields whose change means "this machine/toolchain differs": the engine is rebuilt
ENV_FIELDS = ("trt_version", "gpu", "compute_capability")
# fields naming the model: an engine that differs here belongs to another model
MODEL_FIELDS = ("model_sha256",)


def engine_key(model_sha256: str, trt_version: str, gpu: str, compute_capability: str,
               precision: str, dla_core: Optional[int], input_shapes: Mapping[str, Mapping[str, Sequence[int]]],
               calib_hash: Optional[str], int8_mode: Optional[str] = None,
               onnx_sha256: Optional[str] = None) -> Dict[str, Any]:
    """Everything an engine plan depends on. ``model_sha256``: the bundle's FP32 ONNX;
    ``onnx_sha256``: the ONNX actually parsed (FP32 or Q/DQ)."""
    shapes = {}
    for name in sorted(input_shapes):
        s = input_shapes[name]
        shapes[name] = {k: [int(v) for v in s[k]] for k in ("min", "opt", "max")}
    return {
        "key_version": KEY_VERSION,
        "model_sha256": model_sha256,
        "onnx_sha256": onnx_sha256 or model_sha256,
        "trt_version": str(trt_version),
        "gpu": str(gpu),
        "compute_capability": str(compute_capability),
        "precision": precision,
        "int8_mode": int8_mode,
        "dla_core": None if dla_core is None else int(dla_core),
        "input_shapes": shapes,
        "calib_hash": calib_hash,
    }


def key_digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def key_diff(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> List[Tuple[str, Any, Any]]:
    """Fields that differ: ``[(field, stored value, wanted value)]``."""
    fields = sorted(set(stored) | set(wanted))
    return [(f, stored.get(f), wanted.get(f)) for f in fields if stored.get(f) != wanted.get(f)]


def describe_diff(diff: Sequence[Tuple[str, Any, Any]]) -> str:
    return "; ".join("%s %s -> %s" % (f, _short(a), _short(b)) for f, a, b in diff)


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    if isinstance(v, str) and len(v) == 64:
        return v[:12] + "…"
    return s if len(s) <= 60 else s[:57] + "..."


def engine_file_name(key: Mapping[str, Any]) -> str:
    tag = key.get("precision", "x")
    if key.get("dla_core") is not None:
        tag += "-dla%d" % key["dla_core"]
    return "%s-trt%s-%s.engine" % (tag, key.get("trt_version", "x").replace(".", "_"), key_digest(key))


def sidecar_path(engine_path: str) -> str:
    return engine_path + ".json"


def read_sidecar(engine_path: str) -> Optional[Dict[str, Any]]:
    p = sidecar_path(engine_path)
    if not os.path.exists(p):
        return None
    try:
        with open(p) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelError("%s is not valid JSON: %s" % (p, e))
    if not isinstance(d, dict) or "key" not in d:
        raise ModelError("%s lacks the engine key" % p)
    return d


# ----------------------------------------------------------------------------------------------
# bundles
# ----------------------------------------------------------------------------------------------
class Bundle:
    """A validated TensorRT deploy bundle (see the module docstring)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        if not os.path.isdir(path):
            raise ModelError("TensorRT bundle not found: %s is not a directory" % path)
        bj = os.path.join(path, BUILD_JSON)
        if not os.path.exists(bj):
            raise ModelError("%s is not an edgepose TensorRT bundle: %s is missing" % (path, BUILD_JSON))
        try:
            with open(bj) as f:
                self.build = json.load(f)
        except ValueError as e:
            raise ModelError("bundle %s: %s is not valid JSON: %s" % (path, BUILD_JSON, e))
        if not isinstance(self.build, dict) or self.build.get("format") != BUNDLE_FORMAT:
            raise ModelError("bundle %s: %s is not an edgepose TensorRT build file" % (path, BUILD_JSON))
        if int(self.build.get("version", 0)) > BUNDLE_VERSION:
            raise ModelError("bundle %s has format version %s; this edgepose reads up to %d: upgrade edgepose"
                             % (path, self.build.get("version"), BUNDLE_VERSION))
        files = self.build.get("files") or {}
        for name in [MODEL_ONNX, META_JSON] + sorted(files):
            if not os.path.exists(os.path.join(path, name)):
                raise ModelError("bundle %s is incomplete: %s is missing (re-export it with edgepose export)"
                                 % (path, name))
        if self.precision not in PRECISIONS:
            raise ModelError("bundle %s: unknown precision %r" % (path, self.precision))
        if self.precision.startswith("int8") and not (self.has(CALIB_CACHE) or self.has(QDQ_ONNX)):
            raise ModelError("bundle %s is incomplete: an int8 bundle needs %s or %s"
                             % (path, CALIB_CACHE, QDQ_ONNX))

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def has(self, name: str) -> bool:
        return name in (self.build.get("files") or {}) and os.path.exists(self.file(name))

    @property
    def precision(self) -> str:
        return self.build.get("precision", "fp16")

    @property
    def model_sha256(self) -> str:
        return self.build["files"][MODEL_ONNX] if MODEL_ONNX in (self.build.get("files") or {}) \
            else sha256_file(self.file(MODEL_ONNX))

    @property
    def input_shapes(self) -> Dict[str, Dict[str, List[int]]]:
        return self.build.get("input_shapes") or {}

    @property
    def dla(self) -> Optional[Dict[str, Any]]:
        return self.build.get("dla")

    @property
    def workspace_mb(self) -> int:
        return int(self.build.get("workspace_mb") or DEFAULT_WORKSPACE_MB)

    @property
    def calib_hash(self) -> Optional[str]:
        return (self.build.get("calibration") or {}).get("hash")

    def meta(self):
        from .metadata import ModelMeta
        with open(self.file(META_JSON)) as f:
            return ModelMeta.from_json(f.read())

    def verify_files(self) -> None:
        """Check each listed file's sha256 (a file changed after export is an error)."""
        for name, sha in sorted((self.build.get("files") or {}).items()):
            got = sha256_file(self.file(name))
            if got != sha:
                raise ModelError("bundle %s: %s changed after export (sha256 %s…, expected %s…); re-export it"
                                 % (self.path, name, got[:12], sha[:12]))

    def calib_text(self) -> str:
        with open(self.file(CALIB_CACHE)) as f:
            text = f.read()
        parse_calib_cache(text)
        return text


def is_bundle(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, BUILD_JSON))


def find_bundle_for_engine(engine_path: str) -> Optional[str]:
    """The bundle an engine file lives in (BUNDLE/engines/x.engine or BUNDLE/x.engine)."""
    d = os.path.dirname(os.path.abspath(engine_path))
    for cand in (d, os.path.dirname(d)):
        if is_bundle(cand):
            return cand
    return None
