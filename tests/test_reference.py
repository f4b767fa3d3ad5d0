"""Property tests: the C++ extension agrees with the numpy reference (edgepose.reference)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgepose import decode, reference
from edgepose.schema import CMU18_LIMBS

pytestmark = pytest.mark.skipif(not decode.has_extension(), reason="edgepose._ext not built")

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REFINES = st.sampled_from(["none", "quarter", "dark", "centroid"])
KERNELS = st.sampled_from([1, 3, 5, 11])


@st.composite
def maps(draw, ndim=3, max_hw=14):
    """Random maps: either a few levels (plateaus and ties) or smooth blobs plus noise."""
    shape = [draw(st.integers(1, 3)) for _ in range(ndim - 2)]
    H, W = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["levels", "blobs", "uniform"]))
    full = tuple(shape) + (H, W)
    if kind == "levels":
        a = rng.choice(np.array([0.0, 0.05, 0.3, 0.3, 0.7, 1.0]), size=full)
    elif kind == "uniform":
        a = rng.uniform(-0.2, 1.0, size=full)
    else:
        yy, xx = np.mgrid[0:H, 0:W]
        a = rng.normal(0, 0.02, full)
        for _ in range(draw(st.integers(1, 4))):
            x, y = rng.uniform(-1, W), rng.uniform(-1, H)
            s = rng.uniform(0.7, 3)
            a = a + rng.uniform(0.2, 1) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    return np.ascontiguousarray(a, np.float32)


@SETTINGS
@given(hm=maps(ndim=3), refine=REFINES,
       kernel=KERNELS, thr=st.sampled_from([-1.0, 0.0, 0.1, 0.3]), max_peaks=st.integers(0, 6))
def test_find_peaks_matches_reference(hm, refine, kernel, thr, max_peaks):
    got = decode.find_peaks(hm, thr, max_peaks, refine, kernel)
    want = reference.find_peaks(hm, thr, max_peaks, refine, kernel)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0][:, 2], want[0][:, 2])
    np.testing.assert_allclose(got[0][:, :2], want[0][:, :2], atol=1e-4)


@SETTINGS
@given(hm=maps(ndim=4), refine=REFINES, kernel=KERNELS)
def test_batched_find_peaks_and_topdown_match_reference(hm, refine, kernel):
    got = decode.find_peaks(hm, 0.1, 4, refine, kernel)
    want = reference.find_peaks(hm, 0.1, 4, refine, kernel)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], atol=1e-4)
    hm4 = hm.reshape((-1,) + hm.shape[-3:])
    c, s = decode.decode_topdown(hm4, refine, kernel)
    rc, rs = reference.decode_topdown(hm4, refine, kernel)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_allclose(c, rc, atol=1e-4)


@st.composite
def scenes(draw):
    """Synthetic CMU-18 scenes: random people (some keypoints hidden) + noise on the maps."""
    H, W = draw(st.integers(20, 40)), draw(st.integers(20, 60))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(0, 5))
    spots = [(rng.uniform(0, W), rng.uniform(-4, H - 8), rng.uniform(8, 30)) for _ in range(n)]
    people = reference.template_people(spots)
    people[..., :2] += rng.normal(0, 0.8, people[..., :2].shape)
    people[..., 2] = rng.uniform(size=people.shape[:2]) > draw(st.sampled_from([0.0, 0.2]))
    hm, paf = reference.render_maps(people, H, W, CMU18_LIMBS, sigma=rng.uniform(0.8, 1.5),
                                    paf_width=rng.uniform(0.7, 1.5))
    noise = draw(st.sampled_from([0.0, 0.05, 0.3]))
    hm = hm + rng.normal(0, noise, hm.shape)
    paf = paf + rng.normal(0, noise, paf.shape)
    return np.ascontiguousarray(hm, np.float32), np.ascontiguousarray(paf, np.float32)


@SETTINGS
@given(scene=scenes(), refine=st.sampled_from(["quarter", "dark", "none"]),
       matching=st.sampled_from(["greedy", "hungarian"]), samples=st.sampled_from([1, 4, 10]),
       frac=st.sampled_from([0.0, 0.5, 0.8]), min_parts=st.sampled_from([0, 3]),
       paf_thr=st.sampled_from([-0.5, 0.05, 0.2]))
def test_grouping_matches_reference(scene, refine, matching, samples, frac, min_parts, paf_thr):
    hm, paf = scene
    opts = dict(refine=refine, peak_threshold=0.1, max_peaks=8, paf_samples=samples,
                paf_score_threshold=paf_thr, min_sample_fraction=frac, min_parts=min_parts,
                min_person_score=0.0, matching=matching, dark_kernel=5)
    got = decode.decode_bottomup(hm, paf, CMU18_LIMBS, **opts)
    want = reference.decode_bottomup(hm, paf, CMU18_LIMBS, **opts)
    assert got[0].shape == want[0].shape
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], want[0], atol=1e-4)


@SETTINGS
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(0, 7),
       matching=st.sampled_from(["greedy", "hungarian"]))
def test_group_people_on_random_peaks_matches_reference(seed, n, matching):
    """Arbitrary peaks and PAFs (no scene): exercises merges, conflicts and ties."""
    rng = np.random.default_rng(seed)
    K, H, W = 6, 12, 12
    limbs = np.array([(0, 1, 0, 1), (1, 2, 2, 3), (2, 3, 4, 5), (3, 0, 6, 7), (4, 5, 8, 9),
                      (1, 4, 0, 1), (5, 2, 2, 3), (2, 0, 6, 7)], np.int64)
    counts = rng.integers(0, n + 1, K)
    off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    peaks = np.stack([rng.integers(0, W, off[-1]) + rng.uniform(-0.5, 0.5, off[-1]),
                      rng.integers(0, H, off[-1]) + rng.uniform(-0.5, 0.5, off[-1]),
                      rng.uniform(0.1, 1, off[-1])], 1).astype(np.float32).reshape(-1, 3)
    pafs = rng.uniform(-1, 1, (10, H, W)).astype(np.float32)
    opts = dict(paf_samples=5, paf_score_threshold=-0.3, min_sample_fraction=0.5, min_parts=0,
                min_person_score=0.0, matching=matching)
    got = decode.group_people(peaks, off, pafs, limbs, **opts)
    want = reference.group_people(peaks, off, pafs, limbs, **opts)
    assert got[0].shape == want[0].shape
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
