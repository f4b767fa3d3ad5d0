"""Calibration data: deterministic samples from the user's own images, video or COCO file.

``load_samples(source, meta)`` turns a source into model inputs made by *the* runtime
preprocessing (:mod:`edgepose.preprocess`), split into a calibration part (for quantization
ranges) and a held-out part (for the accuracy report). The selection is deterministic: the
same source, ``n``, ``holdout``, ``seed`` and ``every`` always give the same samples, and
``CalibrationSet.source_hash`` identifies them (cache keys, e.g. TensorRT calibration caches).

Sources
  * an image folder: the images in name order;
  * a video file: every ``every``-th frame (default: spread evenly over the whole video);
  * a COCO annotation JSON (``images_dir``: where the images are, default the JSON's folder):
    bottom-up models use the annotated images, top-down models the annotated person crops
    (``iscrowd`` 0, at least one labelled keypoint).
Top-down models fed from a folder or a video use the whole frame as the person box.

When more candidates exist than ``n + holdout``, evenly spaced ones are taken; the held-out
ones are then drawn among them with ``seed``.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgepose.errors import EdgeposeError, InputError
from edgepose.metadata import ModelMeta

__all__ = ["CalibrationSet", "load_samples", "IMAGE_EXTS", "VIDEO_EXTS"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")

# An image upscaled by more than this to fit a static model input is "the wrong size": its
# statistics are not those of deployment frames.
MAX_UPSCALE = 4.0


class CalibrationSet:
    """Calibration inputs plus held-out frames.

    calib           list of model inputs ``[1, ...]`` float32 (edgepose.preprocess output)
    holdout_images  list of BGR uint8 images held out for the accuracy report
    holdout_inputs  their model inputs (for top-down: the crops of ``holdout_boxes``)
    holdout_boxes   top-down only: one ``[x, y, w, h]`` box per held-out image (else None)
    calib_ids / holdout_ids  identities of the samples (file names, frame indices, ann ids)
    source_hash     sha256 of the chosen samples' identity and the preprocessing settings
    """

    def __init__(self, calib: List[np.ndarray], holdout_images: List[np.ndarray],
                 holdout_inputs: List[np.ndarray], calib_ids: List[str], holdout_ids: List[str],
                 source: str, kind: str, source_hash: str,
                 holdout_boxes: Optional[List[List[float]]] = None, family: str = "bottomup"):
        self.calib = calib
        self.holdout_images = holdout_images
        self.holdout_inputs = holdout_inputs
        self.holdout_boxes = holdout_boxes
        self.calib_ids = calib_ids
        self.holdout_ids = holdout_ids
        self.source = source
        self.kind = kind
        self.source_hash = source_hash
        self.family = family

    def __len__(self) -> int:
        return len(self.calib)

    def describe(self) -> str:
        shapes = sorted({tuple(x.shape) for x in self.calib})
        shp = ", ".join("x".join(str(d) for d in s) for s in shapes[:3])
        if len(shapes) > 3:
            shp += ", ..."
        return ("calibration: %d samples + %d held out from %s %s (input %s; sha256 %s)"
                % (len(self.calib), len(self.holdout_images), self.kind,
                   os.path.basename(self.source.rstrip("/")) or self.source, shp,
                   self.source_hash[:12]))

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "n_calib": len(self.calib),
                "n_holdout": len(self.holdout_images), "calib_ids": self.calib_ids,
                "holdout_ids": self.holdout_ids, "source_hash": self.source_hash}

    def __repr__(self) -> str:
        return "CalibrationSet(%s)" % self.describe()


# ----------------------------------------------------------------------------------------------
def _as_meta(meta) -> ModelMeta:
    if isinstance(meta, ModelMeta):
        return meta
    if isinstance(meta, dict):
        return ModelMeta(meta)
    if isinstance(meta, str) and os.path.isfile(meta):
        from edgepose.metadata import read_onnx_meta
        m = read_onnx_meta(meta)
        if m is None:
            raise EdgeposeError("%s carries no edgepose metadata; pass its ModelMeta" % meta)
        return m
    raise EdgeposeError("meta must be a ModelMeta, a metadata dict or an ONNX path, got %r"
                        % (type(meta).__name__,))


def _file_sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_image(path: str) -> np.ndarray:
    import cv2
    data = np.fromfile(path, np.uint8) if os.path.isfile(path) else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if img is None:
        raise InputError("calibration image %s is unreadable (not a decodable image)" % path)
    return img


def _spread(count: int, want: int) -> List[int]:
    """``want`` evenly spaced indices out of ``count`` (all of them when fewer)."""
    if count <= want:
        return list(range(count))
    return sorted({int(round(v)) for v in np.linspace(0, count - 1, want)})


def _check_counts(available: int, n: int, holdout: int, what: str) -> None:
    if n < 1:
        raise EdgeposeError("calibration needs n >= 1 samples, got n=%d" % n)
    if holdout < 0:
        raise EdgeposeError("holdout must be >= 0, got %d" % holdout)
    if available == 0:
        raise InputError("calibration source %s has no usable samples" % what)
    if available < n + holdout:
        raise InputError("calibration source %s has %d usable samples; n=%d calibration + "
                         "holdout=%d held-out need %d (lower n/holdout or add data)"
                         % (what, available, n, holdout, n + holdout))


class _Prep:
    """Preprocessing for one model: the runtime's functions plus the static-size checks."""

    def __init__(self, meta: ModelMeta, height: Optional[int]):
        self.meta = meta
        inp = meta.input
        self.static = not inp.get("dynamic_hw", False)
        if self.static and height is not None and int(height) != int(inp["height"]):
            raise InputError("the model has a static %dx%d input; height=%d does not apply"
                             % (inp["height"], inp["width"], int(height)))
        self.height = height

    def _check_size(self, img: np.ndarray, what: str) -> None:
        if not self.static or self.meta.family != "bottomup":
            return
        H, W = int(self.meta.input["height"]), int(self.meta.input["width"])
        scale = min(H / float(img.shape[0]), W / float(img.shape[1]))
        if scale > MAX_UPSCALE:
            raise InputError("%s is %dx%d, too small for the static %dx%d model input (would be "
                             "upscaled %.1fx; calibrate on frames at the deployment resolution)"
                             % (what, img.shape[1], img.shape[0], W, H, scale))

    def bottomup(self, img: np.ndarray, what: str) -> np.ndarray:
        from edgepose.preprocess import check_image, preprocess_bottomup
        img = check_image(img, what)
        self._check_size(img, what)
        x, _ = preprocess_bottomup(img, self.meta, self.height)
        self._check_shape(x, what)
        return x

    def topdown(self, img: np.ndarray, box: Sequence[float], what: str) -> np.ndarray:
        from edgepose.preprocess import check_image, preprocess_topdown
        img = check_image(img, what)
        x, _ = preprocess_topdown(img, np.asarray([box], np.float64), self.meta)
        self._check_shape(x, what)
        return x

    def _check_shape(self, x: np.ndarray, what: str) -> None:
        if not self.static:
            return
        inp = self.meta.input
        H, W = int(inp["height"]), int(inp["width"])
        want = (1, H, W, 3) if inp["layout"] == "NHWC" else (1, 3, H, W)
        if tuple(x.shape) != want:
            raise InputError("%s gives a model input of shape %s, the static model needs %s"
                             % (what, tuple(x.shape), want))


