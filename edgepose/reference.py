"""Plain numpy reference of every post-processing algorithm in the C++ extension.

Readable and slow on purpose: the property tests compare ``edgepose._ext`` with these functions,
and the benchmark reports how much faster the extension is. The behaviour documented in
:mod:`edgepose.decode` (tie rule, refinements, connection scores, person score) is defined here
in the plainest form; the extension must give the same results up to float rounding.

Inputs are assumed valid (``edgepose.decode`` validates before calling the extension).
"""
import math
from typing import List, Sequence, Tuple

import numpy as np

REFINES = ("none", "quarter", "dark", "centroid")   # the one list: decode, pipelines and the CLI use it
DARK_LOG_FLOOR = 1e-10


# ----------------------------------------------------------------------------------------------
# peaks
# ----------------------------------------------------------------------------------------------
def peak_mask(hm: np.ndarray, threshold: float) -> np.ndarray:
    """Local maxima of one ``[H, W]`` map above ``threshold`` (strictly).

    Tie rule: a pixel is a peak when it is strictly greater than its 8-neighbours that come
    before it in row-major scan order (W, NW, N, NE) and greater or equal to those after it
    (E, SW, S, SE); outside the map counts as -inf. A plateau therefore yields its first pixel
    in scan order.
    """
    h = np.asarray(hm, np.float64)
    H, W = h.shape
    p = np.full((H + 2, W + 2), -np.inf)
    p[1:-1, 1:-1] = h
    c = p[1:-1, 1:-1]

    def nb(dy, dx):
        return p[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]

    m = c > threshold
    for dy, dx in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):  # before in scan order
        m &= c > nb(dy, dx)
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):      # after in scan order
        m &= c >= nb(dy, dx)
    return m


def gaussian_kernel(ksize: int) -> np.ndarray:
    """OpenCV's ``getGaussianKernel(ksize, 0)``: sigma = 0.3*((ksize-1)/2 - 1) + 0.8."""
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1.0) + 0.8
    r = (ksize - 1) // 2
    g = np.exp(-(np.arange(-r, r + 1, dtype=np.float64) ** 2) / (2.0 * sigma * sigma))
    return g / g.sum()


def blur_zero_padded(hm: np.ndarray, ksize: int) -> np.ndarray:
    """Separable Gaussian blur of a whole map, zero outside the map (as DARK pads with zeros)."""
    g = gaussian_kernel(ksize)
    r = (ksize - 1) // 2
    h = np.asarray(hm, np.float64)
    H, W = h.shape
    p = np.zeros((H + 2 * r, W + 2 * r))
    p[r:r + H, r:r + W] = h
    rows = sum(g[i] * p[:, i:i + W] for i in range(ksize))       # [H + 2r, W]
    return sum(g[i] * rows[i:i + H, :] for i in range(ksize))    # [H, W]


