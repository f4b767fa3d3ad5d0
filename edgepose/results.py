"""Pose results and their conversions (COCO-17, COCO results JSON, plain dicts)."""
from typing import Dict, List, Optional, Sequence

import numpy as np


class PoseResult:
    """People found in one image.

    keypoints   float32 ``[P, K, 3]``: x, y in image pixels (pixel centres at integers), score;
                a keypoint that was not found has score 0 (x = y = -1).
    scores      float32 ``[P]``: one score per person.
    boxes       float32 ``[P, 4]`` (x, y, w, h) for top-down results (the detector's or the
                user's box), else None.
    track_ids   int64 ``[P]`` from :class:`edgepose.track.Tracker`, else None.
    keypoint_names, skeleton, to_coco17: the model's schema.
    """

    def __init__(self, keypoints: np.ndarray, scores: np.ndarray, keypoint_names: Sequence[str],
                 skeleton: Sequence[Sequence[int]] = (), to_coco17: Optional[Sequence[int]] = None,
                 boxes: Optional[np.ndarray] = None, timings: Optional[Dict[str, float]] = None,
                 track_ids: Optional[Sequence[int]] = None):
        k = len(keypoint_names)
        self.keypoints = np.asarray(keypoints, np.float32).reshape(-1, k, 3)
        self.scores = np.asarray(scores, np.float32).reshape(-1)
        if len(self.scores) != len(self.keypoints):
            raise ValueError("scores and keypoints disagree on the number of people")
        self.keypoint_names = list(keypoint_names)
        self.skeleton = [tuple(s) for s in skeleton]
        self.to_coco17 = list(to_coco17) if to_coco17 is not None else None
        self.boxes = None if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
        self.timings = dict(timings or {})
        self.track_ids = None if track_ids is None else np.asarray(track_ids, np.int64).reshape(-1)
        if self.track_ids is not None and len(self.track_ids) != len(self.keypoints):
            raise ValueError("track_ids and keypoints disagree on the number of people")
        self.image = None    # the BGR image it was found in, when edgepose.load's call made it
        self.source = None   # that image's path, when it was read from one

    def __len__(self) -> int:
        return len(self.keypoints)

    def __repr__(self) -> str:
        return "PoseResult(%d people, %d keypoints)" % (len(self), len(self.keypoint_names))

    @property
    def people(self) -> "List[Person]":
        """One :class:`Person` per person found, in score order as decoded."""
        return [Person(self, i) for i in range(len(self))]

    def draw(self, image: Optional[np.ndarray] = None, **kw) -> np.ndarray:
        """A copy of ``image`` (default: the image this result was found in) with every person
        drawn; keywords go to :func:`edgepose.draw.draw_poses`."""
        from .draw import draw_poses

        img = self.image if image is None else image
        if img is None:
            raise ValueError("this result does not hold its image: pass draw(image)")
        return draw_poses(img, self, **kw)

    def to_coco(self, image_id: int = 0) -> List[dict]:
        """COCO keypoint results entries (see :meth:`to_coco_results`)."""
        return self.to_coco_results(image_id)

    def coco17(self) -> np.ndarray:
        """Keypoints ``[P, 17, 3]`` in COCO-17 order (missing → zeros)."""
        if self.to_coco17 is None:
            raise ValueError("this model's keypoint schema has no COCO-17 mapping")
        out = np.zeros((len(self), 17, 3), np.float32)
        for ci, si in enumerate(self.to_coco17):
            if si is not None and si >= 0:
                out[:, ci] = self.keypoints[:, si]
        missing = out[:, :, 2] <= 0
        out[missing] = 0.0
        return out

    def person_boxes(self) -> np.ndarray:
        """``[P, 4]`` xywh: the given boxes, or the extent of each person's found keypoints."""
        if self.boxes is not None:
            return self.boxes
        out = np.zeros((len(self), 4), np.float32)
        for i, kp in enumerate(self.keypoints):
            v = kp[kp[:, 2] > 0]
            if len(v):
                x0, y0 = v[:, 0].min(), v[:, 1].min()
                out[i] = (x0, y0, v[:, 0].max() - x0, v[:, 1].max() - y0)
        return out

    def to_coco_results(self, image_id: int) -> List[dict]:
        """COCO keypoint results entries (``category_id`` 1, person)."""
        kps = self.coco17()
        res = []
        for i in range(len(self)):
            k = kps[i].copy()
            res.append({
                "image_id": int(image_id),
                "category_id": 1,
                "keypoints": [round(float(v), 3) for v in k.reshape(-1)],
                "score": float(self.scores[i]),
            })
        return res

    def to_dict(self) -> dict:
        return {
            "keypoint_names": self.keypoint_names,
            "people": [
                {"score": float(self.scores[i]),
                 "keypoints": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                               for x, y, s in self.keypoints[i]],
                 **({"box": [float(v) for v in self.boxes[i]]} if self.boxes is not None else {}),
                 **({"track_id": int(self.track_ids[i])} if self.track_ids is not None else {})}
                for i in range(len(self))
            ],
        }


class Person:
    """One person of a :class:`PoseResult`: ``keypoints`` ``[K, 3]`` (x, y, score; a missing
    keypoint has score 0 at -1, -1), ``score``, ``box`` (xywh: the detector's or the keypoints'
    extent), ``track_id`` (or None), and ``person["nose"]`` → (x, y, score)."""

    __slots__ = ("_r", "_i")

    def __init__(self, result: PoseResult, index: int):
        self._r, self._i = result, index

    @property
    def keypoints(self) -> np.ndarray:
        return self._r.keypoints[self._i]

    @property
    def score(self) -> float:
        return float(self._r.scores[self._i])

    @property
    def box(self) -> np.ndarray:
        return self._r.person_boxes()[self._i]

    @property
    def track_id(self) -> Optional[int]:
        ids = self._r.track_ids
        return None if ids is None else int(ids[self._i])

    def __getitem__(self, name: str):
        try:
            k = self._r.keypoint_names.index(name)
        except ValueError:
            raise KeyError("no keypoint %r (keypoints: %s)" % (name, ", ".join(self._r.keypoint_names))) from None
        x, y, s = self.keypoints[k]
        return float(x), float(y), float(s)

    def __repr__(self) -> str:
        found = int((self.keypoints[:, 2] > 0).sum())
        tid = "" if self.track_id is None else ", track_id=%d" % self.track_id
        return "Person(score=%.3f, %d/%d keypoints%s)" % (self.score, found, len(self.keypoints), tid)