def _split(ids: List[Any], holdout: int, seed: int) -> Tuple[List[int], List[int]]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ids))
    hold = sorted(int(i) for i in perm[:holdout])
    cal = sorted(int(i) for i in perm[holdout:])
    return cal, hold


def _hash(kind: str, items: List[Any], meta: ModelMeta, extra: Dict[str, Any]) -> str:
    doc = {"kind": kind, "items": items, "input": meta.input, "family": meta.family,
           "extra": extra}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
def load_samples(source: str, meta, n: int = 32, holdout: int = 8, seed: int = 0,
                 every: Optional[int] = None, height: Optional[int] = None,
                 images_dir: Optional[str] = None) -> CalibrationSet:
    """Deterministic calibration + held-out samples from an image folder, video or COCO JSON."""
    meta = _as_meta(meta)
    if source is None or not isinstance(source, (str, os.PathLike)):
        raise EdgeposeError("calibration source must be a path (image folder, video or COCO JSON)")
    source = os.fspath(source)
    if not os.path.exists(source):
        raise InputError("calibration source not found: %s" % source)
    n, holdout = int(n), int(holdout)
    if every is not None and int(every) < 1:
        raise EdgeposeError("every must be >= 1, got %r" % (every,))
    prep = _Prep(meta, height)
    extra = {"n": n, "holdout": holdout, "seed": seed, "every": every, "height": height}
    if os.path.isdir(source):
        return _from_folder(source, meta, prep, n, holdout, seed, extra)
    ext = os.path.splitext(source)[1].lower()
    if ext == ".json":
        return _from_coco(source, meta, prep, n, holdout, seed, images_dir, extra)
    if ext in VIDEO_EXTS:
        return _from_video(source, meta, prep, n, holdout, seed, every, extra)
    if ext in IMAGE_EXTS:
        raise InputError("calibration source %s is a single image; give a folder of images, a "
                         "video or a COCO annotation file" % source)
    raise InputError("calibration source %s: unknown type %r (expected an image folder, a video "
                     "%s or a COCO .json)" % (source, ext or "(none)", "/".join(VIDEO_EXTS[:4])))


