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
from edgepose.io import IMAGE_EXTS, VIDEO_EXTS, read_image
from edgepose.files import read_json, sha256_file
from edgepose.metadata import ModelMeta

__all__ = ["CalibrationSet", "load_samples", "check_sources", "IMAGE_EXTS", "VIDEO_EXTS"]

# An image upscaled by more than this to fit a static model input is "the wrong size": its
# statistics are not those of deployment frames.
MAX_UPSCALE = 4.0


class CalibrationSet:
    """Calibration inputs plus held-out frames.

    calib           list of model inputs ``[1, ...]`` float32 (edgepose.preprocess output)
    holdout_images  list of BGR uint8 images held out for the accuracy report
    holdout_inputs  their model inputs (for top-down: the crops of ``holdout_boxes``; bottom-up
                    inputs are made on first use)
    holdout_boxes   top-down only: one ``[x, y, w, h]`` box per held-out image (else None)
    calib_ids / holdout_ids  identities of the samples (file names, frame indices, ann ids)
    source_hash     sha256 of the chosen samples' identity and the preprocessing settings
    """

    def __init__(self, calib: List[np.ndarray], holdout_images: List[np.ndarray],
                 holdout_inputs: List[np.ndarray], calib_ids: List[str], holdout_ids: List[str],
                 source: str, kind: str, source_hash: str,
                 holdout_boxes: Optional[List[List[float]]] = None, family: str = "bottomup",
                 sources: Optional[List[Dict[str, Any]]] = None):
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
        self.sources = sources or [{"source": source, "kind": kind, "used": len(calib) + len(holdout_images),
                                    "holdout": len(holdout_images)}]

    def __len__(self) -> int:
        return len(self.calib)

    def describe(self) -> str:
        shapes = sorted({tuple(x.shape) for x in self.calib})
        shp = ", ".join("x".join(str(d) for d in s) for s in shapes[:3])
        if len(shapes) > 3:
            shp += ", ..."
        if len(self.sources) > 1:
            where = "%d sources (%s)" % (len(self.sources), ", ".join(
                "%s %d+%d" % (os.path.basename(s["source"].rstrip("/")), s["used"] - s["holdout"], s["holdout"])
                for s in self.sources))
        else:
            where = "%s %s" % (self.kind, os.path.basename(self.source.rstrip("/")) or self.source)
        return ("calibration: %d samples + %d held out from %s (input %s; sha256 %s)"
                % (len(self.calib), len(self.holdout_images), where, shp, self.source_hash[:12]))

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "n_calib": len(self.calib),
                "n_holdout": len(self.holdout_images), "calib_ids": self.calib_ids,
                "holdout_ids": self.holdout_ids, "source_hash": self.source_hash,
                "sources": self.sources}

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
    return sha256_file(path)


def _read_image(path: str) -> np.ndarray:
    try:
        return read_image(path)
    except InputError as e:
        raise InputError("calibration image %s is unreadable (%s)" % (path, str(e).split(":")[0]))


def _spread(count: int, want: int) -> List[int]:
    """``want`` evenly spaced indices out of ``count`` (all of them when fewer)."""
    if count <= want:
        return list(range(count))
    return sorted({int(round(v)) for v in np.linspace(0, count - 1, want)})


def _check_counts(available: int, n: int, holdout: int, what: str) -> None:
    """Enough candidates for ``n`` + ``holdout`` (both checked for sign by load_samples)."""
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

    def check(self, img: np.ndarray, what: str) -> None:
        """The checks of :meth:`bottomup` without making the input (held-out images)."""
        from edgepose.preprocess import check_image
        self._check_size(check_image(img, what), what)

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


