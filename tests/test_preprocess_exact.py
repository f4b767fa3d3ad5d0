"""The bit-exact resampling behind edgepose.preprocess (resize_exact, warp_exact): integer
arithmetic only, so a model gets the same input bytes on x86 and ARM (OpenCV's INTER_LINEAR /
INTER_AREA resize and its float warpAffine differ between those builds). The cross-machine
comparison itself is scripts/rpi_emulated.sh; here: exact values on constructed images, the C++
kernel against its numpy twin byte for byte, and fidelity to the OpenCV modes replaced."""
import cv2
import numpy as np
import pytest

from edgepose import preprocess as pp


def _scene(h, w, seed=0, channels=3):
    """A photo-like image: smooth colour blobs, edges and noise."""
    rs = np.random.RandomState(seed)
    small = rs.randint(0, 256, (max(2, h // 24), max(2, w // 24), channels)).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
    img = np.clip(img.astype(np.int16) + rs.randint(-20, 21, img.shape), 0, 255).astype(np.uint8)
    img[h // 3: h // 3 + 3] = 255                                # a hard edge
    return img


def test_area_shrink_exact_values():
    # 2x2 blocks -> their means, halves rounded up; 3 -> 2 columns: weights 2/3, 1/3
    img = np.array([[0, 1, 10, 30], [2, 3, 20, 41]], np.uint8)
    assert pp.resize_exact(img, (2, 1)).tolist() == [[2, 25]]      # 1.5 -> 2, 25.25 -> 25
    row = np.array([[0, 90, 180]], np.uint8)
    assert pp.resize_exact(row, (2, 1)).tolist() == [[30, 150]]    # (2*0+90)/3, (90+2*180)/3
    flat = np.full((37, 53, 3), 77, np.uint8)
    assert np.all(pp.resize_exact(flat, (11, 5)) == 77)           # weights sum to exactly 1


@pytest.mark.parametrize("src,dst", [((429, 640), (368, 549)), ((429, 640), (214, 320)), ((480, 640), (96, 128)),
                                     ((1080, 1920), (368, 654)), ((101, 77), (1, 1)), ((2, 640), (1, 3)),
                                     ((500, 501), (499, 500)), ((64, 48), (64, 47))])
def test_area_shrink_cpp_equals_numpy_and_cv2_area(src, dst):
    if not pp._area_resize_ext:
        pytest.skip("the C++ extension is not built")
    for ch in (3, 1):
        img = _scene(src[0], src[1], seed=src[0] + ch, channels=ch)
        if ch == 1:
            img = img[..., 0]
        a = pp._area_exact(img, dst[1], dst[0])
        b = pp._area_exact(img, dst[1], dst[0], use_ext=False)
        assert a.shape == b.shape == (dst[0], dst[1]) + img.shape[2:] and a.dtype == np.uint8
        assert np.array_equal(a, b)
        ref = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_AREA).reshape(a.shape)
        d = np.abs(a.astype(np.int16) - ref)
        assert d.max() <= 1
        # model-sized shrinks: under 1 % of values off by one; near-1 scales and extremes: 5 %
        model_sized = 1.1 <= min(src[0] / dst[0], src[1] / dst[1]) <= 10
        if d.size >= 100:
            assert np.count_nonzero(d) <= (0.01 if model_sized else 0.05) * d.size


def test_area_taps_sum_to_one_and_are_nonnegative():
    for n_in in (2, 3, 7, 100, 427, 640, 1080, 1920, 4000):
        for n_out in sorted({min(n_in, v) for v in (1, 2, 3, n_in // 7 or 1, n_in // 3 or 1, n_in // 2 or 1,
                                                     n_in - 1, n_in)}):
            idx, w = pp._area_taps(n_in, n_out)
            assert np.all(w >= 0) and np.all(w.sum(axis=1) == 1 << pp._AREA_BITS)
            assert idx.min() >= 0 and idx.max() < n_in
            # each output averages its own footprint, centred at (j + 0.5) * s - 0.5 (the pixel
            # centres' weighted mean departs from it by under a quarter pixel at partial edges)
            s = n_in / float(n_out)
            centre = (idx * w).sum(axis=1) / float(1 << pp._AREA_BITS)
            assert np.abs(centre - ((np.arange(n_out) + 0.5) * s - 0.5)).max() <= 0.25


def test_enlarging_is_opencv_linear_exact():
    img = _scene(214, 320, seed=3)
    out = pp.resize_exact(img, (551, 368))
    assert np.array_equal(out, cv2.resize(img, (551, 368), interpolation=cv2.INTER_LINEAR_EXACT))
    assert np.array_equal(pp.resize_exact(img, (320, 214)), img)   # same size: a copy


def test_warp_exact_exact_cases():
    img = _scene(60, 80, seed=5)
    ident = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert np.array_equal(pp.warp_exact(img, ident, (80, 60)), img)
    # whole-pixel shift: the image moves, the border is black
    shift = np.array([[1.0, 0, 7], [0, 1.0, -4]])
    out = pp.warp_exact(img, shift, (80, 60))
    assert np.array_equal(out[:56, 7:], img[4:, :73])
    assert np.all(out[:, :7] == 0) and np.all(out[56:] == 0)
    # a linear ramp is reproduced by bilinear interpolation: value = 3 * source x (to 1/32 px)
    ramp = np.tile((3 * np.arange(80)).astype(np.uint8)[None, :, None], (10, 1, 3))
    m = np.array([[1.37, 0, -4.2], [0, 1.0, 0]])
    out = pp.warp_exact(ramp, m, (60, 10)).astype(np.float64)
    xs = (np.arange(60) + 4.2) / 1.37
    inside = xs <= 79
    assert np.abs(out[0, inside, 0] - 3 * xs[inside]).max() <= 3 / 32.0 + 0.5


def test_warp_exact_axis_aligned_path_equals_general_path():
    img = _scene(200, 300, seed=7)
    c, s = pp.box_to_center_size([40.3, 20.7, 90.1, 150.2], 192 / 256.0, 1.25)
    m = pp.crop_matrix(c, s, (192, 256))
    a = pp.warp_exact(img, m, (192, 256))
    tilted = m.copy()
    tilted[0, 1] = 1e-300                          # forces the 2-D (rotated) path; same geometry
    assert np.array_equal(a, pp.warp_exact(img, tilted, (192, 256)))
    # and it is OpenCV's bilinear crop up to coordinate rounding to 1/32 px
    ref = cv2.warpAffine(img, m, (192, 256), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    d = np.abs(a.astype(np.int16) - ref)
    assert np.percentile(d, 99) <= 2 and d.mean() < 0.2


def test_preprocessing_uses_the_exact_modes():
    class Meta:
        stride = 8
        input = {"layout": "NHWC", "channel_order": "BGR", "mean": [0.0] * 3, "std": [1.0] * 3,
                 "height": 256, "width": 352, "dynamic_hw": False}

        def get(self, key, default=None):
            return default

    big, small = _scene(429, 640, seed=11), _scene(100, 150, seed=12)
    x, tr = pp.preprocess_bottomup(big, Meta())
    rh = int(round(429 * min(256 / 429.0, 352 / 640.0)))
    rw = int(round(640 * min(256 / 429.0, 352 / 640.0)))
    assert np.array_equal(x[0, :rh, :rw].astype(np.uint8), pp._area_exact(big, rw, rh))
    x, _ = pp.preprocess_bottomup(small, Meta())
    s = min(256 / 100.0, 352 / 150.0)
    rh, rw = int(round(100 * s)), int(round(150 * s))
    assert np.array_equal(x[0, :rh, :rw].astype(np.uint8),
                          cv2.resize(small, (rw, rh), interpolation=cv2.INTER_LINEAR_EXACT))
    Meta.input = dict(Meta.input, height=256, width=192)
    batch, mats = pp.preprocess_topdown(big, np.array([[100.5, 50.2, 120.0, 300.7]]), Meta())
    assert np.array_equal(batch[0].astype(np.uint8), pp.warp_exact(big, mats[0], (192, 256)))
