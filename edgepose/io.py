"""Media input/output with clear errors: images, image folders, videos (read through
:mod:`edgepose.frames`, written atomically through :mod:`edgepose.files`), COCO detection
boxes."""
import os
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from .errors import InputError
from .files import _commit_file, _remove, _temp_file_beside, atomic_path, read_json

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def read_image(path: str) -> np.ndarray:
    """Read an image file as BGR uint8 or raise InputError naming the problem."""
    if not os.path.exists(path):
        raise InputError("image not found: %s" % path)
    if os.path.isdir(path):
        raise InputError("expected an image file, got a directory: %s" % path)
    data = np.fromfile(path, np.uint8)
    if data.size == 0:
        raise InputError("image file is empty: %s" % path)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError("cannot decode image (not an image or corrupt): %s" % path)
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise InputError("image is too small (%dx%d): %s" % (img.shape[1], img.shape[0], path))
    return img


def list_images(folder: str) -> List[str]:
    if not os.path.isdir(folder):
        raise InputError("not a directory: %s" % folder)
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))
    return [os.path.join(folder, f) for f in files]


def input_kind(path: str) -> str:
    """'image', 'folder' or 'video' for an infer INPUT; InputError otherwise."""
    if not os.path.exists(path):
        raise InputError("input not found: %s" % path)
    if os.path.isdir(path):
        return "folder"
    ext = os.path.splitext(path)[1].lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    raise InputError("unsupported input type %r: %s (images: %s; videos: %s)"
                     % (ext or "(none)", path, " ".join(IMAGE_EXTS), " ".join(VIDEO_EXTS)))


class VideoReader:
    """The frames of a video file, BGR uint8 arrays in order (read by
    :meth:`edgepose.frames.FrameSource.video_file`: undecodable frames skipped); ``fps``,
    ``frame_count`` (the container's), ``size`` (width, height). InputError in one line if it
    cannot be opened or holds no readable frame."""

    def __init__(self, path: str):
        from .frames import FrameSource

        self.path = path
        self._src = FrameSource.video_file(path)
        self.fps, self.frame_count, self.size = self._src.fps, self._src.frame_count, self._src.size

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for _, _, frame in self._src:
                yield frame
        finally:
            self._src.release()

    def __len__(self) -> int:
        return self.frame_count


def write_image(path: str, img: np.ndarray) -> None:
    """Encode by the extension and write atomically (not fsync'ed: annotated output)."""
    ext = os.path.splitext(path)[1] or ".jpg"
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise InputError("cannot encode image as %s: %s" % (ext, path))
    with atomic_path(path, durable=False) as tmp:
        buf.tofile(tmp)


class VideoWriter:
    """mp4 writer that writes a temporary file beside ``path`` (unique per writer, named like
    :func:`atomic_path`'s) and renames it onto ``path`` on close(); abort() deletes it."""

    def __init__(self, path: str, fps: float, size: Tuple[int, int]):
        self.path = path
        self.tmp = _temp_file_beside(path, ".tmp" + (os.path.splitext(path)[1] or ".mp4"))
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        self.w = cv2.VideoWriter(self.tmp, fourcc, fps, size)
        if not self.w.isOpened():
            _remove(self.tmp)
            raise InputError("cannot open video writer for %s" % path)
        self.frames = 0
        self._open = True

    def write(self, frame: np.ndarray) -> None:
        self.w.write(frame)
        self.frames += 1

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self.w.release()
        _commit_file(self.tmp, self.path)

    def abort(self) -> None:
        if not self._open:
            return
        self._open = False
        self.w.release()
        _remove(self.tmp)


def load_coco_boxes(path: str, score_threshold: float = 0.0, category_id: Optional[int] = 1
                    ) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """Person boxes per image from a COCO detection-results JSON.

    The file is a list of ``{"image_id", "bbox": [x, y, w, h], "score", "category_id"}``
    (entries of another ``category_id`` than ``category_id`` are skipped; None keeps all;
    entries without ``category_id`` are kept). A COCO annotation file (a dict with
    ``annotations``) is accepted too: its non-crowd boxes with score 1 (ground-truth boxes).
    Returns ``{image_id: (boxes float32 [B,4], scores float32 [B])}``, best score first,
    boxes with ``score < score_threshold`` dropped.
    """
    data = read_json(path, "boxes file")
    gt = False
    if isinstance(data, dict):
        if not isinstance(data.get("annotations"), list):
            raise InputError("boxes file %s: expected a list of COCO detection results "
                             "(or a COCO annotation file with 'annotations')" % path)
        data = [a for a in data["annotations"] if isinstance(a, dict) and not a.get("iscrowd", 0)]
        gt = True
    if not isinstance(data, list):
        raise InputError("boxes file %s: expected a list of COCO detection results" % path)
    per: Dict[int, List[Tuple[List[float], float]]] = {}
    for i, e in enumerate(data):
        if not isinstance(e, dict) or "image_id" not in e or "bbox" not in e:
            raise InputError("boxes file %s: entry %d lacks image_id or bbox" % (path, i))
        if category_id is not None and "category_id" in e and e["category_id"] != category_id:
            continue
        bb = e["bbox"]
        try:
            box = [float(v) for v in bb]
            score = 1.0 if gt else float(e.get("score", 1.0))
            iid = int(e["image_id"])
        except (TypeError, ValueError):
            raise InputError("boxes file %s: entry %d has a malformed bbox, score or image_id"
                             % (path, i))
        if len(box) != 4 or not all(np.isfinite(box)) or box[2] < 0 or box[3] < 0:
            raise InputError("boxes file %s: entry %d bbox must be 4 finite numbers x, y, w, h "
                             "with w, h >= 0, got %r" % (path, i, bb))
        if not np.isfinite(score):
            raise InputError("boxes file %s: entry %d has a non-finite score" % (path, i))
        if score < score_threshold:
            continue
        per.setdefault(iid, []).append((box, score))
    out: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
    for iid, items in per.items():
        items.sort(key=lambda t: -t[1])
        out[iid] = (np.array([t[0] for t in items], np.float32).reshape(-1, 4),
                    np.array([t[1] for t in items], np.float32))
    return out

