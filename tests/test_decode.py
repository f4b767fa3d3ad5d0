"""edgepose.decode on constructed inputs: tie rule, ordering, sub-pixel accuracy, exact grouping,
person score, filters and bad-input errors."""
import numpy as np
import pytest

from edgepose import decode, reference
from edgepose.errors import EdgeposeError
from edgepose.schema import CMU18_LIMBS

from conftest import LogRecorder

LIMBS = np.array(CMU18_LIMBS, np.int64)
K = 18


def test_extension_is_built():
    assert decode.has_extension(), "edgepose._ext missing: pip install --no-build-isolation -e ."


def f32(a):
    return np.array(a, np.float32)


def blob(H, W, x, y, sigma, amp=1.0):
    yy, xx = np.mgrid[0:H, 0:W]
    return (amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2.0 * sigma ** 2))).astype(np.float32)


# --------------------------------------------------------------------------------------------
# peaks: tie rule, threshold, ordering, CSR
# --------------------------------------------------------------------------------------------
def test_plateau_gives_its_first_pixel_in_scan_order():
    hm = np.zeros((3, 6, 7), np.float32)
    hm[0, 2, 3] = hm[0, 2, 4] = 0.5             # horizontal pair
    hm[1, 1:3, 2:4] = 0.7                         # 2x2 plateau
    hm[2, 1, 1] = hm[2, 2, 2] = 0.6               # diagonal pair
    peaks, off = decode.find_peaks(hm, threshold=0.1, refine="none")
    assert off.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(peaks, f32([[3, 2, 0.5], [2, 1, 0.7], [1, 1, 0.6]]))


def test_threshold_is_strict_and_neighbours_suppress():
    hm = np.zeros((1, 5, 5), np.float32)
    hm[0, 1, 1] = 0.2
    hm[0, 3, 3] = 0.3
    hm[0, 3, 4] = 0.31                           # right neighbour is higher: (3,3) is no peak
    peaks, _ = decode.find_peaks(hm, threshold=float(np.float32(0.2)), refine="none")
    np.testing.assert_array_equal(peaks, f32([[4, 3, 0.31]]))


def test_peaks_best_first_equal_scores_in_scan_order_and_max_peaks():
    hm = np.zeros((1, 10, 10), np.float32)
    for (y, x, v) in [(1, 1, 0.3), (1, 5, 0.9), (5, 1, 0.5), (5, 5, 0.5), (8, 8, 0.7)]:
        hm[0, y, x] = v
    peaks, off = decode.find_peaks(hm, threshold=0.1, refine="none")
    np.testing.assert_array_equal(peaks[:, :2], [[5, 1], [8, 8], [1, 5], [5, 5], [1, 1]])
    peaks, off = decode.find_peaks(hm, threshold=0.1, max_peaks=2, refine="none")
    np.testing.assert_array_equal(peaks[:, :2], [[5, 1], [8, 8]])
    assert off.tolist() == [0, 2]
    peaks, off = decode.find_peaks(hm, threshold=0.1, max_peaks=0)
    assert peaks.shape == (0, 3) and off.tolist() == [0, 0]


def test_peak_refined_onto_a_stronger_one_is_dropped_and_the_next_takes_its_place():
    """Two spikes 2 px apart on a cone: both DARK steps clip to 1 px and land on the same pixel.
    Hungarian grouping could then pick either of two equal-total matchings; the weaker copy is
    dropped instead, and max_peaks still counts distinct peaks."""
    H = W = 20
    yy, xx = np.mgrid[0:H, 0:W]
    hm = (0.85 * np.exp(-0.25 * np.hypot(xx - 9, yy - 10))).astype(np.float32)
    hm[9, 8], hm[11, 10], hm[2, 16] = 1.0, 0.95, 0.5
    for find in (decode.find_peaks, reference.find_peaks):
        peaks, off = find(hm[None], 0.1, 2, "dark", 5)
        assert off.tolist() == [0, 2]
        assert peaks[0].tolist() == [9, 10, 1.0]                     # the 1.0 spike, moved
        assert peaks[1, 2] == np.float32(0.5)                        # the 0.95 copy is gone
        assert np.abs(peaks[1, :2] - [16, 2]).max() < 1
        peaks, _ = find(hm[None], 0.1, 8, "none", 5)     # unrefined: three distinct peaks
        assert peaks[:, :2].tolist() == [[8, 9], [10, 11], [16, 2]]


def test_batched_maps_give_one_csr_row_per_channel():
    hm = np.zeros((2, 3, 8, 8), np.float32)
    hm[1, 2, 4, 4] = 1.0
    hm[0, 0, 2, 2] = 0.5
    peaks, off = decode.find_peaks(hm, refine="none")
    assert off.tolist() == [0, 1, 1, 1, 1, 1, 2]
    np.testing.assert_array_equal(peaks, [[2, 2, 0.5], [4, 4, 1.0]])


