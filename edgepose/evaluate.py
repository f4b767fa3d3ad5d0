"""COCO keypoint evaluation (pycocotools) of any estimator."""
import contextlib
import io
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError
from .io import read_image
from .files import read_json

STAT_NAMES = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]


def coco_pairs(coco, images_dir=None, boxes: Optional[str] = None) -> List[Tuple[str, str]]:
    """THE pairing of COCO keypoints files with their images folders (eval, Ray's eval, the INT8
    gate): ``coco`` a path, a list of paths, or of (path, images dir) pairs; ``images_dir`` a
    folder or a list, one per file (None: each file's own folder). Every file and folder checked
    (one line, before any work); ``boxes`` (detection boxes by image id) needs a single file."""
    if coco is None or coco == [] or coco == ():
        return []
    items = [coco] if isinstance(coco, (str, os.PathLike)) else list(coco)
    dirs = images_dir if isinstance(images_dir, (list, tuple)) else [images_dir] * len(items)
    if len(dirs) != len(items):
        raise InputError("%d COCO files but %d images folders: give one --images per --coco"
                         % (len(items), len(dirs)))
    if boxes and len(items) > 1:
        raise InputError("--boxes names image ids of one COCO file: evaluate one --coco at a time")
    out = []
    for it, d in zip(items, dirs):
        if isinstance(it, (list, tuple)):
            it, d = it[0], it[1]
        it = os.fspath(it)
        if not os.path.isfile(it):
            raise InputError("COCO annotation file not found: %s" % it)
        d = os.fspath(d) if d else os.path.dirname(os.path.abspath(it))
        if not os.path.isdir(d):
            raise InputError("images folder of %s not found: %s" % (it, d))
        out.append((it, d))
    return out

