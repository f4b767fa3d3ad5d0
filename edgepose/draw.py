"""Drawing poses on images."""
import colorsys

import cv2
import numpy as np

from .results import PoseResult


def _palette(n: int):
    cols = []
    for i in range(max(n, 1)):
        r, g, b = colorsys.hsv_to_rgb((i * 0.61803) % 1.0, 0.85, 1.0)
        cols.append((int(b * 255), int(g * 255), int(r * 255)))
    return cols


def draw_poses(img: np.ndarray, result: PoseResult, min_score: float = 0.0,
               thickness: int = 0, draw_boxes: bool = True) -> np.ndarray:
    """A copy of ``img`` with each person's skeleton, keypoints (and box, top-down) drawn; a
    tracked result's people get one colour per ``track_id`` and an ``#id`` label."""
    out = img.copy()
    t = thickness or max(1, int(round(min(img.shape[:2]) / 240)))
    limb_cols = _palette(len(result.skeleton))
    ids = result.track_ids
    if ids is not None:
        pal = _palette(int(ids.max()) + 1 if len(ids) else 1)
        person_cols = [pal[int(i)] for i in ids]
    else:
        person_cols = _palette(len(result))
    for p in range(len(result)):
        kp = result.keypoints[p]
        ok = kp[:, 2] > min_score
        if draw_boxes and result.boxes is not None:
            x, y, w, h = result.boxes[p]
            cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), person_cols[p], t)
        if ids is not None and np.any(ok):
            x0, y0 = kp[ok, 0].min(), kp[ok, 1].min()
            org = (int(max(x0, 0)), int(max(y0 - 4 * t, 10 * t)))
            cv2.putText(out, "#%d" % ids[p], org, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, (0, 0, 0), 3 * t, cv2.LINE_AA)
            cv2.putText(out, "#%d" % ids[p], org, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, person_cols[p], t, cv2.LINE_AA)
        for li, (a, b) in enumerate(result.skeleton):
            if a < len(kp) and b < len(kp) and ok[a] and ok[b]:
                pa = (int(round(kp[a, 0])), int(round(kp[a, 1])))
                pb = (int(round(kp[b, 0])), int(round(kp[b, 1])))
                cv2.line(out, pa, pb, limb_cols[li], t + 1, cv2.LINE_AA)
        for k in np.nonzero(ok)[0]:
            c = (int(round(kp[k, 0])), int(round(kp[k, 1])))
            cv2.circle(out, c, t + 2, person_cols[p], -1, cv2.LINE_AA)
    return out