def check_sources(source) -> List[str]:
    """Cheap checks of calibration source paths (exist, a known kind) before any expensive
    work: the export calls this before its FP32 step. Returns the paths; InputError names the
    first bad one. Decoding errors are found later, by :func:`load_samples`."""
    sources = [source] if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(sources, (list, tuple)) or not sources or \
            not all(isinstance(s, (str, os.PathLike)) for s in sources):
        raise EdgeposeError("calibration source must be a path (image folder, video or COCO JSON) "
                            "or a list of paths")
    out = [os.fspath(s) for s in sources]
    for s in out:
        if not os.path.exists(s):
            raise InputError("calibration source not found: %s" % s)
        if os.path.isdir(s):
            if not any(f.lower().endswith(IMAGE_EXTS) for f in os.listdir(s)):
                raise InputError("calibration folder %s contains no images (%s)" % (s, ", ".join(IMAGE_EXTS[:3])))
            continue
        ext = os.path.splitext(s)[1].lower()
        if ext in IMAGE_EXTS:
            raise InputError("calibration source %s is a single image; give a folder of images, a "
                             "video or a COCO annotation file" % s)
        if ext != ".json" and ext not in VIDEO_EXTS:
            raise InputError("calibration source %s: unknown type %r (expected an image folder, a video "
                             "%s or a COCO .json)" % (s, ext or "(none)", "/".join(VIDEO_EXTS[:4])))
        if os.path.getsize(s) == 0:
            raise InputError("calibration source %s is empty" % s)
    if len(set(os.path.abspath(s) for s in out)) != len(out):
        raise InputError("a calibration source is given twice")
    return out


class _Catalog:
    """The candidate samples of one source (identities only: nothing decoded yet).

    ``ids``: one identity per candidate; ``load(indices)`` -> [(image, box, what)];
    ``items(indices)``: what identifies those samples in the source hash."""

    def __init__(self, source: str, kind: str, ids: List[str], load, items, what: str):
        self.source, self.kind, self.ids, self.load, self.items, self.what = \
            source, kind, ids, load, items, what


# the held-out part when ``holdout="auto"``: every candidate left after calibration, up to this
# many (the accuracy gate wants >= 100 frames from several sources to resolve a 1-point budget)
AUTO_HOLDOUT_MAX = 128