def load_coco(ann_file: str):
    """pycocotools COCO object, or InputError naming the problem."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise InputError("pycocotools is not installed: pip install 'edgepose[eval]'")
    data = ann_file if isinstance(ann_file, dict) else read_json(ann_file, "annotation file")
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise InputError("not a COCO annotation file (needs 'images' and 'annotations'): %s" % ann_file)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def merge_coco(sources) -> dict:
    """One COCO keypoints document from several ``(annotation file, images dir)`` pairs: image
    and annotation ids renumbered, ``file_name`` made absolute (so any images dir works).
    Pools small labelled sets (the COCO sample and the devset) into one evaluation."""
    images, anns, cats = [], [], None
    for ann_file, images_dir in sources:
        data = read_json(ann_file, "annotation file")
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise InputError("not a COCO annotation file (needs 'images' and 'annotations'): %s" % ann_file)
        images_dir = images_dir or os.path.dirname(os.path.abspath(ann_file))
        remap = {}
        for im in data["images"]:
            new = dict(im, id=len(images) + 1,
                       file_name=os.path.abspath(os.path.join(images_dir, im["file_name"])))
            remap[im["id"]] = new["id"]
            images.append(new)
        for a in data["annotations"]:
            if a.get("image_id") in remap:
                anns.append(dict(a, id=len(anns) + 1, image_id=remap[a["image_id"]]))
        cats = cats or data.get("categories")
    return {"images": images, "annotations": anns,
            "categories": cats or [{"id": 1, "name": "person"}]}


def coco_keypoint_stats(coco, results: List[dict], image_ids: List[int]) -> Dict[str, float]:
    """Run COCOeval (iouType keypoints) and return the ten stats by name."""
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {k: 0.0 for k in STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(max(v, 0.0)) for k, v in zip(STAT_NAMES, ev.stats)}


def evaluate_coco(estimator: Callable, ann_file: str, images_dir: str,
                  boxes_by_image: Optional[Dict[int, Tuple[np.ndarray, np.ndarray]]] = None,
                  progress: bool = False, limit: Optional[int] = None) -> Dict:
    """Run ``estimator`` over the images of a COCO keypoints file and score it.

    ``estimator(img) -> PoseResult`` (bottom-up or top-down with its own detector), or for a
    top-down estimator with ``boxes_by_image`` {image_id: (boxes xywh, scores)}:
    ``estimator(img, boxes=...)``. Returns the ten COCO stats, the number of images and the
    results list (COCO results format).
    """
    if isinstance(ann_file, (list, tuple)):  # several (annotation file, images dir) pairs
        ann_file, images_dir = merge_coco(ann_file), images_dir or "/"
    coco = load_coco(ann_file)
    if not os.path.isdir(images_dir):
        raise InputError("images directory not found: %s" % images_dir)
    img_ids = sorted(coco.getImgIds())
    if limit:
        img_ids = img_ids[:limit]
    if not img_ids:
        raise InputError("annotation file lists no images: %s" % ann_file)
    it = img_ids
    if progress:
        from .log import progress_bar

        it = progress_bar(img_ids, desc="eval", unit="img", enabled=True) or img_ids
    results: List[dict] = []
    for iid in it:
        info = coco.loadImgs(iid)[0]
        img = read_image(os.path.join(images_dir, info["file_name"]))
        if boxes_by_image is not None:
            boxes, box_scores = boxes_by_image.get(iid, (np.zeros((0, 4), np.float32), None))
            res = estimator(img, boxes=boxes, box_scores=box_scores)
        else:
            res = estimator(img)
        results.extend(res.to_coco_results(iid))
    stats = coco_keypoint_stats(coco, results, img_ids)
    return {"stats": stats, "images": len(img_ids), "people": len(results), "results": results}


# ----------------------------------------------------------------------------------------------
# AP over resampled image sets (bootstrap) and AP against a reference model's own detections
# ----------------------------------------------------------------------------------------------
class KeypointEval:
    """COCOeval (keypoints) of one results list against one ground truth, kept per image.

    ``COCOeval.evaluate()`` runs once; :meth:`ap` then gives AP (OKS 0.50:0.95, area "all",
    20 detections per image: COCO's headline number) over any multiset of the images -- a
    bootstrap resample -- by re-running only the accumulation (a sort), exactly as
    ``COCOeval.accumulate`` does it. ``ap()`` over all images equals COCOeval's AP.
    ``sigmas``: per-keypoint OKS sigmas (default COCO-17's).
    """

    def __init__(self, coco_gt, results: List[dict], image_ids: List[int],
                 sigmas: Optional[np.ndarray] = None):
        from pycocotools.cocoeval import COCOeval

        self.image_ids = list(image_ids)
        self._per: List[Optional[dict]] = [None] * len(self.image_ids)
        if not results:
            gts = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=self.image_ids, iscrowd=None))
            per_img: Dict[int, int] = {}
            for g in gts:
                if not g.get("iscrowd", 0) and g.get("num_keypoints", 0) > 0:
                    per_img[g["image_id"]] = per_img.get(g["image_id"], 0) + 1
            self._empty_gt = [per_img.get(i, 0) for i in self.image_ids]
            return
        self._empty_gt = None
        with contextlib.redirect_stdout(io.StringIO()):
            dt = coco_gt.loadRes(results)
            ev = COCOeval(coco_gt, dt, "keypoints")
            ev.params.imgIds = self.image_ids
            if sigmas is not None:
                ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
            ev.evaluate()
        p = ev.params
        self.iou_thrs, self.rec_thrs, self.max_det = p.iouThrs, p.recThrs, p.maxDets[-1]
        pos = {iid: i for i, iid in enumerate(p.imgIds)}     # evalImgs: [category][area][image]
        for k, iid in enumerate(self.image_ids):   # category 0, area range 0 ("all")
            self._per[k] = ev.evalImgs[pos[iid]]

    def ap(self, idx: Optional[Sequence[int]] = None) -> float:
        """AP over the images at positions ``idx`` (repeats allowed; default all). NaN when
        those images hold no ground-truth person."""
        idx = range(len(self.image_ids)) if idx is None else idx
        if self._empty_gt is not None:  # no detections at all
            return 0.0 if sum(self._empty_gt[i] for i in idx) else float("nan")
        E = [self._per[i] for i in idx]
        E = [e for e in E if e is not None]
        if not E:
            return float("nan")
        md = self.max_det
        npig = int(sum(np.count_nonzero(e["gtIgnore"] == 0) for e in E))
        if npig == 0:
            return float("nan")
        scores = np.concatenate([np.asarray(e["dtScores"][:md], np.float64) for e in E])
        T = len(self.iou_thrs)
        if scores.size == 0:
            return 0.0
        order = np.argsort(-scores, kind="mergesort")
        dtm = np.concatenate([e["dtMatches"][:, :md] for e in E], axis=1)[:, order]
        dtig = np.concatenate([e["dtIgnore"][:, :md] for e in E], axis=1)[:, order]
        tps = np.logical_and(dtm, np.logical_not(dtig))
        fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtig))
        tp = np.cumsum(tps, axis=1, dtype=np.float64)
        fp = np.cumsum(fps, axis=1, dtype=np.float64)
        rc = tp / npig
        pr = tp / (fp + tp + np.spacing(1))
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]   # COCOeval's envelope
        nd = pr.shape[1]
        total = 0.0
        for t in range(T):
            inds = np.searchsorted(rc[t], self.rec_thrs, side="left")
            ok = inds < nd
            total += float(pr[t][inds[ok]].sum())          # unreached recall: precision 0
        return total / (T * len(self.rec_thrs))


def bootstrap(fn: Callable[[np.ndarray], float], n_items: int, n_boot: int = 1000,
              seed: int = 0) -> np.ndarray:
    """``fn(indices)`` over ``n_boot`` resamples (with replacement) of ``n_items`` items; NaN
    results (a resample without ground truth) are dropped."""
    rng = np.random.default_rng(seed)
    vals = np.array([fn(rng.integers(0, n_items, n_items)) for _ in range(int(n_boot))], np.float64)
    return vals[np.isfinite(vals)]


def interval(samples: np.ndarray, level: float = 0.95) -> Tuple[float, float]:
    """Percentile interval of bootstrap samples."""
    if len(samples) == 0:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    lo, hi = np.percentile(samples, [100 * a, 100 * (1 - a)])
    return float(lo), float(hi)


# the COCO-style area of a person known only by its keypoints: the keypoint extent (at least
# 32x32 px), times 0.53 (COCO's mean ratio of segment area to box area for people)
PSEUDO_AREA_MIN = 32.0 * 32.0
PSEUDO_AREA_RATIO = 0.53


def pose_area(kp: np.ndarray) -> float:
    """COCO-style area of one pose ``[K,3]`` from its found keypoints (score > 0)."""
    v = kp[kp[:, 2] > 0]
    if len(v) == 0:
        return PSEUDO_AREA_MIN * PSEUDO_AREA_RATIO
    w = float(v[:, 0].max() - v[:, 0].min())
    h = float(v[:, 1].max() - v[:, 1].min())
    return max(w * h, PSEUDO_AREA_MIN) * PSEUDO_AREA_RATIO


def oks_matrix(refs: np.ndarray, others: np.ndarray, sigmas: np.ndarray,
               ref_areas: Optional[np.ndarray] = None) -> np.ndarray:
    """OKS of every pose of ``others`` ``[M,K,3]`` against every reference pose ``refs``
    ``[N,K,3]``: ``[N,M]``. COCO's convention: the reference's found keypoints (score > 0) are the
    denominator, a keypoint the other pose lacks scores 0, the area is the reference's
    (:func:`pose_area` unless ``ref_areas`` is given). THE OKS of edgepose (the INT8 gate's
    matching, the tracker's association)."""
    refs = np.asarray(refs, np.float64).reshape(-1, len(sigmas), 3)
    others = np.asarray(others, np.float64).reshape(-1, len(sigmas), 3)
    if ref_areas is None:
        ref_areas = np.array([pose_area(r) for r in refs], np.float64)
    vr = refs[:, None, :, 2] > 0                       # [N,1,K]
    vo = others[None, :, :, 2] > 0                     # [1,M,K]
    d2 = ((refs[:, None, :, :2] - others[None, :, :, :2]) ** 2).sum(-1)   # [N,M,K]
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    e = d2 / (2.0 * np.asarray(ref_areas, np.float64)[:, None, None] * var[None, None])
    num = np.where(vr & vo, np.exp(-e), 0.0).sum(-1)
    den = vr.sum(-1)
    return np.where(den > 0, num / np.maximum(den, 1), 0.0)


def pseudo_ground_truth(poses: Sequence[np.ndarray], sizes: Sequence[Tuple[int, int]],
                        num_keypoints: int = 17, scores: Optional[Sequence[np.ndarray]] = None,
                        min_score: float = 0.0, min_keypoints: int = 1) -> dict:
    """A COCO keypoints document whose people are a reference model's detections.

    ``poses[i]``: ``[P, K, 3]`` keypoints of image ``i`` (score > 0 = found, marked visible);
    ``sizes[i]``: (height, width). Image ids are 1..N. People with no found keypoint are left
    out (COCOeval would ignore them). A reference person scoring below ``min_score``
    (``scores[i]``: ``[P]``) or with fewer than ``min_keypoints`` keypoints becomes an *ignored*
    region (``iscrowd`` 1: a detection matching it is neither a hit nor a false positive), the
    way COCO treats people too unclear to label. Scoring another model's results against this
    document is a label-free AP: 1.0 when it finds exactly the reference's poses.
    """
    images, anns = [], []
    for i, (kps, (h, w)) in enumerate(zip(poses, sizes)):
        images.append({"id": i + 1, "width": int(w), "height": int(h), "file_name": "%d" % (i + 1)})
        sc = None if scores is None else np.asarray(scores[i], np.float64).reshape(-1)
        for j, kp in enumerate(np.asarray(kps, np.float64).reshape(-1, num_keypoints, 3)):
            vis = kp[:, 2] > 0
            if not np.any(vis):
                continue
            crowd = int((sc is not None and sc[j] < min_score) or vis.sum() < min_keypoints)
            pts = kp[vis, :2]
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            flat = np.zeros((num_keypoints, 3))
            flat[vis, :2] = kp[vis, :2]
            flat[vis, 2] = 2
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": crowd,
                         "num_keypoints": int(vis.sum()), "area": pose_area(kp),
                         "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                         "keypoints": [round(float(v), 3) for v in flat.reshape(-1)]})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def results_entries(poses: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> List[dict]:
    """COCO results entries for image ids 1..N (matching :func:`pseudo_ground_truth`)."""
    out = []
    for i, (kps, sc) in enumerate(zip(poses, scores)):
        for kp, s in zip(np.asarray(kps, np.float64), np.asarray(sc, np.float64).reshape(-1)):
            k = kp.copy()
            k[k[:, 2] <= 0] = 0.0
            out.append({"image_id": i + 1, "category_id": 1, "score": float(s),
                        "keypoints": [round(float(v), 3) for v in k.reshape(-1)]})
    return out
