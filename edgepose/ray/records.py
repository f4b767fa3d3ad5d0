"""A job's work folder and its records: ``OUT/.edgepose-ray/<job>/items/<item>.json``, one per
finished item, written atomically (``edgepose.files``) and once; a PoseResult recorded at full
precision and read back identical."""
import contextlib
import json
import os
import shutil
from typing import Optional

import numpy as np

from ..errors import InputError

WORK_DIR = ".edgepose-ray"
RECORD_VERSION = 1


def work_root(out_dir: str) -> str:
    """Where the jobs writing into ``out_dir`` keep their work folders."""
    return os.path.join(out_dir, WORK_DIR)


def record_result(res) -> dict:
    """A PoseResult at full precision (float32 values are exact as JSON floats)."""
    tb = getattr(res, "track_boxes", None)
    return {"kp": res.keypoints.tolist(), "scores": res.scores.tolist(),
            "boxes": None if res.boxes is None else res.boxes.tolist(),
            "ids": None if res.track_ids is None else [int(i) for i in res.track_ids],
            "track_boxes": None if tb is None else np.asarray(tb, np.float32).tolist()}


def schema_of(res) -> dict:
    return {"keypoint_names": list(res.keypoint_names), "skeleton": [list(s) for s in res.skeleton],
            "to_coco17": res.to_coco17}


def pose_result(frame: dict, schema: dict):
    """The PoseResult of a recorded frame, identical to the worker's."""
    from ..results import PoseResult

    k = len(schema["keypoint_names"])
    res = PoseResult(np.asarray(frame["kp"], np.float32).reshape(-1, k, 3),
                     np.asarray(frame["scores"], np.float32), schema["keypoint_names"],
                     schema["skeleton"], schema["to_coco17"],
                     boxes=None if frame.get("boxes") is None else np.asarray(frame["boxes"], np.float32),
                     track_ids=frame.get("ids"))
    if frame.get("track_boxes") is not None:
        res.track_boxes = np.asarray(frame["track_boxes"], np.float32).reshape(-1, 4)
    return res


class JobDir:
    """A job's work folder: ``items/<item>.json`` (one record per finished item, written
    atomically), ``job.json`` (what the job is), ``workers.json`` (each worker's pid and host,
    for operators) and a lock, so that two drivers do not run one job at once."""

    def __init__(self, root: str, manifest: dict):
        from ..files import write_json

        self.root = root
        self.items_dir = os.path.join(root, "items")
        os.makedirs(self.items_dir, exist_ok=True)
        self._lock = open(os.path.join(root, "lock"), "w")
        try:
            import fcntl
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except OSError:
            self._lock.close()
            raise InputError("another edgepose job runs on %s" % root)
        self.job = manifest["job"]
        if not os.path.exists(os.path.join(root, "job.json")):
            write_json(os.path.join(root, "job.json"), manifest)

    def path(self, item_id: str) -> str:
        return os.path.join(self.items_dir, item_id + ".json")

    def load(self, item_id: str) -> Optional[dict]:
        p = self.path(item_id)
        if not os.path.exists(p):
            return None
        try:
            with open(p, "r", encoding="utf-8") as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return None        # not with atomic writes; the item would simply run again
        if not isinstance(rec, dict) or rec.get("version") != RECORD_VERSION or \
                rec.get("job") != self.job or rec.get("item") != item_id:
            return None
        return rec

    def save(self, item_id: str, rec: dict) -> None:
        from ..files import write_atomic

        rec = dict(rec, version=RECORD_VERSION, job=self.job, item=item_id)
        write_atomic(self.path(item_id), json.dumps(rec, separators=(",", ":")))

    def drop(self, item_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(item_id))

    def write_workers(self, workers: list) -> None:
        """``workers.json``: each worker's pid and host (for operators), as the pool describes them."""
        from ..files import write_json

        write_json(os.path.join(self.root, "workers.json"), {"job": self.job, "workers": workers})

    def close(self, remove: bool) -> None:
        """``remove``: the job is done. A job that recorded nothing (it failed before its first
        item: no cluster, no free CPUs) leaves nothing behind either."""
        self._lock.close()
        if remove or not os.listdir(self.items_dir):
            shutil.rmtree(self.root, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.root))     # .edgepose-ray, when no other job is left