def _whole_box(img: np.ndarray) -> List[float]:
    return [0.0, 0.0, float(img.shape[1]), float(img.shape[0])]


def _make_set(meta, prep, source, kind, ids, loader, holdout, seed, hash_items, extra):
    cal_i, hold_i = _split(ids, holdout, seed)
    calib, hold_imgs, hold_inputs, hold_boxes = [], [], [], []
    for i in cal_i:
        img, box, what = loader(i)
        calib.append(prep.topdown(img, box, what) if meta.family == "topdown"
                     else prep.bottomup(img, what))
    for i in hold_i:
        img, box, what = loader(i)
        hold_imgs.append(img)
        if meta.family == "topdown":
            hold_inputs.append(prep.topdown(img, box, what))
            hold_boxes.append([float(v) for v in box])
        else:
            hold_inputs.append(prep.bottomup(img, what))
    return CalibrationSet(calib, hold_imgs, hold_inputs, [str(ids[i]) for i in cal_i],
                          [str(ids[i]) for i in hold_i], source, kind,
                          _hash(kind, hash_items, meta, extra),
                          hold_boxes if meta.family == "topdown" else None, meta.family)


def _from_folder(source, meta, prep, n, holdout, seed, extra) -> CalibrationSet:
    names = sorted(f for f in os.listdir(source)
                   if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(source, f)))
    if not names:
        raise InputError("calibration folder %s contains no images (%s)"
                         % (source, ", ".join(IMAGE_EXTS[:3])))
    _check_counts(len(names), n, holdout, "folder %s" % source)
    chosen = [names[i] for i in _spread(len(names), n + holdout)]
    cache: Dict[int, np.ndarray] = {}

    def loader(i):
        p = os.path.join(source, chosen[i])
        img = cache.pop(i, None)
        if img is None:
            img = _read_image(p)
        return img, _whole_box(img), "calibration image %s" % chosen[i]

    items = [(c, _file_sha(os.path.join(source, c))) for c in chosen]
    return _make_set(meta, prep, source, "folder", chosen, loader, holdout, seed, items, extra)