def refine_point(hm: np.ndarray, x: int, y: int, method: str, dark_kernel: int = 11,
                 blurred_log: np.ndarray = None) -> Tuple[float, float]:
    """Sub-pixel position of the integer peak ``(x, y)`` of ``hm`` ``[H, W]``.

    - ``none``: the pixel centre.
    - ``quarter``: 0.25 px towards the higher horizontal / vertical neighbour (per axis, only
      where both neighbours exist; no shift on equal neighbours).
    - ``dark``: DARK (Zhang et al. 2020): blur with a ``dark_kernel`` Gaussian (zero padding),
      take ``log(max(b, 1e-10))`` and step ``-H^-1 g`` (central differences; second derivatives
      over 2 px as in the paper / mmpose). Needs the 5x5 window inside the map and a negative
      definite Hessian, otherwise falls back to ``quarter``. The step is clipped to [-1, 1].
    - ``centroid``: mean position over the 3x3 window (clipped to the map) weighted by
      ``max(value, 0)``.
    """
    H, W = hm.shape
    fx, fy = float(x), float(y)
    if method == "none":
        return fx, fy
    if method == "centroid":
        sw = sx = sy = 0.0
        for yy in range(max(0, y - 1), min(H, y + 2)):
            for xx in range(max(0, x - 1), min(W, x + 2)):
                w = max(float(hm[yy, xx]), 0.0)
                sw += w
                sx += w * xx
                sy += w * yy
        if sw > 0:
            return sx / sw, sy / sw
        return fx, fy
    if method == "dark":
        if 2 <= x <= W - 3 and 2 <= y <= H - 3:
            L = blurred_log
            if L is None:
                L = np.log(np.maximum(blur_zero_padded(hm, dark_kernel), DARK_LOG_FLOOR))
            dx = 0.5 * (L[y, x + 1] - L[y, x - 1])
            dy = 0.5 * (L[y + 1, x] - L[y - 1, x])
            dxx = 0.25 * (L[y, x + 2] - 2 * L[y, x] + L[y, x - 2])
            dyy = 0.25 * (L[y + 2, x] - 2 * L[y, x] + L[y - 2, x])
            dxy = 0.25 * (L[y + 1, x + 1] - L[y - 1, x + 1] - L[y + 1, x - 1] + L[y - 1, x - 1])
            det = dxx * dyy - dxy * dxy
            if dxx < 0 and det > 0:
                ox = -(dyy * dx - dxy * dy) / det
                oy = -(-dxy * dx + dxx * dy) / det
                ox = min(max(ox, -1.0), 1.0)
                oy = min(max(oy, -1.0), 1.0)
                return fx + ox, fy + oy
        method = "quarter"
    if method == "quarter":
        if 1 <= x <= W - 2:
            d = float(hm[y, x + 1]) - float(hm[y, x - 1])
            fx += 0.25 * (d > 0) - 0.25 * (d < 0)
        if 1 <= y <= H - 2:
            d = float(hm[y + 1, x]) - float(hm[y - 1, x])
            fy += 0.25 * (d > 0) - 0.25 * (d < 0)
        return fx, fy
    raise ValueError("unknown refine %r" % (method,))


def find_peaks(heatmaps: np.ndarray, threshold: float = 0.1, max_peaks: int = 32,
               refine: str = "quarter", dark_kernel: int = 11) -> Tuple[np.ndarray, np.ndarray]:
    """Peaks of ``[C,H,W]`` or ``[N,C,H,W]`` maps → (peaks ``[M,3]`` (x, y, score), CSR offsets).

    Per map: the local maxima above ``threshold``, best first (ties: scan order), refined; a peak
    whose refined (float32) position equals a stronger one's is dropped as the same detection (two
    DARK steps clipped onto one pixel do this), and the next is taken, up to ``max_peaks``.
    """
    hms = np.asarray(heatmaps, np.float32)
    maps = hms.reshape(-1, hms.shape[-2], hms.shape[-1])
    rows: List[Tuple[float, float, float]] = []
    offsets = [0]
    for hm in maps:
        ys, xs = np.nonzero(peak_mask(hm, threshold))          # row-major scan order
        scores = hm[ys, xs].astype(np.float64)
        order = np.argsort(-scores, kind="stable")
        L = None
        if refine == "dark" and len(order) and max_peaks > 0:
            L = np.log(np.maximum(blur_zero_padded(hm, dark_kernel), DARK_LOG_FLOOR))
        seen = set()
        for i in order:
            if len(seen) >= max_peaks:
                break
            fx, fy = refine_point(hm, int(xs[i]), int(ys[i]), refine, dark_kernel, L)
            at = (np.float32(fx), np.float32(fy))
            if at in seen:        # refined onto a stronger peak's position: the same detection
                continue
            seen.add(at)
            rows.append((fx, fy, float(hm[ys[i], xs[i]])))
        offsets.append(len(rows))
    return np.array(rows, np.float32).reshape(-1, 3), np.array(offsets, np.int64)