# --------------------------------------------------------------------------------------------
# sub-pixel accuracy on Gaussian blobs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma,kernel,H,W", [(2.0, 11, 64, 48), (1.0, 5, 46, 70), (1.5, 3, 40, 40)])
def test_blobs_recovered_dark_005_quarter_025(sigma, kernel, H, W):
    rng = np.random.default_rng(int(sigma * 10) + kernel)
    pts = np.stack([rng.uniform(6, W - 7, 40), rng.uniform(6, H - 7, 40)], 1)
    hms = np.stack([blob(H, W, x, y, sigma) for x, y in pts])[:, None]    # [40,1,H,W]
    for refine, tol in (("dark", 0.05), ("quarter", 0.25), ("centroid", 0.5)):
        coords, scores = decode.decode_topdown(hms, refine=refine, dark_kernel=kernel)
        err = np.abs(coords[:, 0] - pts).max()
        assert err <= tol, (refine, err)
        peaks, off = decode.find_peaks(hms[:, 0], refine=refine, dark_kernel=kernel)
        assert off.tolist() == list(range(41))
        assert np.abs(peaks[:, :2] - pts).max() <= tol
    none, _ = decode.decode_topdown(hms, refine="none")
    assert np.abs(none[:, 0] - pts).max() > 0.3        # the refinements did something


def test_topdown_argmax_first_in_scan_order_and_score_is_max():
    hm = np.zeros((2, 3, 6, 5), np.float32)
    hm[0, 0, 2, 1] = hm[0, 0, 4, 3] = 0.8          # tie: first in scan order wins
    hm[1, 2] = -1.0                                 # constant map: pixel (0, 0)
    hm[1, 1, 5, 4] = 0.25
    coords, scores = decode.decode_topdown(hm, refine="none")
    np.testing.assert_array_equal(coords[0, 0], [1, 2])
    np.testing.assert_array_equal(coords[1, 2], [0, 0])
    np.testing.assert_array_equal(coords[1, 1], [4, 5])
    np.testing.assert_array_equal(scores, f32([[0.8, 0, 0], [0, 0.25, -1.0]]))
    c, s = decode.decode_topdown(np.zeros((0, 17, 8, 6), np.float32))
    assert c.shape == (0, 17, 2) and s.shape == (0, 17)


def test_quarter_moves_towards_higher_neighbour():
    hm = np.zeros((1, 1, 5, 5), np.float32)
    hm[0, 0, 2, 2] = 1.0
    hm[0, 0, 2, 3] = 0.5       # right higher than left
    hm[0, 0, 1, 2] = 0.4       # up higher than down
    c, _ = decode.decode_topdown(hm, refine="quarter")
    np.testing.assert_allclose(c[0, 0], [2.25, 1.75])


# --------------------------------------------------------------------------------------------
# grouping on synthetic scenes
# --------------------------------------------------------------------------------------------
def scene(spots, H, W, integer=False):
    people = reference.template_people(spots)
    if integer:
        people[..., :2] = np.round(people[..., :2])
    hm, paf = reference.render_maps(people, H, W, LIMBS, sigma=1.0, paf_width=1.5)
    return people, hm, paf


def assert_grouped_exactly(people, found, tol):
    assert found.shape == people.shape, (found.shape, people.shape)
    for p in people:
        # the found person whose neck is nearest
        d = np.hypot(*(found[:, 1, :2] - p[1, :2]).T)
        f = found[int(np.argmin(d))]
        assert (f[:, 2] > 0).all()
        assert np.abs(f[:, :2] - p[:, :2]).max() <= tol


@pytest.mark.parametrize("matching", ["greedy", "hungarian"])
@pytest.mark.parametrize("name,spots", [
    ("separated", [(12, 3, 36), (40, 5, 32), (70, 2, 38)]),
    ("touching", [(20, 4, 36), (33, 4, 36), (46, 5, 36)]),          # wrists touch neighbours
    ("overlapping", [(22, 2, 44), (34, 12, 30), (52, 6, 36)]),      # smaller person in front
])
def test_synthetic_scenes_grouped_exactly(name, spots, matching):
    people, hm, paf = scene(spots, 56, 84)
    found, scores = decode.decode_bottomup(hm, paf, LIMBS, refine="dark", dark_kernel=5,
                                           matching=matching)
    assert_grouped_exactly(people, found, 0.05)
    assert np.all(np.diff(scores) <= 0)


def test_person_score_definition_on_an_ideal_person():
    people, hm, paf = scene([(20, 3, 36)], 48, 40, integer=True)
    found, scores = decode.decode_bottomup(hm, paf, LIMBS, refine="quarter")
    np.testing.assert_array_equal(found[0, :, :2], people[0, :, :2])
    np.testing.assert_array_equal(found[0, :, 2], np.ones(K, np.float32))
    # mean of 18 keypoints at 1.0 and 19 connections at 1.0 (ideal PAF, short limbs)
    np.testing.assert_allclose(scores, [1.0], rtol=1e-6)
    # lower every keypoint to 0.5: the mean of 18 x 0.5 and 19 x 1.0
    found, scores = decode.decode_bottomup(hm * np.float32(0.5), paf, LIMBS, refine="quarter",
                                           peak_threshold=0.1)
    np.testing.assert_allclose(scores, [(18 * 0.5 + 19) / 37.0], rtol=1e-6)


