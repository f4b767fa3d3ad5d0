"""The workers: :class:`PoseWorker`, the Ray actor that holds one estimator and runs work
items, and :class:`WorkerPool`, the driver's side of them.

Faults are Ray's own: the actors are created with ``max_restarts`` (a worker whose process dies
is restarted, its model loads again) and ``max_task_retries`` (the calls it had not answered are
submitted again to the restarted actor, so its items run again there). The pool sees one result
per item, whichever process ran it; it notices a restart by the pid a result comes back with.
Once Ray gives up on a worker (its restarts used up) the job stops in one line; the records of
the finished items stay, and a rerun goes on from them.

Not ``ray.util.ActorPool``: it keeps one call in flight per actor, and an item then costs ~8 ms
beyond its model time against ~3 ms with two queued (``queue_depth``; benchmarks/ray_throughput.py,
"per-item overhead"). Not Ray Data: its actor pool streams blocks to a dataset, while the records
here are written on the driver, one per item, as each finishes.
"""
import contextlib
import hashlib
import os
import socket
import time
from collections import deque
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from .. import __version__
from ..errors import EdgeposeError, InputError, ModelError, first_line
from ..frames import SeekMismatch
from ..log import logger
from .plan import FrameRange, frame_checksum
from .records import record_result, schema_of

MAX_RESTARTS = 3          # restarts of one worker by Ray (the model loads again each time)
MAX_TASK_RETRIES = 3      # runs again of one item whose worker died under it (on the restarted one)
QUEUE_DEPTH = 2           # items queued per worker: the next one is there when one finishes
START_TIMEOUT_S = 300.0   # the workers must be up by then (a cluster without free CPUs)