def decode_topdown(heatmaps: np.ndarray, refine: str = "dark", dark_kernel: int = 11
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """``[N,K,H,W]`` → (coords ``[N,K,2]``, scores ``[N,K]``): argmax (first in scan order on
    ties), its value as score, then the refinement."""
    hms = np.asarray(heatmaps, np.float32)
    N, K, H, W = hms.shape
    coords = np.zeros((N, K, 2), np.float32)
    scores = np.zeros((N, K), np.float32)
    for n in range(N):
        for k in range(K):
            hm = hms[n, k]
            i = int(np.argmax(hm))
            y, x = divmod(i, W)
            coords[n, k] = refine_point(hm, x, y, refine, dark_kernel)
            scores[n, k] = hm[y, x]
    return coords, scores


# ----------------------------------------------------------------------------------------------
# PAF grouping
# ----------------------------------------------------------------------------------------------
def bilinear(m: np.ndarray, x: float, y: float) -> float:
    """Bilinear sample of ``m`` ``[H, W]`` at continuous ``(x, y)`` (clamped to the map)."""
    H, W = m.shape
    x = min(max(x, 0.0), W - 1.0)
    y = min(max(y, 0.0), H - 1.0)
    x0 = int(math.floor(x))
    y0 = int(math.floor(y))
    x1 = min(x0 + 1, W - 1)
    y1 = min(y0 + 1, H - 1)
    ax = x - x0
    ay = y - y0
    top = (1.0 - ax) * float(m[y0, x0]) + ax * float(m[y0, x1])
    bot = (1.0 - ax) * float(m[y1, x0]) + ax * float(m[y1, x1])
    return (1.0 - ay) * top + ay * bot


def connection_score(a: Sequence[float], b: Sequence[float], paf_x: np.ndarray, paf_y: np.ndarray,
                     paf_samples: int, paf_score_threshold: float, min_sample_fraction: float):
    """Score of the candidate limb a → b, or None when it is not a valid connection.

    The PAF is sampled bilinearly at ``paf_samples`` evenly spaced points from a to b
    (endpoints included; one sample = the midpoint) and projected on the unit vector a → b.
    Valid when more than ``min_sample_fraction * paf_samples`` projections exceed
    ``paf_score_threshold`` and the score is positive. The score is the mean projection plus
    OpenPose's length prior ``min(0.5 * map_height / length - 1, 0)``.
    """
    ax, ay = float(a[0]), float(a[1])
    dx, dy = float(b[0]) - ax, float(b[1]) - ay
    norm = math.sqrt(dx * dx + dy * dy)
    if norm < 1e-6:
        return None
    ux, uy = dx / norm, dy / norm
    S = int(paf_samples)
    total = 0.0
    count = 0
    for s in range(S):
        t = s / (S - 1.0) if S > 1 else 0.5
        px, py = ax + t * dx, ay + t * dy
        v = bilinear(paf_x, px, py) * ux + bilinear(paf_y, px, py) * uy
        total += v
        count += v > paf_score_threshold
    score = total / S + min(0.5 * paf_x.shape[0] / norm - 1.0, 0.0)
    if count > min_sample_fraction * S and score > 0:
        return score
    return None


def _match(cands: List[Tuple[float, int, int]], matching: str) -> List[Tuple[float, int, int]]:
    """Pick connections with each peak used at most once per limb.

    greedy: by score descending (ties: candidate order, a-major), as OpenPose does.
    hungarian: the matching with the largest total score (scipy's linear_sum_assignment).
    Either way the result is listed by score descending.
    """
    if not cands:
        return []
    if matching == "greedy":
        order = sorted(range(len(cands)), key=lambda i: -cands[i][0])
        used_a, used_b, out = set(), set(), []
        for i in order:
            s, a, b = cands[i]
            if a in used_a or b in used_b:
                continue
            used_a.add(a)
            used_b.add(b)
            out.append(cands[i])
        return out
    from scipy.optimize import linear_sum_assignment

    As = sorted({c[1] for c in cands})
    Bs = sorted({c[2] for c in cands})
    ia = {a: i for i, a in enumerate(As)}
    ib = {b: i for i, b in enumerate(Bs)}
    M = np.zeros((len(As), len(Bs)))
    for s, a, b in cands:
        M[ia[a], ib[b]] = s
    r, c = linear_sum_assignment(M, maximize=True)
    out = [(M[i, j], As[i], Bs[j]) for i, j in zip(r, c) if M[i, j] > 0]
    order = sorted(range(len(out)), key=lambda i: -out[i][0])
    return [out[i] for i in order]


def group_people(peaks: np.ndarray, offsets: np.ndarray, pafs: np.ndarray, limbs,
                 num_keypoints: int = None, paf_samples: int = 10,
                 paf_score_threshold: float = 0.05, min_sample_fraction: float = 0.8,
                 min_parts: int = 3, min_person_score: float = 0.2, matching: str = "greedy",
                 affine=None) -> Tuple[np.ndarray, np.ndarray]:
    """Assemble people from peaks (CSR per keypoint type) and PAFs; see edgepose.decode.

    ``affine``: optional ``(sx, bx, sy, by)``; a found keypoint's (x, y) becomes
    ``(sx * x + bx, sy * y + by)`` (float64, rounded to float32); missing ones stay (-1, -1, 0).
    """
    peaks = np.asarray(peaks, np.float32)
    offsets = np.asarray(offsets, np.int64)
    K = len(offsets) - 1 if num_keypoints is None else int(num_keypoints)
    people: List[dict] = []          # parts: keypoint type -> global peak index
    owner = {}                        # global peak index -> person index
    for pa, pb, cx, cy in np.asarray(limbs, np.int64).reshape(-1, 4):
        cands = []
        for i in range(offsets[pa], offsets[pa + 1]):
            for j in range(offsets[pb], offsets[pb + 1]):
                s = connection_score(peaks[i], peaks[j], pafs[cx], pafs[cy], paf_samples,
                                     paf_score_threshold, min_sample_fraction)
                if s is not None:
                    cands.append((s, int(i), int(j)))
        for s, i, j in _match(cands, matching):
            P = owner.get(i, -1)
            Q = owner.get(j, -1)
            if P < 0 and Q < 0:
                owner[i] = owner[j] = len(people)
                people.append({"parts": {int(pa): i, int(pb): j}, "conn": s, "nconn": 1,
                               "alive": True})
            elif P >= 0 and Q < 0:
                if pb not in people[P]["parts"]:
                    people[P]["parts"][int(pb)] = j
                    people[P]["conn"] += s
                    people[P]["nconn"] += 1
                    owner[j] = P
            elif P < 0 and Q >= 0:
                if pa not in people[Q]["parts"]:
                    people[Q]["parts"][int(pa)] = i
                    people[Q]["conn"] += s
                    people[Q]["nconn"] += 1
                    owner[i] = Q
            elif P == Q:
                people[P]["conn"] += s
                people[P]["nconn"] += 1
            else:
                keep, drop = min(P, Q), max(P, Q)
                if not set(people[keep]["parts"]) & set(people[drop]["parts"]):
                    people[keep]["parts"].update(people[drop]["parts"])
                    people[keep]["conn"] += people[drop]["conn"] + s
                    people[keep]["nconn"] += people[drop]["nconn"] + 1
                    for idx in people[drop]["parts"].values():
                        owner[idx] = keep
                    people[drop]["alive"] = False
    out, scores = [], []
    for p in people:
        if not p["alive"]:
            continue
        n = len(p["parts"])
        if n < min_parts:
            continue
        score = person_score(sum(float(peaks[i, 2]) for i in p["parts"].values()), n,
                             p["conn"], p["nconn"], K)
        if score < min_person_score:
            continue
        kp = np.tile(np.array([-1.0, -1.0, 0.0], np.float32), (K, 1))
        for k, i in p["parts"].items():
            kp[k] = peaks[i]
            if affine is not None:
                sx, bx, sy, by = (float(v) for v in affine)
                kp[k, 0] = sx * float(peaks[i, 0]) + bx
                kp[k, 1] = sy * float(peaks[i, 1]) + by
        out.append(kp)
        scores.append(score)
    order = np.argsort(-np.array(scores, np.float64), kind="stable")
    people_arr = np.array([out[i] for i in order], np.float32).reshape(-1, K, 3)
    return people_arr, np.array([scores[i] for i in order], np.float32)


def person_score(kp_sum: float, n_parts: int, conn_sum: float, n_conn: int, K: int) -> float:
    """Person score: quality x sqrt(completeness).

    quality = the mean of the person's keypoint scores and connection scores,
    ``(kp_sum + conn_sum) / (n_parts + n_conn)`` (what OpenPose filters on);
    completeness = ``n_parts / K``. A complete, confident person scores about 1; a confident
    3-keypoint fragment of an 18-keypoint schema about 0.4 of that.
    """
    return (kp_sum + conn_sum) / float(n_parts + n_conn) * math.sqrt(n_parts / float(K))


def decode_bottomup(heatmaps: np.ndarray, pafs: np.ndarray, limbs, refine: str = "dark",
                    peak_threshold: float = 0.1, max_peaks: int = 32, paf_samples: int = 10,
                    paf_score_threshold: float = 0.05, min_sample_fraction: float = 0.8,
                    min_parts: int = 3, min_person_score: float = 0.2, matching: str = "greedy",
                    dark_kernel: int = 5) -> Tuple[np.ndarray, np.ndarray]:
    peaks, offsets = find_peaks(heatmaps, peak_threshold, max_peaks, refine, dark_kernel)
    return group_people(peaks, offsets, pafs, limbs, None, paf_samples, paf_score_threshold,
                        min_sample_fraction, min_parts, min_person_score, matching)


# ----------------------------------------------------------------------------------------------
# synthetic maps (tests, benchmarks): OpenPose's ground-truth rendering
# ----------------------------------------------------------------------------------------------
# A standing CMU-18 person facing the camera, height 1 (x centred, y from the top of the head).
CMU18_TEMPLATE = np.array([
    (0.00, 0.08), (0.00, 0.20), (-0.13, 0.21), (-0.17, 0.38), (-0.19, 0.54), (0.13, 0.21),
    (0.17, 0.38), (0.19, 0.54), (-0.08, 0.55), (-0.09, 0.76), (-0.10, 0.97), (0.08, 0.55),
    (0.09, 0.76), (0.10, 0.97), (-0.035, 0.05), (0.035, 0.05), (-0.07, 0.07), (0.07, 0.07),
], np.float64)


def render_maps(people: np.ndarray, H: int, W: int, limbs, sigma: float = 1.0,
                paf_width: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Heatmaps ``[K,H,W]`` and PAFs ``[2L,H,W]`` of people ``[P,K,3]`` (x, y, visible).

    Heatmap k = max over people of a Gaussian (``sigma`` px) at the keypoint; the PAF of a limb
    is the unit vector a -> b on pixels within ``paf_width`` px of the segment, averaged where
    people overlap (as OpenPose renders its training targets).
    """
    people = np.asarray(people, np.float64)
    K = people.shape[1]
    limbs = np.asarray(limbs, np.int64).reshape(-1, 4)
    C = 2 * len(limbs) if len(limbs) == 0 else int(limbs[:, 2:].max()) + 1
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    hm = np.zeros((K, H, W))
    for p in people:
        for k in range(K):
            if p[k, 2] > 0:
                g = np.exp(-((xx - p[k, 0]) ** 2 + (yy - p[k, 1]) ** 2) / (2 * sigma * sigma))
                hm[k] = np.maximum(hm[k], g)
    paf = np.zeros((C, H, W))
    for pa, pb, cx, cy in limbs:
        acc = np.zeros((2, H, W))
        cnt = np.zeros((H, W))
        for p in people:
            if p[pa, 2] <= 0 or p[pb, 2] <= 0:
                continue
            d = p[pb, :2] - p[pa, :2]
            n = float(np.hypot(*d))
            if n < 1e-6:
                continue
            u = d / n
            rx, ry = xx - p[pa, 0], yy - p[pa, 1]
            along = rx * u[0] + ry * u[1]
            across = np.abs(rx * u[1] - ry * u[0])
            on = (along >= -paf_width) & (along <= n + paf_width) & (across <= paf_width)
            acc[0][on] += u[0]
            acc[1][on] += u[1]
            cnt[on] += 1
        nz = cnt > 0
        paf[cx][nz] = acc[0][nz] / cnt[nz]
        paf[cy][nz] = acc[1][nz] / cnt[nz]
    return hm.astype(np.float32), paf.astype(np.float32)


def template_people(centres_heights, template: np.ndarray = CMU18_TEMPLATE) -> np.ndarray:
    """People ``[P,K,3]`` from ``[(x_centre, y_top, height), ...]`` and the template pose."""
    out = []
    for x, y, h in centres_heights:
        kp = np.ones((len(template), 3))
        kp[:, 0] = x + template[:, 0] * h
        kp[:, 1] = y + template[:, 1] * h
        out.append(kp)
    return np.array(out, np.float64).reshape(-1, len(template), 3)


# ----------------------------------------------------------------------------------------------
# one-stage (YOLO-pose): score threshold + greedy NMS (box IoU or keypoint OKS)
# ----------------------------------------------------------------------------------------------
def onestage_select(pred: np.ndarray, layout: str, num_keypoints: int, score_threshold: float,
                    nms: str, nms_threshold: float, max_det: int, box_scale=(1.0, 1.0),
                    keypoint_scale=(1.0, 1.0), sigmas=None, keypoint_threshold: float = 0.0,
                    max_candidates: int = 30000) -> np.ndarray:
    """Kept anchor indices, best score first (ties: lower index first).

    ``pred`` ``[5+3K, N]`` (``layout="CN"``) or ``[N, 5+3K]`` (``"NC"``), a leading batch of 1
    allowed; per anchor cx, cy, w, h, score, K x (x, y, score). Candidates: score strictly above
    ``score_threshold``, the best ``max_candidates``. Greedy NMS in score order: a candidate is
    dropped when its similarity with an already kept one is strictly above ``nms_threshold``;
    similarity = IoU of the boxes (``nms="iou"``) or OKS of the poses (``"oks"``: mean over
    keypoints of ``exp(-d^2 / (2 s)^2 / ((a1 + a2) / 2 + eps) / 2)``, a = box area, only keypoints
    scoring above ``keypoint_threshold`` in both poses when it is > 0; 0 when none). Boxes are
    scaled by ``box_scale`` and keypoints by ``keypoint_scale`` (per axis) to common pixel units
    first. At most ``max_det`` kept."""
    p = np.asarray(pred, np.float64)
    if p.ndim == 3:
        p = p[0]
    rows = p if layout == "CN" else p.T                    # [5+3K, N]
    K = int(num_keypoints)
    s = rows[4]
    cand = np.nonzero(s > score_threshold)[0]
    order = cand[np.lexsort((cand, -s[cand]))][:max_candidates]
    bsx, bsy = box_scale
    ksx, ksy = keypoint_scale
    cx, cy, w, h = rows[0] * bsx, rows[1] * bsy, rows[2] * bsx, rows[3] * bsy
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    area = np.maximum(w, 0) * np.maximum(h, 0)
    kx, ky, kv = rows[5::3] * ksx, rows[6::3] * ksy, rows[7::3]       # [K, N]
    keep: List[int] = []
    for i in order:
        if len(keep) >= max_det:
            break
        ok = True
        if nms != "none":
            for j in keep:
                if nms == "iou":
                    iw = min(x2[i], x2[j]) - max(x1[i], x1[j])
                    ih = min(y2[i], y2[j]) - max(y1[i], y1[j])
                    inter = iw * ih if (iw > 0 and ih > 0) else 0.0
                    uni = area[i] + area[j] - inter
                    sim = inter / uni if uni > 0 else 0.0
                else:
                    a = 0.5 * (area[i] + area[j]) + np.spacing(1)
                    d2 = (kx[:, i] - kx[:, j]) ** 2 + (ky[:, i] - ky[:, j]) ** 2
                    e = np.exp(-d2 / (4.0 * np.asarray(sigmas, np.float64) ** 2) / a / 2.0)
                    m = np.ones(K, bool) if keypoint_threshold <= 0 else \
                        (kv[:, i] > keypoint_threshold) & (kv[:, j] > keypoint_threshold)
                    sim = float(e[m].mean()) if m.any() else 0.0
                if sim > nms_threshold:
                    ok = False
                    break
        if ok:
            keep.append(int(i))
    return np.asarray(keep, np.int64)