def test_min_parts_and_min_person_score_filter_fragments():
    people, hm, paf = scene([(20, 3, 36)], 48, 60)
    # a fragment of two parts (an extra nose + neck pair far right)
    frag = np.zeros((1, K, 3))
    frag[0, 0] = (52, 20, 1)
    frag[0, 1] = (52, 26, 1)
    fhm, fpaf = reference.render_maps(frag, 48, 60, LIMBS, paf_width=1.5)
    hm = np.maximum(hm, fhm)
    paf = paf + fpaf
    found, _ = decode.decode_bottomup(hm, paf, LIMBS, min_parts=3)
    assert len(found) == 1
    found, scores = decode.decode_bottomup(hm, paf, LIMBS, min_parts=2, min_person_score=0.0)
    assert len(found) == 2
    assert (found[1, :, 2] > 0).sum() == 2
    np.testing.assert_array_equal(found[1, 2:], np.tile([-1, -1, 0], (K - 2, 1)))
    found, _ = decode.decode_bottomup(hm, paf, LIMBS, min_parts=2, min_person_score=scores[1] + 1e-3)
    assert len(found) == 1


def test_group_people_equals_decode_bottomup():
    people, hm, paf = scene([(12, 3, 36), (40, 5, 32)], 48, 60)
    peaks, off = decode.find_peaks(hm, threshold=0.1, refine="dark", dark_kernel=5)
    a = decode.group_people(peaks, off, paf, LIMBS, num_keypoints=K)
    b = decode.decode_bottomup(hm, paf, LIMBS)
    assert len(a[0]) == 2                   # both people found: the comparison is not vacuous
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_limbs_merge_two_fragments():
    """A later limb linking two partial people merges them (table order builds fragments)."""
    people, hm, paf = scene([(20, 3, 36)], 48, 40, integer=True)
    # limbs: r_shoulder-r_elbow first, then l_shoulder-l_elbow, then the neck links both
    limbs = np.array([(2, 3, 14, 15), (5, 6, 22, 23), (1, 2, 12, 13), (1, 5, 20, 21)], np.int64)
    found, scores = decode.decode_bottomup(hm, paf, limbs, refine="none", min_parts=0)
    assert len(found) == 1
    assert sorted(np.nonzero(found[0, :, 2])[0].tolist()) == [1, 2, 3, 5, 6]


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
HM = np.zeros((18, 8, 8), np.float32)
PAF = np.zeros((38, 8, 8), np.float32)


def nan_at(a, idx, v=np.nan):
    a = a.copy()
    a[idx] = v
    return a


