"""The C++ extension under AddressSanitizer + UBSan, fuzzed (short run), and HWC == CHW as a
hypothesis property of the installed extension.

The long run (>= 100k inputs) is ``python benchmarks/fuzz_ext.py``; this file runs 2500 inputs
of the same driver. The sanitized build is cached in ``build/sanitize/<hash of the sources>``
(first run: about 40 s to build on a 2-core machine; later runs reuse it).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgepose import decode, reference
from edgepose.schema import CMU18_LIMBS

pytestmark = pytest.mark.slow   # a sanitized build of the extension and 2,500 fuzzed inputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fuzz_module():
    spec = importlib.util.spec_from_file_location(
        "fuzz_ext", os.path.join(REPO, "benchmarks", "fuzz_ext.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fuzz_ext = _fuzz_module()


@pytest.fixture(scope="module")
def sanitized_ext():
    why = fuzz_ext.missing_tools()
    if why:
        pytest.skip("no sanitized build possible here: %s" % why)
    return fuzz_ext.build(jobs=2)


def test_sanitized_extension_survives_2500_fuzzed_inputs(sanitized_ext):
    s = fuzz_ext.run(sanitized_ext, 2500, timeout=600)
    detail = "%s\n%s" % (s.get("last_input", ""), s.get("stderr_report", "")[:4000])
    assert s["sanitizer_reports"] == 0, detail
    assert s["returncode"] == 0 and not s["failures"], (s.get("failures"), detail)
    assert s["inputs"] == 2500
    # the inputs reach the kernels, not only the argument checks
    assert s["returned"] > 0.3 * s["inputs"] and s["layout_pairs"] > 0.2 * s["inputs"]
    assert s["value_error"] > 0.1 * s["inputs"] and s["type_error"] > 0.02 * s["inputs"]
    assert set(s["by_function"]) == {f + r for f in ("find_peaks", "decode_topdown",
                                                     "group_people", "decode_bottomup")
                                     for r in ("", "/api")}


def test_harness_reports_a_sanitizer_error(sanitized_ext):
    """A deliberate heap overflow in the sanitized process is a failed run, not a pass."""
    s = fuzz_ext.run(sanitized_ext, 0, timeout=120, self_test=True)
    assert not s["ok"] and s["sanitizer_reports"] >= 1 and s["returncode"] != 0
    assert "heap-buffer-overflow" in s["stderr_report"]


# --------------------------------------------------------------------------------------------
# HWC == CHW, bit for bit (installed extension, no sanitizer)
# --------------------------------------------------------------------------------------------
SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
LIMBS = np.array(CMU18_LIMBS, np.int64)


def hwc(a):
    return np.ascontiguousarray(np.moveaxis(a, -3, -1))


def maps(rng, shape, kind):
    if kind == "levels":
        return np.array([-0.0, 0.0, 0.1, 0.4, 0.4, 1.0], np.float32)[rng.integers(0, 6, shape)]
    if kind == "normal":
        return rng.standard_normal(shape).astype(np.float32)
    return rng.random(shape, dtype=np.float32)


def same(a, b):
    assert all(x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)
               for x, y in zip(a, b))


@SETTINGS
@given(seed=st.integers(0, 2 ** 32 - 1), N=st.integers(1, 3), C=st.integers(1, 21),
       H=st.integers(1, 30), W=st.integers(1, 30),
       kind=st.sampled_from(["levels", "normal", "uniform"]),
       refine=st.sampled_from(decode.REFINES), kernel=st.sampled_from([1, 3, 5, 11]),
       thr=st.floats(-1, 1), max_peaks=st.integers(0, 40))
def test_peaks_and_topdown_hwc_equal_chw(seed, N, C, H, W, kind, refine, kernel, thr, max_peaks):
    hm = maps(np.random.default_rng(seed), (N, C, H, W), kind)
    same(decode.find_peaks(hm, thr, max_peaks, refine, kernel),
         decode.find_peaks(hwc(hm), thr, max_peaks, refine, kernel, layout="HWC"))
    same(decode.find_peaks(hm[0], thr, max_peaks, refine, kernel),
         decode.find_peaks(hwc(hm[0]), thr, max_peaks, refine, kernel, layout="HWC"))
    same(decode.decode_topdown(hm, refine, kernel),
         decode.decode_topdown(hwc(hm), refine, kernel, layout="HWC"))


@SETTINGS
@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(0, 5), H=st.integers(12, 40),
       W=st.integers(12, 60), noise=st.sampled_from([0.0, 0.05, 0.3]),
       refine=st.sampled_from(decode.REFINES), matching=st.sampled_from(decode.MATCHINGS),
       samples=st.sampled_from([1, 4, 10]), paf_thr=st.sampled_from([-0.5, 0.05, 0.2]),
       affine=st.one_of(st.none(), st.tuples(*[st.floats(-50, 50)] * 4)))
def test_bottomup_hwc_equals_chw(seed, n, H, W, noise, refine, matching, samples, paf_thr,
                                 affine):
    rng = np.random.default_rng(seed)
    spots = [(rng.uniform(0, W), rng.uniform(-4, H - 8), rng.uniform(8, 30)) for _ in range(n)]
    people = reference.template_people(spots)
    people[..., 2] = rng.uniform(size=people.shape[:2]) > 0.2
    hm, paf = reference.render_maps(people, H, W, LIMBS)
    hm = (hm + rng.normal(0, noise, hm.shape)).astype(np.float32)
    paf = (paf + rng.normal(0, noise, paf.shape)).astype(np.float32)
    opts = dict(refine=refine, matching=matching, paf_samples=samples, max_peaks=8,
                paf_score_threshold=paf_thr, min_parts=0, min_person_score=0.0, dark_kernel=5,
                affine=affine)
    same(decode.decode_bottomup(hm, paf, LIMBS, **opts),
         decode.decode_bottomup(hwc(hm), hwc(paf), LIMBS, layout="HWC", **opts))
