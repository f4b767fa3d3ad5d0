"""COCO keypoint evaluation (pycocotools) of any estimator."""
from __future__ import annotations

import contextlib
import io
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .errors import InputError
from .io import read_image, read_json

STAT_NAMES = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]


def load_coco(ann_file: str):
    """pycocotools COCO object, or InputError naming the problem."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise InputError("pycocotools is not installed: pip install 'edgepose[eval]'")
    data = read_json(ann_file, "annotation file")
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise InputError("not a COCO annotation file (needs 'images' and 'annotations'): %s" % ann_file)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


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
        try:
            from tqdm import tqdm
            it = tqdm(img_ids, desc="eval", unit="img")
        except ImportError:
            pass
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
