"""edgepose.decode on constructed inputs: tie rule, ordering, sub-pixel accuracy, exact grouping,
person score, filters and bad-input errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgepose import decode, reference
from edgepose.errors import EdgeposeError
from edgepose.schema import CMU18_LIMBS

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


class _Recorder:
    """The messages the 'edgepose' logger emits while inside (a handler of its own)."""

    def __enter__(self):
        import logging
        self.messages = []
        rec = self

        class H(logging.Handler):
            def emit(self, record):
                rec.messages.append(record.getMessage())

        self.h, self.log = H(logging.WARNING), logging.getLogger("edgepose")
        self.log.addHandler(self.h)
        return self

    def __exit__(self, *exc):
        self.log.removeHandler(self.h)


def test_numpy_fallback_without_extension(monkeypatch):
    """Without the compiled core the same API runs the reference, with the same errors, and
    says so once."""
    people, hm, paf = scene([(12, 3, 36), (40, 5, 32)], 48, 60)
    want = decode.decode_bottomup(hm, paf, LIMBS)
    want_td = decode.decode_topdown(hm[None, :4])
    monkeypatch.setattr(decode, "_ext", None)
    monkeypatch.setattr(decode, "_warned_fallback", [])
    assert not decode.has_extension()
    with _Recorder() as rec:
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
    with ThreadPoolExecutor(4) as ex:
        for _ in range(3):
            got = list(ex.map(lambda s: decode.decode_bottomup(s[0], s[1], LIMBS), scenes * 4))
            for i, g in enumerate(got):
                np.testing.assert_array_equal(g[0], want[i % 6][0])
                np.testing.assert_array_equal(g[1], want[i % 6][1])