@pytest.mark.parametrize("call,exc,words", [
    (lambda: decode.find_peaks(HM.astype(np.float64)), TypeError, "float32"),
    (lambda: decode.find_peaks(HM.tolist()), TypeError, "numpy array"),
    (lambda: decode.find_peaks(HM[0]), ValueError, "dimensions"),
    (lambda: decode.find_peaks(HM[:, :, ::2]), ValueError, "contiguous"),
    (lambda: decode.find_peaks(np.zeros((3, 0, 4), np.float32)), ValueError, "empty"),
    (lambda: decode.find_peaks(nan_at(HM, (3, 2, 2))), ValueError, "NaN"),
    (lambda: decode.find_peaks(nan_at(HM, (17, 7, 7), np.inf)), ValueError, "NaN or inf"),
    (lambda: decode.find_peaks(HM, refine="bicubic"), ValueError, "refine"),
    (lambda: decode.find_peaks(HM, refine="dark", dark_kernel=4), ValueError, "dark_kernel"),
    (lambda: decode.find_peaks(HM, max_peaks=-1), ValueError, "max_peaks"),
    (lambda: decode.find_peaks(HM, threshold=float("nan")), ValueError, "threshold"),
    (lambda: decode.decode_topdown(HM), ValueError, "dimensions"),
    (lambda: decode.decode_topdown(nan_at(HM[None], (0, 5, 1, 1), -np.inf)), ValueError, "NaN or inf"),
    (lambda: decode.decode_topdown(nan_at(HM[None], (0, 17, 7, 7))), ValueError, "NaN"),
    (lambda: decode.decode_bottomup(HM, PAF, [(0, 18, 0, 1)]), ValueError, "part index"),
    (lambda: decode.decode_bottomup(HM, PAF, [(0, 1, 0, 38)]), ValueError, "PAF channel"),
    (lambda: decode.decode_bottomup(HM, PAF, [(0, 1, -1, 2)]), ValueError, "PAF channel"),
    (lambda: decode.decode_bottomup(HM, PAF, [(0, 1, 2)]), ValueError, "[L,4]"),
    (lambda: decode.decode_bottomup(HM, PAF, [(0.0, 1.0, 2.0, 3.0)]), TypeError, "integers"),
    (lambda: decode.decode_bottomup(HM, np.zeros((38, 7, 8), np.float32), LIMBS), ValueError, "differ"),
    (lambda: decode.decode_bottomup(HM, nan_at(PAF, (37, 0, 0)), LIMBS), ValueError, "pafs"),
    (lambda: decode.decode_bottomup(HM, PAF, LIMBS, matching="auction"), ValueError, "matching"),
    (lambda: decode.decode_bottomup(HM, PAF, LIMBS, paf_samples=0), ValueError, "paf_samples"),
    (lambda: decode.decode_bottomup(HM, PAF, LIMBS, min_parts=-1), ValueError, "min_parts"),
    (lambda: decode.group_people(np.zeros((2, 3), np.float32), np.array([0, 1, 1]), PAF, LIMBS),
     ValueError, "offsets"),
    (lambda: decode.group_people(np.zeros((2, 2), np.float32), np.array([0, 2]), PAF, LIMBS),
     ValueError, "[M,3]"),
    (lambda: decode.group_people(np.zeros((2, 3), np.float32), np.array([0, 2, 1, 2]), PAF,
                                 [(0, 1, 0, 1)]), ValueError, "non-decreasing"),
    (lambda: decode.group_people(np.zeros((1, 3), np.float32), np.array([0, 1, 1]), PAF,
                                 [(0, 2, 0, 1)]), ValueError, "part index"),
    (lambda: decode.group_people(np.zeros((1, 3), np.float32), np.array([0, 1, 1], np.int32),
                                 PAF, [(0, 1, 0, 1)]), TypeError, "int64"),
    (lambda: decode.group_people(np.full((1, 3), np.nan, np.float32), np.array([0, 1, 1]), PAF,
                                 [(0, 1, 0, 1)]), ValueError, "NaN"),
    (lambda: decode.group_people(np.zeros((1, 3), np.float32), np.array([0, 1, 1]), PAF,
                                 [(0, 1, 0, 1)], num_keypoints=18), ValueError, "num_keypoints"),
])
def test_bad_input_raises_named_error(call, exc, words):
    with pytest.raises(exc) as ei:
        call()
    assert isinstance(ei.value, EdgeposeError)
    msg = str(ei.value)
    assert words in msg and "\n" not in msg


def test_empty_inputs_that_are_valid():
    peaks, off = decode.find_peaks(HM)
    assert peaks.shape == (0, 3) and off.shape == (19,)
    people, scores = decode.decode_bottomup(HM, PAF, LIMBS)
    assert people.shape == (0, 18, 3) and scores.shape == (0,)
    people, scores = decode.decode_bottomup(HM, PAF, np.zeros((0, 4), np.int64))
    assert people.shape == (0, 18, 3)


def test_numpy_fallback_without_extension(monkeypatch):
    """Without the compiled core the same API runs the reference, with the same errors, and
    says so once."""
    people, hm, paf = scene([(12, 3, 36), (40, 5, 32)], 48, 60)
    want = decode.decode_bottomup(hm, paf, LIMBS)
    want_td = decode.decode_topdown(hm[None, :4])
    assert len(want[0]) == 2
    monkeypatch.setattr(decode, "_ext", None)
    monkeypatch.setattr(decode, "_warned_fallback", [])
    assert not decode.has_extension()
    with LogRecorder() as rec:
        got = decode.decode_bottomup(hm, paf, LIMBS)
        decode.decode_bottomup(hm, paf, LIMBS)
    assert len([m for m in rec.messages if "runs in numpy" in m]) == 1
    np.testing.assert_allclose(got[0], want[0], atol=1e-4)
    got_td = decode.decode_topdown(hm[None, :4])
    np.testing.assert_allclose(got_td[0], want_td[0], atol=1e-4)
    with pytest.raises(decode.DecodeError, match="NaN"):
        decode.decode_bottomup(hm, nan_at(paf, (0, 1, 1)), LIMBS)
    with pytest.raises(decode.DecodeError, match="part index"):
        decode.decode_bottomup(hm, paf, [(0, 18, 0, 1)])
    with pytest.raises(TypeError, match="float32"):
        decode.find_peaks(hm.astype(np.float64))


def test_option_of_wrong_type_gives_one_line_error():
    for kw in ({"max_peaks": 2.5}, {"refine": None}, {"paf_samples": "10"}):
        with pytest.raises(EdgeposeError) as ei:
            decode.decode_bottomup(HM, PAF, LIMBS, **kw)
        assert "\n" not in str(ei.value)


def test_threshold_compares_in_double_precision():
    """float32(0.3) is slightly above the double 0.3: a peak at threshold=0.3."""
    hm = np.full((1, 1, 1), 0.3, np.float32)
    peaks, _ = decode.find_peaks(hm, threshold=0.3, refine="none")
    assert len(peaks) == 1
    peaks, _ = decode.find_peaks(hm, threshold=float(np.float32(0.3)), refine="none")
    assert len(peaks) == 0