def model_digest(path: str) -> str:
    """sha256 of a model file, or of a bundle directory's files (names and bytes)."""
    from ..files import sha256_file

    if not os.path.isdir(path):
        return sha256_file(path)
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(os.path.relpath(p, path).encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


class PoseWorker:
    """A Ray actor (:class:`WorkerPool` wraps it with ``ray.remote``; this module does not
    import ray): loads the estimator once, then runs work items and returns their results.
    Ray runs the constructor again when it restarts the actor."""

    def __init__(self, estimator: dict, digest: Optional[str] = None):
        self.error: Optional[BaseException] = None
        self.est = None
        try:
            if digest is not None and model_digest(estimator["model"]) != digest:
                raise ModelError("%s on %s is not the driver's model (other bytes)"
                                 % (estimator["model"], socket.gethostname()))
            from ..runner import EstimatorOptions

            self.est = EstimatorOptions.from_dict(estimator).load()
        except Exception as e:      # raised by hello() and run(): one line on the driver
            self.error = e

    def hello(self) -> dict:
        if self.error is not None:
            raise self.error
        return {"pid": os.getpid(), "host": socket.gethostname(), "edgepose": __version__}

    def run(self, item: dict) -> dict:
        if self.error is not None:
            raise self.error
        t0, c0 = time.time(), time.perf_counter()
        kind = item["kind"]
        if kind == "frames":
            try:
                out = self._frames(item, item.get("seek", True))
            except SeekMismatch as e:
                logger.debug("%s; decoding from the start", e)
                out = self._frames(item, False)
        else:
            out = self._images(item)
        out.update(id=item["id"], pid=os.getpid(), t_start=t0, t_end=time.time(),
                   busy_s=time.perf_counter() - c0)
        return out

    def _estimate(self, img, item, boxes):
        if not item.get("use_boxes"):
            return self.est(img)
        b, s = boxes if boxes is not None else ([], None)
        return self.est(img, boxes=np.asarray(b, np.float32).reshape(-1, 4),
                        box_scores=None if s is None else np.asarray(s, np.float32))

    def _meta_tracking(self) -> dict:
        meta = getattr(self.est, "meta", None)
        return {k: (meta.get(k) if meta is not None else None) for k in ("tracking", "smoothing")}

    def _images(self, item: dict) -> dict:
        import cv2

        from ..draw import draw_poses
        from ..io import read_image
        from ..runner import image_entry

        entries, drawn = [], []
        for e in item["images"]:
            img = read_image(e["path"])
            res = self._estimate(img, item, e.get("boxes"))
            iid = e["image_id"]
            if item["kind"] == "eval":       # evaluate_coco's results
                entries.append({"image_id": iid, "coco": res.to_coco_results(iid)})
                continue
            entries.append({"image_id": iid, "people": len(res),       # cmd_infer's
                            "coco": res.to_coco_results(iid) if res.to_coco17 is not None else [],
                            "summary": image_entry(res, e["path"], iid)})
            if item.get("draw"):
                ok, buf = cv2.imencode(".jpg", draw_poses(img, res))    # io.write_image's bytes
                if not ok:
                    raise InputError("cannot encode image as .jpg: %s" % e["path"])
                drawn.append(buf.tobytes())
        return {"entries": entries, "drawn": drawn, "frames": len(entries)}

    def _frames(self, item: dict, seek: bool) -> dict:
        start, boxes = item["start"], item.get("boxes") or {}
        frames = FrameRange(item["path"], start, item["end"], seek=seek)
        kept, schema = [], None
        if hasattr(self.est, "start_sequence"):   # as run_video: crops follow the last pose
            self.est.start_sequence()
        for i, t, img in frames:
            res = self._estimate(img, item, boxes.get(str(i)))
            schema = schema or dict(schema_of(res), **self._meta_tracking())
            f = {"frame": i, **record_result(res)}
            f["crc"] = frame_checksum(img)
            kept.append(f)
        return {"frames_out": kept, "schema": schema, "mode": frames.mode,
                "pts_ok": frames.pts_ok, "eof": frames.eof, "frames": len(kept),
                "processed": len(kept)}


class _Worker:
    """The driver's view of one actor: its process (pid, host; every pid it had), its counts."""

    def __init__(self, index: int, actor):
        self.index, self.actor = index, actor
        self.state = "starting"        # starting | ok | gone
        self.pid: Optional[int] = None
        self.host: Optional[str] = None
        self.pids: "list[int]" = []
        self.inflight = 0
        self.items = self.frames = 0
        self.busy_s = 0.0

    def describe(self) -> dict:
        return {"worker": self.index, "pid": self.pid, "host": self.host, "state": self.state,
                "restarts": max(0, len(self.pids) - 1), "pids": list(self.pids)}


class WorkerPool:
    """``workers`` :class:`PoseWorker` actors (``threads`` Ray CPUs each), spread over the
    cluster and started at once; :meth:`run` keeps ``queue_depth`` items queued on each and
    hands each item's result to ``on_result(item, out, worker)`` once."""

    def __init__(self, ray, workers: int, threads: int, estimator: dict, jobdir,
                 digest: Optional[str], queue_depth: int = QUEUE_DEPTH):
        self.ray, self.jobdir, self.depth = ray, jobdir, max(1, int(queue_depth))
        cls = ray.remote(PoseWorker).options(num_cpus=threads, max_restarts=MAX_RESTARTS,
                                             max_task_retries=MAX_TASK_RETRIES,
                                             scheduling_strategy="SPREAD")
        self.workers = [_Worker(i, cls.remote(estimator, digest)) for i in range(workers)]
        self.rerun = 0
        t0 = time.perf_counter()
        hellos = {w.actor.hello.remote(): w for w in self.workers}
        while hellos:
            ready, _ = ray.wait(list(hellos), num_returns=1, timeout=1.0)
            if not ready and time.perf_counter() - t0 > START_TIMEOUT_S:
                raise EdgeposeError("%d of %d workers did not start within %.0f s (no free CPUs on "
                                    "the cluster?)" % (len(hellos), workers, START_TIMEOUT_S))
            for ref in ready:
                w = hellos.pop(ref)
                info = self._get(ref, w)
                if info.get("edgepose") != __version__:
                    raise EdgeposeError("worker %d runs edgepose %s, this driver %s: install one "
                                        "version on every node" % (w.index, info.get("edgepose"),
                                                                   __version__))
                w.state, w.pid, w.host = "ok", info["pid"], info["host"]
                w.pids.append(w.pid)
        self.startup_s = time.perf_counter() - t0
        jobdir.write_workers(self.describe())

    def describe(self) -> list:
        return [w.describe() for w in self.workers]

    def _get(self, ref, w: _Worker):
        """A call's result; a worker's own exception raised here as it is (one line)."""
        ex = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except ex.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause
            raise EdgeposeError("worker %d failed: %s" % (w.index, first_line(e)))
        except ex.RayError as e:        # Ray gave up: the actor's restarts are used up
            w.state = "gone"
            self.jobdir.write_workers(self.describe())
            raise EdgeposeError("worker %d (pid %s) is gone after %d restarts (%s): a rerun "
                                "continues from the items recorded"
                                % (w.index, w.pid, max(0, len(w.pids) - 1), first_line(e)))

    def _restarted(self, w: _Worker, out: dict) -> None:
        logger.warning("worker %d (pid %s) died; Ray restarted it (pid %d) and ran its unfinished "
                       "items again" % (w.index, w.pid, out["pid"]))
        w.pid = out["pid"]
        w.pids.append(w.pid)
        self.jobdir.write_workers(self.describe())

    def run(self, items: Sequence[dict], on_result: "Callable[[dict, dict, _Worker], None]") -> None:
        ray = self.ray
        queue = deque(items)
        inflight: "Dict[Any, Tuple[dict, _Worker, Optional[int]]]" = {}
        while queue or inflight:
            for level in range(1, self.depth + 1):     # one item each first, then the queue
                for w in self.workers:
                    if queue and w.inflight < level:
                        item = queue.popleft()
                        inflight[w.actor.run.remote(item)] = (item, w, w.pid)
                        w.inflight += 1
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                item, w, pid = inflight.pop(ref)
                w.inflight -= 1
                out = self._get(ref, w)
                if out["pid"] not in w.pids:
                    self._restarted(w, out)
                if out["pid"] != pid:      # its worker died after it was sent: Ray ran it again
                    self.rerun += 1
                w.items += 1
                w.frames += int(out.get("frames", 0))
                w.busy_s += float(out.get("busy_s", 0.0))
                on_result(item, out, w)

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                self.ray.kill(w.actor, no_restart=True)