def load_samples(source, meta, n: int = 32, holdout: Any = 8, seed: int = 0,
                 every: Optional[int] = None, height: Optional[int] = None,
                 images_dir: Optional[str] = None) -> CalibrationSet:
    """Deterministic calibration + held-out samples from image folders, videos or COCO JSONs.

    ``source``: one path, or a list of paths (several sources at once: the samples are shared
    out evenly among them, each source split into calibration and held-out parts in the same
    ratio). ``holdout``: a count, or ``"auto"``: every candidate left after the ``n``
    calibration samples, up to :data:`AUTO_HOLDOUT_MAX`.
    """
    meta = _as_meta(meta)
    sources = check_sources(source)
    n = int(n)
    auto = isinstance(holdout, str)
    if auto and holdout != "auto":
        raise EdgeposeError("holdout must be a count or 'auto', got %r" % (holdout,))
    if every is not None and int(every) < 1:
        raise EdgeposeError("every must be >= 1, got %r" % (every,))
    if n < 1:
        raise EdgeposeError("calibration needs n >= 1 samples, got n=%d" % n)
    if not auto and int(holdout) < 0:
        raise EdgeposeError("holdout must be >= 0, got %d" % int(holdout))
    prep = _Prep(meta, height)
    cats = [_catalog(s, meta, every, images_dir) for s in sources]
    avail = [len(c.ids) for c in cats]
    total = sum(avail)
    what = cats[0].what if len(cats) == 1 else "%d sources (%s)" % (
        len(cats), ", ".join("%s: %d" % (os.path.basename(c.source.rstrip("/")), a) for c, a in zip(cats, avail)))
    if auto:
        holdout = max(1, min(AUTO_HOLDOUT_MAX, total - n))
    holdout = int(holdout)
    _check_counts(total, n, holdout, what)
    extra = {"n": n, "holdout": "auto" if auto else holdout, "seed": seed, "every": every,
             "height": height}
    shares = _share(avail, n + holdout)
    holds = _largest_remainder([holdout * t / float(n + holdout) for t in shares], holdout)
    calib, hold_imgs, hold_boxes, hold_crops, hold_what, cal_ids, hold_ids, hash_items = \
        [], [], [], [], [], [], [], []
    for c, t, h in zip(cats, shares, holds):
        if t == 0:
            continue
        chosen = _spread(len(c.ids), t)
        cal_i, hold_i = _split(chosen, h, seed)
        cal_i = [chosen[i] for i in cal_i]
        hold_i = [chosen[i] for i in hold_i]
        prefix = "" if len(cats) == 1 else os.path.basename(c.source.rstrip("/")) + ":"
        loaded = c.load(sorted(cal_i + hold_i))
        by_idx = dict(zip(sorted(cal_i + hold_i), loaded))
        for i in cal_i:
            img, box, w = by_idx[i]
            calib.append(prep.topdown(img, box, w) if meta.family == "topdown" else prep.bottomup(img, w))
            cal_ids.append(prefix + str(c.ids[i]))
        for i in hold_i:
            img, box, w = by_idx[i]
            if meta.family == "topdown":      # a crop is small: made (and so checked) now
                hold_crops.append(prep.topdown(img, box, w))
            else:                             # a whole frame's input is not: checked now, made on use
                prep.check(img, w)
            hold_imgs.append(img)
            hold_boxes.append([float(v) for v in box])
            hold_what.append(w)
            hold_ids.append(prefix + str(c.ids[i]))
        hash_items.append([c.kind, c.items(chosen)])
    kind = cats[0].kind if len(cats) == 1 else "mixed"
    src = sources[0] if len(sources) == 1 else ", ".join(sources)
    items = hash_items[0][1] if len(cats) == 1 else hash_items
    family = meta.family
    hold_inputs = hold_crops if family == "topdown" else \
        _LazyInputs(lambda k: prep.bottomup(hold_imgs[k], hold_what[k]), len(hold_imgs))
    return CalibrationSet(calib, hold_imgs, hold_inputs, cal_ids, hold_ids,
                          src, kind, _hash(kind, items, meta, extra),
                          hold_boxes if family == "topdown" else None, family,
                          sources=[dict(source=c.source, kind=c.kind, available=a, used=t, holdout=h)
                                   for c, a, t, h in zip(cats, avail, shares, holds)])


class _LazyInputs:
    """The held-out images' model inputs, made on first use (a bottom-up input is a few MB)."""

    def __init__(self, make, n: int):
        self._make, self._n, self._cache = make, n, {}

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._n))]
        k = int(k)
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(k)
        if k not in self._cache:
            self._cache[k] = self._make(k)
        return self._cache[k]

    def __iter__(self):
        return (self[i] for i in range(self._n))


def _share(avail: List[int], want: int) -> List[int]:
    """Split ``want`` samples among sources holding ``avail``: equal shares, a source with
    fewer gives the rest to the others (water filling)."""
    out = [0] * len(avail)
    left = want
    open_ = [i for i, a in enumerate(avail) if a > 0]
    while left > 0 and open_:
        per = max(1, left // len(open_))
        for i in list(open_):
            take = min(per, avail[i] - out[i], left)
            out[i] += take
            left -= take
            if out[i] >= avail[i]:
                open_.remove(i)
            if left == 0:
                break
    return out


def _largest_remainder(quotas: List[float], total: int) -> List[int]:
    base = [int(np.floor(q)) for q in quotas]
    rest = total - sum(base)
    order = sorted(range(len(quotas)), key=lambda i: -(quotas[i] - base[i]))
    for i in order[:max(0, rest)]:
        base[i] += 1
    return base


def _catalog(source: str, meta: ModelMeta, every: Optional[int], images_dir: Optional[str]) -> _Catalog:
    if os.path.isdir(source):
        return _catalog_folder(source)
    ext = os.path.splitext(source)[1].lower()
    if ext == ".json":
        return _catalog_coco(source, meta, images_dir)
    if ext in VIDEO_EXTS:
        return _catalog_video(source, every)
    if ext in IMAGE_EXTS:
        raise InputError("calibration source %s is a single image; give a folder of images, a "
                         "video or a COCO annotation file" % source)
    raise InputError("calibration source %s: unknown type %r (expected an image folder, a video "
                     "%s or a COCO .json)" % (source, ext or "(none)", "/".join(VIDEO_EXTS[:4])))


def _whole_box(img: np.ndarray) -> List[float]:
    return [0.0, 0.0, float(img.shape[1]), float(img.shape[0])]


def _catalog_folder(source: str) -> _Catalog:
    names = sorted(f for f in os.listdir(source)
                   if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(source, f)))
    if not names:
        raise InputError("calibration folder %s contains no images (%s)"
                         % (source, ", ".join(IMAGE_EXTS[:3])))

    def load(idx):
        out = []
        for i in idx:
            img = _read_image(os.path.join(source, names[i]))
            out.append((img, _whole_box(img), "calibration image %s" % names[i]))
        return out

    def items(idx):
        return [(names[i], _file_sha(os.path.join(source, names[i]))) for i in idx]

    return _Catalog(source, "folder", names, load, items, "folder %s" % source)