def test_threads_give_the_same_results():
    """The GIL is released and each thread has its own workspace: parallel calls agree."""
    from concurrent.futures import ThreadPoolExecutor

    scenes = [scene([(12 + 3 * i, 3, 30 + i), (44, 4 + i, 32)], 48, 60)[1:] for i in range(6)]
    want = [decode.decode_bottomup(hm, paf, LIMBS) for hm, paf in scenes]
    assert all(len(w[0]) == 2 for w in want)          # two people in every scene
    with ThreadPoolExecutor(4) as ex:
        for _ in range(3):
            got = list(ex.map(lambda s: decode.decode_bottomup(s[0], s[1], LIMBS), scenes * 4))
            for i, g in enumerate(got):
                np.testing.assert_array_equal(g[0], want[i % 6][0])
                np.testing.assert_array_equal(g[1], want[i % 6][1])


# --------------------------------------------------------------------------------------------
# layouts: HWC read in place == CHW on the transposed array, bit for bit
# --------------------------------------------------------------------------------------------
def hwc(a):
    """[..., C, H, W] -> C-contiguous [..., H, W, C]."""
    return np.ascontiguousarray(np.moveaxis(a, -3, -1))


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def tie_maps(rng, shape):
    """Maps full of ties and plateaus: a few levels, signed zeros, a blob or two."""
    levels = np.array([-0.0, 0.0, 0.05, 0.2, 0.2, 0.7, 1.0], np.float32)
    return levels[rng.integers(0, len(levels), shape)]


@pytest.mark.parametrize("C", [1, 3, 4, 5, 17, 18, 19])
@pytest.mark.parametrize("H,W", [(1, 1), (1, 9), (7, 1), (2, 3), (23, 31)])
def test_hwc_peaks_and_topdown_equal_chw(C, H, W):
    rng = np.random.default_rng(C * 1000 + H * 31 + W)
    for maps in (rng.standard_normal((2, C, H, W)).astype(np.float32),
                 tie_maps(rng, (2, C, H, W)),
                 np.stack([np.stack([blob(H, W, rng.uniform(-1, W), rng.uniform(-1, H), 1.3)
                                     for _ in range(C)]) for _ in range(2)])):
        maps = np.ascontiguousarray(maps, np.float32)
        for refine in decode.REFINES:
            for kernel in (1, 3, 5, 11):
                for thr in (-1.0, 0.1, 0.5):
                    assert_same(decode.find_peaks(maps[0], thr, 5, refine, kernel),
                                decode.find_peaks(hwc(maps[0]), thr, 5, refine, kernel, "HWC"))
                    assert_same(decode.find_peaks(maps, thr, 40, refine, kernel),
                                decode.find_peaks(hwc(maps), thr, 40, refine, kernel, "HWC"))
                assert_same(decode.decode_topdown(maps, refine, kernel),
                            decode.decode_topdown(hwc(maps), refine, kernel, "HWC"))


@pytest.mark.parametrize("matching", ["greedy", "hungarian"])
@pytest.mark.parametrize("refine", list(decode.REFINES))
def test_hwc_bottomup_equals_chw_on_scenes(refine, matching):
    rng = np.random.default_rng(7)
    for spots, H, W in (([(12, 3, 36), (40, 5, 32), (70, 2, 38)], 56, 84),
                        ([(22, 2, 44), (34, 12, 30), (52, 6, 36)], 56, 84),
                        ([(5, -3, 20), (20, 30, 30)], 46, 31)):       # people cut by the border
        _, hm, paf = scene(spots, H, W)
        hm = (hm + rng.normal(0, 0.05, hm.shape)).astype(np.float32)
        paf = (paf + rng.normal(0, 0.1, paf.shape)).astype(np.float32)
        opts = dict(refine=refine, matching=matching, dark_kernel=5, min_parts=2,
                    min_person_score=0.0, paf_score_threshold=0.02)
        want = decode.decode_bottomup(hm, paf, LIMBS, **opts)
        assert len(want[0]) >= 2
        assert_same(want, decode.decode_bottomup(hwc(hm), hwc(paf), LIMBS, layout="HWC", **opts))
        peaks, off = decode.find_peaks(hm, 0.1, 32, refine, 5)
        gopts = {k: v for k, v in opts.items() if k not in ("refine", "dark_kernel")}
        assert_same(want, decode.group_people(peaks, off, paf, LIMBS, **gopts))
        assert_same(want, decode.group_people(peaks, off, hwc(paf), LIMBS, layout="HWC", **gopts))