def _from_video(source, meta, prep, n, holdout, seed, every, extra) -> CalibrationSet:
    import cv2
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise InputError("calibration video %s cannot be opened (unreadable or not a video)" % source)
    try:
        # count by grabbing: CAP_PROP_FRAME_COUNT is an estimate for some containers
        count = 0
        while cap.grab():
            count += 1
    finally:
        cap.release()
    if count == 0:
        raise InputError("calibration video %s has no decodable frames" % source)
    want = n + holdout
    if every is not None:
        candidates = list(range(0, count, int(every)))
        _check_counts(len(candidates), n, holdout, "video %s (%d frames, every %d-th)"
                      % (source, count, int(every)))
        frames = [candidates[i] for i in _spread(len(candidates), want)]
    else:
        _check_counts(count, n, holdout, "video %s (%d frames)" % (source, count))
        frames = _spread(count, want)
    wanted = set(frames)
    images: Dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(source)
    try:
        idx = 0
        last = max(frames)
        while idx <= last:
            if not cap.grab():
                break
            if idx in wanted:
                ok, img = cap.retrieve()
                if not ok or img is None:
                    raise InputError("calibration video %s: frame %d cannot be decoded" % (source, idx))
                images[idx] = img
            idx += 1
    finally:
        cap.release()
    missing = [f for f in frames if f not in images]
    if missing:
        raise InputError("calibration video %s: frames %s could not be read" % (source, missing[:5]))

    def loader(i):
        img = images[frames[i]]
        return img, _whole_box(img), "frame %d of %s" % (frames[i], os.path.basename(source))

    items = {"video_sha256": _file_sha(source), "frames": frames}
    return _make_set(meta, prep, source, "video", ["frame%d" % f for f in frames], loader,
                     holdout, seed, items, extra)


def _from_coco(source, meta, prep, n, holdout, seed, images_dir, extra) -> CalibrationSet:
    try:
        with open(source, "r") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError("COCO annotation file %s is unreadable: %s" % (source, str(e).splitlines()[0]))
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise InputError("%s is not a COCO annotation file (no 'images' list)" % source)
    images_dir = images_dir or os.path.dirname(os.path.abspath(source))
    if not os.path.isdir(images_dir):
        raise InputError("COCO images folder not found: %s" % images_dir)
    by_id = {}
    for im in doc["images"]:
        if isinstance(im, dict) and "id" in im and "file_name" in im:
            by_id[im["id"]] = im["file_name"]
    anns = [a for a in doc.get("annotations") or [] if isinstance(a, dict)]
    cache: Dict[str, np.ndarray] = {}

    def image(fn):
        if fn not in cache:
            p = os.path.join(images_dir, fn)
            if not os.path.isfile(p):
                raise InputError("COCO image %s not found in %s" % (fn, images_dir))
            cache[fn] = _read_image(p)
        return cache[fn]

    if meta.family == "topdown":
        persons = []
        for a in anns:
            box = a.get("bbox") or []
            if (a.get("iscrowd", 0) or a.get("num_keypoints", 0) <= 0 or len(box) != 4
                    or a.get("image_id") not in by_id or box[2] < 2 or box[3] < 2):
                continue
            persons.append((a["image_id"], a.get("id", 0), [float(v) for v in box]))
        persons.sort(key=lambda t: (t[0], t[1]))
        _check_counts(len(persons), n, holdout, "COCO file %s (%d person crops)" % (source, len(persons)))
        chosen = [persons[i] for i in _spread(len(persons), n + holdout)]

        def loader(i):
            img_id, ann_id, box = chosen[i]
            return image(by_id[img_id]), box, "person %s in %s" % (ann_id, by_id[img_id])

        ids = ["ann%s" % c[1] for c in chosen]
        items = [(by_id[c[0]], c[1], c[2]) for c in chosen]
    else:
        with_people = {a.get("image_id") for a in anns if a.get("num_keypoints", 0) > 0}
        ids_sorted = sorted(i for i in by_id if (i in with_people or not anns))
        _check_counts(len(ids_sorted), n, holdout, "COCO file %s (%d images)" % (source, len(ids_sorted)))
        chosen_ids = [ids_sorted[i] for i in _spread(len(ids_sorted), n + holdout)]

        def loader(i):
            img = image(by_id[chosen_ids[i]])
            return img, _whole_box(img), "COCO image %s" % by_id[chosen_ids[i]]

        ids = [str(by_id[c]) for c in chosen_ids]
        items = [(by_id[c], _file_sha(os.path.join(images_dir, by_id[c]))
                  if os.path.isfile(os.path.join(images_dir, by_id[c])) else None) for c in chosen_ids]
    return _make_set(meta, prep, source, "coco", ids, loader, holdout, seed, items, extra)