def _catalog_video(source: str, every: Optional[int]) -> _Catalog:
    from edgepose.frames import FrameSource

    with FrameSource.video_file(source) as src:     # one-line errors: missing, unreadable, no frame
        count = src.count_frames()   # every frame grabbed: the container's count is an estimate for some
    frames = list(range(0, count, int(every))) if every is not None else list(range(count))
    what = ("video %s (%d frames, every %d-th)" % (source, count, int(every)) if every is not None
            else "video %s (%d frames)" % (source, count))

    def load(idx):
        wanted = {frames[i] for i in idx}
        images: Dict[int, np.ndarray] = {}
        if wanted:
            with FrameSource.video_file(source) as src:
                for f, _, img in src.frames(end=max(wanted) + 1, only=wanted):
                    images[f] = img
        missing = [f for f in wanted if f not in images]
        if missing:
            raise InputError("calibration video %s: frames %s could not be read" % (source, sorted(missing)[:5]))
        return [(images[frames[i]], _whole_box(images[frames[i]]),
                 "frame %d of %s" % (frames[i], os.path.basename(source))) for i in idx]

    sha = []

    def items(idx):
        if not sha:
            sha.append(_file_sha(source))
        return {"video_sha256": sha[0], "frames": [frames[i] for i in idx]}

    return _Catalog(source, "video", ["frame%d" % f for f in frames], load, items, what)


def _catalog_coco(source: str, meta: ModelMeta, images_dir: Optional[str]) -> _Catalog:
    doc = read_json(source, "COCO annotation file")
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

        def load(idx):
            return [(image(by_id[persons[i][0]]), persons[i][2],
                     "person %s in %s" % (persons[i][1], by_id[persons[i][0]])) for i in idx]

        def items(idx):
            return [(by_id[persons[i][0]], persons[i][1], persons[i][2]) for i in idx]

        return _Catalog(source, "coco", ["ann%s" % p[1] for p in persons], load, items,
                        "COCO file %s (%d person crops)" % (source, len(persons)))
    with_people = {a.get("image_id") for a in anns if a.get("num_keypoints", 0) > 0}
    ids_sorted = sorted(i for i in by_id if (i in with_people or not anns))

    def load(idx):
        out = []
        for i in idx:
            img = image(by_id[ids_sorted[i]])
            out.append((img, _whole_box(img), "COCO image %s" % by_id[ids_sorted[i]]))
        return out

    def items(idx):
        out = []
        for i in idx:
            fn = by_id[ids_sorted[i]]
            p = os.path.join(images_dir, fn)
            out.append((fn, _file_sha(p) if os.path.isfile(p) else None))
        return out

    return _Catalog(source, "coco", [str(by_id[i]) for i in ids_sorted], load, items,
                    "COCO file %s (%d images)" % (source, len(ids_sorted)))