def test_hwc_bottomup_equals_chw_on_random_maps():
    """Noise maps: many peaks, arbitrary PAFs, limbs with repeated and shared channels."""
    rng = np.random.default_rng(3)
    limbs = np.array([(0, 1, 0, 1), (1, 2, 2, 3), (2, 0, 4, 5), (0, 0, 1, 0), (2, 1, 5, 5)])
    found = 0
    for H, W in ((9, 13), (1, 40), (30, 3)):
        for _ in range(5):
            hm = rng.uniform(-0.2, 1, (3, H, W)).astype(np.float32)
            paf = rng.uniform(-1, 1, (6, H, W)).astype(np.float32)
            for matching in ("greedy", "hungarian"):
                opts = dict(max_peaks=6, refine="dark", dark_kernel=3, paf_samples=4,
                            paf_score_threshold=-0.5, min_sample_fraction=0.3, min_parts=0,
                            min_person_score=-1.0, matching=matching)
                a = decode.decode_bottomup(hm, paf, limbs, **opts)
                assert_same(a, decode.decode_bottomup(hwc(hm), hwc(paf), limbs, layout="HWC", **opts))
                found += len(a[0])
    assert found > 30                       # people found: the comparisons are not vacuous


def test_hwc_batch_item_of_a_model_output_is_used_in_place():
    """``out[0]`` of a contiguous NHWC output is a contiguous HWC view: no copy needed."""
    people, hm, paf = scene([(12, 3, 36), (40, 5, 32)], 48, 60)
    out_hm = hwc(hm)[None]                                      # [1,H,W,18]
    out_paf = hwc(paf)[None]
    assert out_hm[0].flags["C_CONTIGUOUS"] and np.shares_memory(out_hm[0], out_hm)
    assert_same(decode.decode_bottomup(hm, paf, LIMBS),
                decode.decode_bottomup(out_hm[0], out_paf[0], LIMBS, layout="HWC"))


# --------------------------------------------------------------------------------------------
# output affine
# --------------------------------------------------------------------------------------------
def affine_ref(xy, a):
    """float64 affine rounded to float32 (the documented arithmetic)."""
    xy = np.asarray(xy, np.float64)
    return np.stack([a[0] * xy[..., 0] + a[1], a[2] * xy[..., 1] + a[3]], -1).astype(np.float32)


def test_bottomup_affine_maps_found_keypoints_and_keeps_missing_ones():
    people, hm, paf = scene([(20, 3, 36)], 48, 60)
    frag = np.zeros((1, K, 3))                          # a nose + neck fragment: 16 missing
    frag[0, 0] = (52, 20, 1)
    frag[0, 1] = (52, 26, 1)
    fhm, fpaf = reference.render_maps(frag, 48, 60, LIMBS, paf_width=1.5)
    hm, paf = np.maximum(hm, fhm), paf + fpaf
    opts = dict(min_parts=2, min_person_score=0.0)
    plain, s0 = decode.decode_bottomup(hm, paf, LIMBS, **opts)
    assert len(plain) == 2 and (plain[1, :, 2] == 0).sum() == K - 2
    a = (8.0 / 0.75, 4.5 / 0.75 - 0.5, -2.5, 1e3)       # includes a flip of y
    for lay, h, p in (("CHW", hm, paf), ("HWC", hwc(hm), hwc(paf))):
        got, s1 = decode.decode_bottomup(h, p, LIMBS, layout=lay, affine=a, **opts)
        np.testing.assert_array_equal(s1, s0)
        found = plain[..., 2] > 0
        np.testing.assert_array_equal(got[found][:, :2], affine_ref(plain[found][:, :2], a))
        np.testing.assert_array_equal(got[..., 2], plain[..., 2])
        np.testing.assert_array_equal(got[~found], np.tile(f32([-1, -1, 0]), ((~found).sum(), 1)))
    # group_people takes the same affine; identity affine == no affine, bit for bit
    peaks, off = decode.find_peaks(hm, 0.1, 32, "dark", 5)
    np.testing.assert_array_equal(
        decode.group_people(peaks, off, paf, LIMBS, affine=np.array(a), **opts)[0],
        decode.decode_bottomup(hm, paf, LIMBS, affine=a, **opts)[0])
    assert_same(decode.decode_bottomup(hm, paf, LIMBS, affine=(1, 0, 1, 0), **opts), (plain, s0))


def test_topdown_affine_one_or_one_per_item():
    rng = np.random.default_rng(5)
    hm = rng.random((3, 4, 16, 12), dtype=np.float32)
    c0, s0 = decode.decode_topdown(hm)
    a = (0.5, 10.0, 2.0, -3.0)
    c1, s1 = decode.decode_topdown(hm, affine=a)
    np.testing.assert_array_equal(c1, affine_ref(c0, a))
    np.testing.assert_array_equal(s1, s0)
    rows = rng.uniform(-5, 5, (3, 4))
    c2, _ = decode.decode_topdown(hwc(hm), layout="HWC", affine=rows)
    for n in range(3):
        np.testing.assert_array_equal(c2[n], affine_ref(c0[n], rows[n]))
    c, s = decode.decode_topdown(np.zeros((0, 17, 8, 6), np.float32), affine=np.zeros((0, 4)))
    assert c.shape == (0, 17, 2)


