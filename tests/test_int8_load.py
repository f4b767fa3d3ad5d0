"""Every cpu-int8 format loads and runs, with graph optimisation on, on this onnxruntime.

The models come from ``tests/make_int8_formats.py`` (u8s8, u8s7, u8u8 Q/DQ models of a small
OpenPose-structured network with a dead channel, each with its exact output on a fixed input):

* ``EDGEPOSE_INT8_FORMATS_DIR=DIR``: the models made there (made once in the main environment,
  then tested on the runtime's oldest platforms: Python 3.6 + numpy 1.19 + onnxruntime 1.10 on
  Jetson Nano, onnxruntime < 1.20 on JetPack 5). This file imports neither torch nor onnx.
* unset, in an environment that can make them (onnx and the exporters installed): made into a
  temporary folder first. Otherwise skipped with the reason.

Each model is loaded the way the runtime loads it (``edgepose.backends.onnxruntime.OrtBackend``
when the runtime is importable, else onnxruntime with the same options: ORT_ENABLE_ALL, the
CPU provider), run, and compared with the exact output. The tolerance is what this CPU's int8
kernels allow: int32-accumulating kernels (x86 VNNI, ARM, and u8s7 / u8u8 everywhere) agree
with the exact integer arithmetic up to a requantization rounding tie; u8s8 on x86 without
VNNI saturates 16-bit sums (see ``edgepose/exporters/int8/kernels.py``), so there it must only
keep the signal. The host class comes from the saved probe model (or
``EDGEPOSE_INT8_KERNELS=exact|saturating``).
"""
import json
import os

import numpy as np
import pytest

from conftest import made_by_script

FORMATS = ("u8s8", "u8s7", "u8u8")
ENV = "EDGEPOSE_INT8_FORMATS_DIR"
# relative L2 error to the exact output
EXACT_TOL = 0.02          # exact int32 kernels: rounding ties only (measured 0 on VNNI, 1.10-1.32)
SATURATING_TOL = 0.5      # u8s8 on a saturating x86 CPU: must keep the signal, nothing more


@pytest.fixture(scope="module")
def formats_dir(tmp_path_factory):
    pytest.importorskip("onnxruntime")

    def problem(d):
        if not os.path.isfile(os.path.join(d, "manifest.json")):
            return "%s=%s has no manifest.json" % (ENV, d)
        return None

    return made_by_script(tmp_path_factory, "make_int8_formats.py", ENV, problem)


@pytest.fixture(scope="module")
def manifest(formats_dir):
    with open(os.path.join(formats_dir, "manifest.json")) as f:
        return json.load(f)


def _session(path):
    """The runtime's loading: graph optimisations on, CPU provider."""
    try:
        from edgepose.backends.onnxruntime import OrtBackend
    except ImportError:
        OrtBackend = None
    if OrtBackend is not None:
        b = OrtBackend(path)
        return lambda x: b.run({b.inputs[0].name: x})
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    s = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return lambda x: dict(zip(names, s.run(None, {s.get_inputs()[0].name: x})))


def _rel(got, exp):
    return float(np.linalg.norm(got.astype(np.float64) - exp) / max(np.linalg.norm(exp), 1e-12))


@pytest.fixture(scope="module")
def saturating(formats_dir, manifest):
    """Whether this CPU's u8s8 kernels saturate: forced by EDGEPOSE_INT8_KERNELS, else the probe."""
    forced = os.environ.get("EDGEPOSE_INT8_KERNELS", "").strip().lower()
    if forced in ("exact", "saturating"):
        return forced == "saturating"
    p = manifest["probe"]
    got = _session(os.path.join(formats_dir, p["file"]))(np.load(os.path.join(formats_dir, p["input"])))
    exp = np.load(os.path.join(formats_dir, p["expected"]))
    return _rel(list(got.values())[0], exp) > 0.05


@pytest.mark.parametrize("fmt", FORMATS)
def test_int8_format_loads_and_runs_optimised(formats_dir, manifest, saturating, fmt):
    entries = [m for m in manifest["models"] if m["format"] == fmt]
    assert entries, "%s missing from %s" % (fmt, formats_dir)
    m = entries[0]
    assert m["dead_channels"] >= 1          # the case that broke onnxruntime < 1.20 is in the model
    run = _session(os.path.join(formats_dir, m["file"]))   # loads (fusion happens here) ...
    x = np.load(os.path.join(formats_dir, manifest["input"]))
    got = run(x)                                                # ... and runs (the kernels check here)
    assert sorted(got) == sorted(m["expected"])
    tol = SATURATING_TOL if (saturating and fmt == "u8s8") else EXACT_TOL
    for name, f in sorted(m["expected"].items()):
        exp = np.load(os.path.join(formats_dir, f))
        assert got[name].shape == exp.shape
        assert np.all(np.isfinite(got[name]))
        err = _rel(got[name], exp)
        assert err <= tol, "%s %s: relative error %.4f > %.2f (host %s)" % (
            fmt, name, err, tol, "saturating" if saturating else "exact")