@pytest.mark.parametrize("bad", [(1, 0, 1), (1, 0, 1, 0, 5), (1, float("nan"), 1, 0),
                                 (1, 0, float("inf"), 0), "1234", ("1", "0", "1", "0"),
                                 (1, None, 1, 0), [[1, 0, 1, 0], [1, 0, 1, 0]], 3.0,
                                 {"sx": 1}, (True, False, True, False), (1j, 0, 1, 0)])
def test_bad_affine_is_one_line_decode_error(bad):
    people, hm, paf = scene([(20, 3, 36)], 48, 40)
    calls = [lambda: decode.decode_bottomup(hm, paf, LIMBS, affine=bad),
             lambda: decode.decode_topdown(hm[None], affine=bad)]
    if np.ndim(bad) == 2:              # [2,4] is fine for a batch of two, not for one
        calls = calls[:1]
    for call in calls:
        with pytest.raises(decode.DecodeError) as ei:
            call()
        assert "affine" in str(ei.value) and "\n" not in str(ei.value)


# --------------------------------------------------------------------------------------------
# layout validation
# --------------------------------------------------------------------------------------------
HM_HWC = np.zeros((8, 8, 18), np.float32)
PAF_HWC = np.zeros((8, 8, 38), np.float32)


@pytest.mark.parametrize("call,words", [
    (lambda: decode.find_peaks(HM, layout="NHWC"), "layout"),
    (lambda: decode.find_peaks(HM, layout=None), "layout"),
    (lambda: decode.find_peaks(HM, layout=np.array(["CHW", "HWC"])), "layout"),
    (lambda: decode.decode_topdown(HM[None], layout="hwc"), "layout"),
    (lambda: decode.decode_bottomup(HM, PAF, LIMBS, layout=3), "layout"),
    (lambda: decode.group_people(np.zeros((0, 3), np.float32), np.zeros(19, np.int64), PAF,
                                 LIMBS, layout=""), "layout"),
    (lambda: decode.find_peaks(HM_HWC[0], layout="HWC"), "dimensions"),
    (lambda: decode.decode_topdown(HM_HWC, layout="HWC"), "dimensions"),
    (lambda: decode.decode_bottomup(HM_HWC[None], PAF_HWC[None], LIMBS, layout="HWC"),
     "dimensions"),
    (lambda: decode.decode_bottomup(HM_HWC, np.zeros((8, 7, 38), np.float32), LIMBS,
                                    layout="HWC"), "differ"),
    (lambda: decode.decode_bottomup(HM, np.zeros((38, 8, 8), np.float32), LIMBS,
                                    layout="HWC"), "differ"),     # CHW arrays read as HWC
    (lambda: decode.decode_bottomup(HM_HWC, np.zeros((8, 8, 36), np.float32), LIMBS,
                                    layout="HWC"), "PAF channel"),
    (lambda: decode.decode_bottomup(np.zeros((8, 8, 17), np.float32), PAF_HWC, LIMBS,
                                    layout="HWC"), "part index"),
    (lambda: decode.decode_bottomup(HM.transpose(1, 2, 0), PAF_HWC, LIMBS, layout="HWC"),
     "contiguous"),
    (lambda: decode.decode_bottomup(HM_HWC, nan_at(PAF_HWC, (7, 7, 37)), LIMBS, layout="HWC"),
     "NaN"),
    (lambda: decode.find_peaks(nan_at(HM_HWC, (0, 0, 5), np.inf), layout="HWC"), "channel 5"),
    (lambda: decode.find_peaks(nan_at(HM_HWC[None].repeat(2, 0), (1, 3, 3, 2)), layout="HWC"),
     "channel 20"),
    (lambda: decode.decode_topdown(nan_at(HM_HWC[None], (0, 7, 7, 17)), layout="HWC"), "NaN"),
    (lambda: decode.find_peaks(np.zeros((4, 0, 3), np.float32), layout="HWC"), "empty"),
])
def test_bad_layout_input_raises_one_line_decode_error(call, words):
    with pytest.raises(EdgeposeError) as ei:
        call()
    assert isinstance(ei.value, (decode.DecodeError, decode.DecodeTypeError))
    assert words in str(ei.value) and "\n" not in str(ei.value), str(ei.value)


def test_numpy_fallback_takes_layouts_and_affine(monkeypatch):
    people, hm, paf = scene([(12, 3, 36), (40, 5, 32)], 48, 60)
    a = (8.0, 3.5, 8.0, 3.5)
    rng = np.random.default_rng(0)
    td = rng.random((2, 5, 12, 10), dtype=np.float32)
    rows = rng.uniform(1, 2, (2, 4))
    want_bu = decode.decode_bottomup(hm, paf, LIMBS, affine=a, min_parts=2)
    want_fp = decode.find_peaks(hm[None], refine="dark")
    want_td = decode.decode_topdown(td, affine=rows)
    monkeypatch.setattr(decode, "_ext", None)
    monkeypatch.setattr(decode, "_warned_fallback", [True])
    got = decode.decode_bottomup(hwc(hm), hwc(paf), LIMBS, layout="HWC", affine=a, min_parts=2)
    assert got[0].shape == want_bu[0].shape
    np.testing.assert_allclose(got[0], want_bu[0], atol=1e-3)
    missing = want_bu[0][..., 2] == 0
    np.testing.assert_array_equal(got[0][missing], want_bu[0][missing])
    got = decode.find_peaks(hwc(hm[None]), refine="dark", layout="HWC")
    np.testing.assert_array_equal(got[1], want_fp[1])
    np.testing.assert_allclose(got[0], want_fp[0], atol=1e-4)
    got = decode.decode_topdown(hwc(td), layout="HWC", affine=rows)
    np.testing.assert_allclose(got[0], want_td[0], atol=1e-3)
    with pytest.raises(decode.DecodeError, match="affine"):
        decode.decode_bottomup(hm, paf, LIMBS, affine=(1, 2, 3))
    with pytest.raises(decode.DecodeError, match="layout"):
        decode.find_peaks(hm, layout="NCHW")
    with pytest.raises(decode.DecodeError, match="PAF channel"):
        decode.decode_bottomup(hwc(hm), hwc(paf[:30]), LIMBS, layout="HWC")


def misaligned(a):
    """A C-contiguous copy of ``a`` whose data starts one byte into a buffer: not aligned."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    b = np.frombuffer(buf.data, np.uint8, a.nbytes, 1).view(a.dtype).reshape(a.shape)
    b[...] = a
    assert b.flags["C_CONTIGUOUS"] and not b.flags["ALIGNED"]
    return b


@pytest.mark.parametrize("fallback", [False, True])
def test_misaligned_arrays_are_refused_and_limbs_are_realigned(fallback, monkeypatch):
    """Reading a misaligned float32 buffer is undefined behaviour in C++ (UBSan: "load of
    misaligned address"): refused with a one-line error; a misaligned limb table is copied."""
    if fallback:
        monkeypatch.setattr(decode, "_ext", None)
        monkeypatch.setattr(decode, "_warned_fallback", [True])
    people, hm, paf = scene([(20, 3, 36)], 48, 40)
    for call in (lambda: decode.find_peaks(misaligned(hm)),
                 lambda: decode.decode_topdown(misaligned(hm[None]), layout="CHW"),
                 lambda: decode.decode_bottomup(hm, misaligned(hwc(paf)), LIMBS, layout="HWC"),
                 lambda: decode.group_people(misaligned(np.zeros((1, 3), np.float32)),
                                             np.array([0] + [1] * 18), paf, LIMBS)):
        with pytest.raises(decode.DecodeError, match="must be aligned") as ei:
            call()
        assert "\n" not in str(ei.value)
    want = decode.decode_bottomup(hm, paf, LIMBS)
    assert_same(want, decode.decode_bottomup(hm, paf, misaligned(LIMBS)))


def test_option_strings_in_errors_are_one_line():
    for kw in ({"layout": "HWC\nCHW"}, {"refine": "dark\nx"}, {"matching": "greedy\r\n"}):
        with pytest.raises(decode.DecodeError) as ei:
            decode.decode_bottomup(HM, PAF, LIMBS, **kw)
        assert "\n" not in str(ei.value) and "\r" not in str(ei.value)


def test_huge_negative_min_sample_fraction_keeps_connections():
    """Any finite fraction is well defined: -1e300 means every sample count passes, as -1 does
    (the extension used to convert floor(fraction * samples) to int: undefined behaviour,
    UBSan's float-cast-overflow, that dropped every connection below about -2.1e8)."""
    people, hm, paf = scene([(20, 3, 36)], 48, 40)
    opts = dict(refine="quarter", min_parts=0, min_person_score=0.0)
    want = decode.decode_bottomup(hm, paf, LIMBS, min_sample_fraction=-1.0, **opts)
    assert len(want[0]) == 1
    for frac in (-1e300, -3e9):
        assert_same(want, decode.decode_bottomup(hm, paf, LIMBS, min_sample_fraction=frac, **opts))
    assert len(decode.decode_bottomup(hm, paf, LIMBS, min_sample_fraction=1e300, **opts)[0]) == 0


def test_arrays_from_pickle_or_another_process_are_accepted():
    """dtypes are compared by value: an array unpickled (Ray, multiprocessing) carries its own
    float32 dtype object and decodes exactly like the original; another byte order is refused."""
    import pickle

    hm = np.zeros((2, 12, 16), np.float32)
    hm[0, 4, 5], hm[1, 7, 9] = 0.9, 0.6
    back = pickle.loads(pickle.dumps(hm))
    a, b = decode.find_peaks(hm, threshold=0.1), decode.find_peaks(back, threshold=0.1)
    assert all((x == y).all() for x, y in zip(a, b)) and len(a[0]) == 2
    with pytest.raises(EdgeposeError, match="must be float32"):
        decode.find_peaks(hm.astype(">f4"), threshold=0.1)
