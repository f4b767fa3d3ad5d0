"""Pose estimation on Ray: many images, long videos and whole COCO sets over worker actors.

``edgepose infer SOURCE... --ray [ADDRESS]`` and ``edgepose eval ... --ray [ADDRESS]`` run here,
and so do the Python entry points :func:`infer` and :func:`evaluate`. For one source they write
the same files, with the same bytes, as the commands without ``--ray``.

- Workers: one Ray actor per worker; each loads the estimator once (``threads`` inference
  threads, one Ray CPU per thread).
- Work items: ``images_per_item`` images, or the frames ``[start, end)`` of a video
  (``chunk_frames`` of them).
- Tracking (``--track``): the workers record every frame's people, the driver tracks them in
  frame order while it replays the video (below): the very tracker run of ``edgepose infer
  --track``, at ~0.3 ms a frame.
- Records: each finished item's results are written atomically (``edgepose.io``) to the job's
  work folder, ``OUT/.edgepose-ray/<job>/items/<item>.json``; ``<job>`` hashes the model's
  bytes, the sources and every option that changes results. The outputs are merged from the
  records in source order, then image order / frame number. A rerun of an interrupted job skips
  the items recorded; the work folder goes once the outputs are written.
- Videos are merged by replaying the records through ``edgepose.video.run_video`` (the code
  path of ``edgepose infer VIDEO``): the driver decodes the video once more, draws, writes the
  video / JSON lines / CSV / plot, and checks every frame against the checksum its worker
  recorded, so a frame range that seeking decoded differently is found and run again.
- Faults: a worker whose process dies is restarted by Ray (its model loads again) and the items
  it held run again; an item's results are recorded once, so nothing is lost or duplicated.
- Ray: without an address (``"local"``) a Ray instance on this machine, started for the job and
  shut down after it; ``"auto"`` or ``HOST:PORT`` joins a running cluster (left running). On a
  cluster, every node needs this edgepose installed and the model and the sources at the same
  paths (shared storage); the driver (this process) writes every output.

``ray`` is optional (``pip install 'edgepose[ray]'``): imported inside the functions here only,
and never by the rest of edgepose.
"""
import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import zlib
from collections import deque
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__
from .errors import EdgeposeError, InputError, ModelError, first_line
from .log import logger

__all__ = ["infer", "evaluate", "FrameRange", "check_address", "log_summary", "work_root",
           "DEFAULT_WORKERS", "DEFAULT_CHUNK_FRAMES", "IMAGES_PER_ITEM"]

DEFAULT_WORKERS = 2
DEFAULT_CHUNK_FRAMES = 200
# Images per work item. Measured (benchmarks/ray_throughput.py, 2 CPUs, Lightweight OpenPose
# 368x496 at ~175 ms an image): an item costs 7.5 ms beyond its model time when it is alone in
# flight (the actor call, the result's transfer, the record's durable write) and 2.7-3.1 ms with
# two in flight per worker (QUEUE_DEPTH); 1 image per item loses ~1.6 %, 4 lose ~0.4 % and write
# a quarter of the records, while a lost item still costs little and the last ones spread.
IMAGES_PER_ITEM = 4
QUEUE_DEPTH = 2           # items queued per worker: the next one is there when one finishes
MAX_RESTARTS = 3          # restarts of one worker (Ray restarts a dead actor; the model reloads)
MAX_ATTEMPTS = 4          # runs of one item whose worker died under it before the job gives up
START_TIMEOUT_S = 300.0   # the workers must be up by then (a cluster without free CPUs)
WORK_DIR = ".edgepose-ray"
RECORD_VERSION = 1



# ----------------------------------------------------------------------------------------------
# Ray: import, connect, shut down
# ----------------------------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("ray is not installed: pip install 'edgepose[ray]'")
    return ray




def check_address(address: Optional[str]) -> str:
    """``"local"`` (None too: a Ray instance on this machine), ``"auto"`` or
    ``[ray://]HOST:PORT``. An address must accept a TCP connection within 3 s, so that a wrong
    one fails at once in one line rather than after Ray's own 20-second wait."""
    if address is None or address == "local":
        return "local"
    if address == "auto":
        try:        # the cluster Ray would pick: RAY_ADDRESS, else the last `ray start` here
            from ray._private.services import get_ray_address_from_environment
        except ImportError:
            return address
        try:
            found = get_ray_address_from_environment("auto", None)
        except ConnectionError:
            raise InputError("--ray auto: no running Ray cluster found on this machine (start one "
                             "with `ray start --head`, or give its address)")
        except Exception:           # noqa: B902 - Ray's private helper changed: let ray.init say
            return address
        host, sep, port = str(found or "").rpartition(":")
        if sep and port.isdigit():
            try:
                socket.create_connection((host, int(port)), timeout=3.0).close()
            except OSError as e:
                raise InputError("--ray auto: the Ray cluster last started here (%s) does not answer "
                                 "(%s): start one, or give the address of a running one"
                                 % (found, e.strerror or first_line(e)))
        return address
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError("--ray %s: expected 'auto' or HOST:PORT (e.g. 10.0.0.5:6379), or no "
                         "address for a Ray instance on this machine" % address)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=3.0).close()
    except OSError as e:
        raise InputError("no Ray cluster at %s: %s" % (address, e.strerror or first_line(e)))
    return address


@contextlib.contextmanager
def _ray_messages_to_log():
    """Ray prints its raylet's error messages ("A worker died or was killed ...") on the
    driver's *stdout*; within, their first line goes to edgepose's debug log instead, and
    edgepose says in one line what happened and what it does about it."""
    try:
        import ray._private.worker as rw
        orig = rw.print_to_stdstream
    except (ImportError, AttributeError):
        yield
        return

    def to_log(data, *args, **kwargs):
        for line in data.get("lines", ()):
            text = str(line).strip()
            if text:
                logger.debug("ray: %s", text.splitlines()[0][:300])

    rw.print_to_stdstream = to_log
    try:
        yield
    finally:
        rw.print_to_stdstream = orig


@contextlib.contextmanager
def _sigint_deferred():
    """Within: a first Ctrl-C is held back and raised as KeyboardInterrupt on leaving (ray.init
    and ray.shutdown interrupted half-way leave a process that crashes when it exits); a second
    one interrupts at once."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        yield
        return
    got = []

    def hold(signum, frame):
        if got:                     # a second Ctrl-C: now
            raise KeyboardInterrupt
        got.append(signum)

    old = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        raise KeyboardInterrupt


class RaySession:
    """Within: connected to Ray. ``"local"``: a Ray instance started here (``num_cpus``, no
    dashboard, shut down on exit); ``"auto"`` / an address: a running cluster (left running).
    A process already connected (``ray.init`` called by the caller) is used as it is."""

    def __init__(self, address: str = "local", num_cpus: Optional[int] = None):
        self.address = check_address(address)
        self.num_cpus = num_cpus
        self.ray = _import_ray()
        self.started = False
        self._quiet = None

    def __enter__(self):
        ray = self.ray
        self._quiet = _ray_messages_to_log()
        self._quiet.__enter__()
        if ray.is_initialized():
            return self
        opts = dict(log_to_driver=False, logging_level=logging.ERROR, namespace="edgepose")
        try:
            with _sigint_deferred():
                if self.address == "local":
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                    ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                             _node_ip_address="127.0.0.1", **opts)
                else:
                    ray.init(address=self.address, **opts)
        except KeyboardInterrupt:
            with _sigint_deferred():
                if ray.is_initialized():
                    ray.shutdown()
            self._quiet.__exit__(None, None, None)
            raise
        except (ConnectionError, RuntimeError, ValueError) as e:
            self._quiet.__exit__(None, None, None)
            if self.address == "local":
                raise InputError("cannot start a local Ray instance: %s" % first_line(e))
            hint = "" if os.environ.get("RAY_AUTH_MODE") else \
                " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token)"
            raise InputError("cannot connect to the Ray cluster at %s: %s%s"
                             % (self.address, first_line(e), hint))
        self.started = True
        return self

    def __exit__(self, *exc):
        try:
            if self.started:
                with _sigint_deferred():
                    self.ray.shutdown()
        finally:
            self._quiet.__exit__(None, None, None)
        return False

    def cpus(self) -> float:
        return float(self.ray.cluster_resources().get("CPU", 0.0))


# ----------------------------------------------------------------------------------------------
# video frame ranges
# ----------------------------------------------------------------------------------------------
class SeekMismatch(Exception):
    """A seeked frame's timestamp does not give the frame number it was given."""


class FrameRange:
    """``(index, time_s, frame)`` of a video's frames ``first <= index < end`` (``end`` None: to
    the end), numbered and timed as :class:`edgepose.video.FrameSource` numbers them (the
    frames of ``edgepose infer VIDEO``; an undecodable frame is skipped and keeps its number).

    ``seek=True``: seek with ``CAP_PROP_POS_FRAMES`` (FFmpeg goes to the keyframe before and
    decodes forward) and check each frame's timestamp, ``round(POS_MSEC * fps / 1000)``, against
    its number: a first frame that disagrees makes it decode from frame 0 instead (``mode``
    "sequential"), a later one raises :class:`SeekMismatch`. ``seek=False``: decode from frame 0
    and skip to ``first`` (always right, slower).

    After iterating: ``mode``; ``pts_ok`` (every frame's timestamp gave its number: the
    timestamps run at a constant rate); ``eof`` (the video ended before ``end``)."""

    def __init__(self, path: str, first: int = 0, end: Optional[int] = None, seek: bool = True):
        self.path, self.first, self.end, self.seek = path, int(first), end, bool(seek)
        self.mode = "sequential"
        self.pts_ok = True
        self.eof = False
        self.fps = 30.0

    @staticmethod
    def _pts_index(cap, fps: float) -> int:
        import cv2
        return int(round(cap.get(cv2.CAP_PROP_POS_MSEC) * fps / 1000.0))

    def __iter__(self) -> Iterator[Tuple[int, float, np.ndarray]]:
        import cv2

        from .video import open_source

        src = open_source(self.path)
        try:
            fps = float(src.cap.get(cv2.CAP_PROP_FPS) or 0.0) if src.cap is not None else 0.0
            self.fps = src.fps
            pending = None
            if self.first > 0 and self.seek and fps > 0 and src.seek(self.first):
                got = src.read()
                if got is not None and self._pts_index(src.cap, fps) == got[0]:
                    self.mode, pending = "seek", got
                else:
                    src.release()
                    src = open_source(self.path)
            while True:
                if pending is not None:
                    got, pending = pending, None
                else:
                    got = src.read()
                if got is None:
                    self.eof = True
                    return
                i, t, img = got
                if self.end is not None and i >= self.end:
                    return
                if i < self.first:
                    continue
                if fps <= 0 or self._pts_index(src.cap, fps) != i:
                    if self.mode == "seek":
                        raise SeekMismatch("%s: frame %d has the timestamp of frame %d"
                                           % (self.path, i, self._pts_index(src.cap, fps)))
                    self.pts_ok = False
                yield i, t, img
        finally:
            src.release()


def frame_checksum(img: np.ndarray) -> int:
    """CRC-32 of a frame's pixels (a seeked frame must be the frame decoding from 0 gives)."""
    return zlib.crc32(np.ascontiguousarray(img).data) & 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------
# recorded results
# ----------------------------------------------------------------------------------------------
def _record_result(res) -> dict:
    """A PoseResult at full precision (float32 values are exact as JSON floats)."""
    tb = getattr(res, "track_boxes", None)
    return {"kp": res.keypoints.tolist(), "scores": res.scores.tolist(),
            "boxes": None if res.boxes is None else res.boxes.tolist(),
            "ids": None if res.track_ids is None else [int(i) for i in res.track_ids],
            "track_boxes": None if tb is None else np.asarray(tb, np.float32).tolist()}


def _schema(res) -> dict:
    return {"keypoint_names": list(res.keypoint_names), "skeleton": [list(s) for s in res.skeleton],
            "to_coco17": res.to_coco17}


def pose_result(frame: dict, schema: dict):
    """The PoseResult of a recorded frame, identical to the worker's."""
    from .results import PoseResult

    k = len(schema["keypoint_names"])
    res = PoseResult(np.asarray(frame["kp"], np.float32).reshape(-1, k, 3),
                     np.asarray(frame["scores"], np.float32), schema["keypoint_names"],
                     schema["skeleton"], schema["to_coco17"],
                     boxes=None if frame.get("boxes") is None else np.asarray(frame["boxes"], np.float32),
                     track_ids=frame.get("ids"))
    if frame.get("track_boxes") is not None:
        res.track_boxes = np.asarray(frame["track_boxes"], np.float32).reshape(-1, 4)
    return res


# ----------------------------------------------------------------------------------------------
# the worker actor
# ----------------------------------------------------------------------------------------------
def _model_digest(path: str) -> str:
    """sha256 of a model file, or of a bundle directory's files (names and bytes)."""
    from .files import sha256_file

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
    """A Ray actor (the driver wraps it with ``ray.remote``; this module does not import ray):
    loads the estimator once, then runs work items and returns their results."""

    def __init__(self, estimator: dict, model_digest: Optional[str] = None):
        self.error: Optional[BaseException] = None
        self.est = None
        try:
            if model_digest is not None and _model_digest(estimator["model"]) != model_digest:
                raise ModelError("%s on %s is not the driver's model (other bytes)"
                                 % (estimator["model"], socket.gethostname()))
            from .runner import EstimatorOptions

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

        from .draw import draw_poses
        from .io import read_image
        from .runner import image_entry

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
            schema = schema or dict(_schema(res), **self._meta_tracking())
            f = {"frame": i, **_record_result(res)}
            f["crc"] = frame_checksum(img)
            kept.append(f)
        return {"frames_out": kept, "schema": schema, "mode": frames.mode,
                "pts_ok": frames.pts_ok, "eof": frames.eof, "frames": len(kept),
                "processed": len(kept)}


# ----------------------------------------------------------------------------------------------
# the work folder
# ----------------------------------------------------------------------------------------------
def _file_id(path: str) -> list:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def _job_hash(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


class JobDir:
    """A job's work folder: ``items/<item>.json`` (one record per finished item, written
    atomically), ``job.json`` (what the job is), ``workers.json`` (each worker's pid and host,
    for operators) and a lock, so that two drivers do not run one job at once."""

    def __init__(self, root: str, manifest: dict):
        from .files import write_json

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
        from .files import write_atomic

        rec = dict(rec, version=RECORD_VERSION, job=self.job, item=item_id)
        write_atomic(self.path(item_id), json.dumps(rec, separators=(",", ":")))

    def drop(self, item_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(item_id))

    def write_workers(self, slots) -> None:
        from .files import write_json

        write_json(os.path.join(self.root, "workers.json"),
                   {"job": self.job, "workers": [s.describe() for s in slots]})

    def close(self, remove: bool) -> None:
        self._lock.close()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.root))     # .edgepose-ray, when no other job is left


# ----------------------------------------------------------------------------------------------
# the scheduler
# ----------------------------------------------------------------------------------------------
class _Slot:
    def __init__(self, index: int, actor):
        self.index, self.actor = index, actor
        self.state = "starting"        # starting | ok | restarting | dead
        self.pid: Optional[int] = None
        self.host: Optional[str] = None
        self.pids: List[int] = []
        self.inflight: set = set()
        self.items = self.frames = 0
        self.busy_s = 0.0
        self.hello_tries = 0

    def describe(self) -> dict:
        return {"worker": self.index, "pid": self.pid, "host": self.host, "state": self.state,
                "restarts": max(0, len(self.pids) - 1), "pids": list(self.pids)}


def _raise_task_error(e) -> None:
    """A worker's exception raised here: edgepose's own errors as they are (one line)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        raise cause
    raise EdgeposeError("a worker failed: %s" % first_line(e))


class Scheduler:
    """Work items over worker actors: ``queue_depth`` items queued per worker; an item whose
    worker died runs again (on the restarted worker or another); ``on_result(item, out, slot)``
    gets each item's results once."""

    def __init__(self, ray, workers: int, threads: int, estimator: dict, jobdir: "JobDir",
                 model_digest: Optional[str], queue_depth: int = QUEUE_DEPTH):
        ex = ray.exceptions
        self.ray, self.jobdir, self.depth = ray, jobdir, max(1, int(queue_depth))
        self.retryable = tuple(getattr(ex, n) for n in ("RayActorError", "WorkerCrashedError",
                                                        "ObjectLostError", "NodeDiedError")
                               if hasattr(ex, n))
        self.died = getattr(ex, "ActorDiedError", ())
        cls = ray.remote(PoseWorker).options(num_cpus=threads, max_restarts=MAX_RESTARTS,
                                             max_task_retries=0, scheduling_strategy="SPREAD")
        self.slots = [_Slot(i, cls.remote(estimator, model_digest)) for i in range(workers)]
        self.hellos: "Dict[Any, _Slot]" = {s.actor.hello.remote(): s for s in self.slots}
        self.attempts: Dict[str, int] = {}
        self.rerun = 0
        t0 = time.perf_counter()
        while self.hellos:
            ready, _ = ray.wait(list(self.hellos), num_returns=1, timeout=1.0)
            if not ready and time.perf_counter() - t0 > START_TIMEOUT_S:
                raise EdgeposeError("%d of %d workers did not start within %.0f s (no free CPUs on "
                                    "the cluster?)" % (len(self.hellos), workers, START_TIMEOUT_S))
            for ref in ready:
                self._hello_done(ref)
        if not any(s.state == "ok" for s in self.slots):
            raise EdgeposeError("no worker started")
        self.startup_s = time.perf_counter() - t0
        jobdir.write_workers(self.slots)

    def _hello_done(self, ref) -> None:
        s = self.hellos.pop(ref)
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            _raise_task_error(e)         # the model did not load: the same on every worker
        except self.retryable as e:
            s.hello_tries += 1
            if len(s.pids) > MAX_RESTARTS or s.hello_tries > (10 if isinstance(e, self.died) else 300):
                s.state = "dead"
                logger.warning("worker %d is gone: %s" % (s.index, first_line(e)))
                self.jobdir.write_workers(self.slots)
            else:
                time.sleep(0.2)          # restarting: ask again
                self.hellos[s.actor.hello.remote()] = s
            return
        if info.get("edgepose") != __version__:
            raise EdgeposeError("worker %d runs edgepose %s, this driver %s: install one version "
                                "on every node" % (s.index, info.get("edgepose"), __version__))
        was = s.state
        s.state, s.pid, s.host, s.hello_tries = "ok", info["pid"], info["host"], 0
        if not s.pids or s.pids[-1] != s.pid:
            s.pids.append(s.pid)
        if was == "restarting":
            logger.info("worker %d is back (pid %d)" % (s.index, s.pid))
            self.jobdir.write_workers(self.slots)

    def run(self, items: Sequence[dict], on_result: "Callable[[dict, dict, _Slot], None]") -> None:
        ray = self.ray
        queue = deque(items)
        inflight: "Dict[Any, Tuple[dict, _Slot]]" = {}
        while queue or inflight:
            for level in range(1, self.depth + 1):     # one item each first, then the queue
                for s in self.slots:
                    if s.state == "ok" and queue and len(s.inflight) < level:
                        item = queue.popleft()
                        ref = s.actor.run.remote(item)
                        inflight[ref] = (item, s)
                        s.inflight.add(ref)
            if not inflight and not self.hellos:
                raise EdgeposeError("every worker is gone (%d restarts each); %d items left: a "
                                    "rerun continues from here" % (MAX_RESTARTS, len(queue)))
            ready, _ = ray.wait(list(inflight) + list(self.hellos), num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in self.hellos:
                    self._hello_done(ref)
                    continue
                item, s = inflight.pop(ref)
                s.inflight.discard(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    _raise_task_error(e)
                except self.retryable as e:
                    n = self.attempts[item["id"]] = self.attempts.get(item["id"], 0) + 1
                    if n >= MAX_ATTEMPTS:
                        raise EdgeposeError("item %s: its worker died %d times under it (%s)"
                                            % (item["id"], n, first_line(e)))
                    queue.appendleft(item)
                    self.rerun += 1
                    if s.state == "ok":
                        s.state = "restarting"
                        logger.warning("worker %d (pid %s) died during item %s; its items run again"
                                       % (s.index, s.pid, item["id"]))
                        self.jobdir.write_workers(self.slots)
                        self.hellos[s.actor.hello.remote()] = s
                    continue
                s.items += 1
                s.frames += int(out.get("frames", 0))
                s.busy_s += float(out.get("busy_s", 0.0))
                on_result(item, out, s)

    def close(self) -> None:
        for s in self.slots:
            with contextlib.suppress(Exception):
                self.ray.kill(s.actor, no_restart=True)


# ----------------------------------------------------------------------------------------------
# a job on the driver
# ----------------------------------------------------------------------------------------------
def _estimator_spec(model: str, threads: int, options: Optional[dict]) -> dict:
    """The workers' :class:`edgepose.runner.EstimatorOptions`, as the plain dict they receive
    (paths absolute); an unknown option is a one-line error."""
    from .runner import EstimatorOptions

    options = dict(options or {})
    for k in ("model", "threads"):
        if k in options:
            raise InputError("unknown estimator option(s): %s" % k)
    spec = EstimatorOptions.from_dict(dict(options, model=model, threads=int(threads)))
    return spec.absolute().to_dict()


def _check_model(spec: dict) -> Tuple[str, Any]:
    """One-line errors now, before Ray starts, for a model or an option the workers could not
    load; returns the model's digest and the estimator's metadata (None for TensorRT, which may
    load on the workers only)."""
    from .backends import backend_kind

    if not os.path.exists(spec["model"]):
        raise ModelError("model file not found: %s" % spec["model"])
    meta = None
    if backend_kind(spec["model"]) != "tensorrt":
        from .runner import EstimatorOptions

        meta = EstimatorOptions.from_dict(spec).load(threads=1).meta
    return _model_digest(spec["model"]), meta


def _estimator_identity(spec: dict, digest: str) -> dict:
    ident = {k: v for k, v in spec.items() if k not in ("threads", "model")}
    ident["model"] = digest
    for k in ("detector", "detector_spec"):
        if isinstance(spec[k], str) and os.path.isfile(spec[k]):
            ident[k] = _model_digest(spec[k])
    return ident


def _progress_bar(total: int, done: int, enabled: Optional[bool]):
    from .log import progress_bar

    return progress_bar(total=total, initial=done, unit="item", desc="ray", enabled=enabled)


class _Job:
    """Within: Ray connected; :meth:`run` runs items on the workers (started on first use) and
    records each one's results (``make_record(item, out)``); :meth:`stats` says how it went."""

    def __init__(self, items: List[dict], jobdir: "JobDir", spec: dict, digest: str,
                 address: str, workers: int, threads: int, progress, on_item, queue_depth: int,
                 make_record: Callable[[dict, dict], dict]):
        self.items, self.jobdir, self.spec, self.digest = items, jobdir, spec, digest
        self.workers, self.threads, self.progress, self.on_item = workers, threads, progress, on_item
        self.queue_depth, self.make_record = queue_depth, make_record
        self.session = RaySession(address, num_cpus=max(os.cpu_count() or 1, workers * threads))
        self.sched: "Optional[Scheduler]" = None
        self.bar = None
        self.t0 = time.perf_counter()
        self.t_run = 0.0
        self.total = len(items)
        self.done = sum(1 for it in items if it.get("_done"))
        self.done_before = self.done

    def __enter__(self):
        self.session.__enter__()
        try:
            need = self.workers * self.threads
            have = self.session.cpus()
            if have < need:
                raise InputError("the Ray cluster has %g CPUs: %d workers x %d threads need %d"
                                 % (have, self.workers, self.threads, need))
        except BaseException:
            self.session.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.bar is not None:
                self.bar.close()
            if self.sched is not None:
                self.sched.close()
        finally:
            self.session.__exit__(*exc)
        return False

    def run(self, todo: List[dict], again: bool = False) -> None:
        if not todo:
            return
        t0 = time.perf_counter()
        if again:
            self.total += len(todo)
        if self.sched is None:
            self.sched = Scheduler(self.session.ray, self.workers, self.threads, self.spec,
                                   self.jobdir, self.digest, self.queue_depth)
            self.bar = _progress_bar(self.total, self.done, self.progress)
        elif self.bar is not None and again:
            self.bar.total = self.total
            self.bar.refresh()
        sched = self.sched

        def handle(item, out, slot):
            rec = self.make_record(item, out)
            rec.update(worker=slot.index, pid=out.get("pid"), busy_s=out.get("busy_s"),
                       frames=out.get("frames", 0))
            self.jobdir.save(item["id"], rec)
            self.done += 1
            if self.bar is not None:
                self.bar.update(1)
            if self.on_item is not None:
                self.on_item({"item": item["id"], "done": self.done, "total": self.total,
                              "worker": slot.index, "pid": out.get("pid"),
                              "workers": [s.describe() for s in sched.slots]})

        sched.run(todo, handle)
        self.t_run += time.perf_counter() - t0

    def stats(self, images: int, frames: int, merge_s: float) -> dict:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        sched = self.sched
        slots = sched.slots if sched is not None else []
        startup = sched.startup_s if sched is not None else 0.0
        proc = max(self.t_run - startup, 1e-9)
        ran = sum(s.items for s in slots)
        busy = sum(s.busy_s for s in slots)
        workers = []
        for s in slots:
            d = s.describe()
            d.update(items=s.items, frames=s.frames, busy_s=round(s.busy_s, 3),
                     frames_per_s=round(s.frames / proc, 3), items_per_s=round(s.items / proc, 3))
            workers.append(d)
        n = max(1, len(slots))
        return {"items": self.total, "items_done_before": self.done_before, "items_run": ran,
                "items_rerun": sched.rerun if sched is not None else 0,
                "images": images, "frames": frames,
                "wall_s": round(time.perf_counter() - self.t0, 3), "startup_s": round(startup, 3),
                "processing_s": round(proc if ran else 0.0, 3), "merge_s": round(merge_s, 3),
                "busy_s": round(busy, 3),
                "throughput_per_s": round((ran and sum(s.frames for s in slots) / proc) or 0.0, 3),
                "utilization": round(busy / (n * proc), 4) if ran else 0.0,
                "overhead_ms_per_item": round(1000 * (n * proc - busy) / ran, 2) if ran else 0.0,
                "workers": workers}


def log_summary(st: dict) -> None:
    what = " + ".join(w for w in ("%d images" % st["images"] if st["images"] else "",
                                  "%d frames" % st["frames"] if st["frames"] else "") if w)
    logger.info("ray: %d items (%d done before, %d run, %d run again), %s, in %.1f s on %d workers: "
                "%.2f images/frames per s (start-up %.1f s, merge %.1f s)"
                % (st["items"], st["items_done_before"], st["items_run"], st["items_rerun"],
                   what or "nothing", st["wall_s"], len(st["workers"]), st["throughput_per_s"],
                   st["startup_s"], st["merge_s"]))
    for w in st["workers"]:
        logger.info("ray: worker %d (pid %s on %s): %d items, %d images/frames, %.2f per s, busy %.1f s%s"
                    % (w["worker"], w["pid"], w["host"], w["items"], w["frames"], w["frames_per_s"],
                       w["busy_s"], "; restarted %d time%s" % (w["restarts"], "s" if w["restarts"] > 1 else "")
                       if w["restarts"] else ""))
    if st["items_run"]:
        logger.info("ray: the workers were busy %.0f%% of the time; %.1f ms per item went elsewhere "
                    "(dispatch, transfer, records, the last items' wait)"
                    % (100 * st["utilization"], st["overhead_ms_per_item"]))


def work_root(out_dir: str) -> str:
    return os.path.join(out_dir, WORK_DIR)


# ----------------------------------------------------------------------------------------------
# infer
# ----------------------------------------------------------------------------------------------
def _tracker_spec(track) -> Optional[tuple]:
    """``track``: False/None (off), True (defaults), a ``(tracker opts, smoothing opts,
    no_smooth)`` tuple as ``edgepose.cli._tracker`` gives, or ``{"tracker": {...}, "smoothing":
    {...}, "smooth": bool}``; checked here (one line), before any work."""
    if not track:
        return None
    from .track import SMOOTH_DEFAULTS, TRACK_DEFAULTS, check_options

    if track is True:
        track = ({}, {}, False)
    elif isinstance(track, dict):
        track = (dict(track.get("tracker") or {}), dict(track.get("smoothing") or {}),
                 not track.get("smooth", True))
    topts, sopts, no_smooth = track
    check_options(topts, TRACK_DEFAULTS, "tracker")
    check_options(sopts, SMOOTH_DEFAULTS, "smoothing")
    return ({k: topts.get(k) for k in TRACK_DEFAULTS}, {k: sopts.get(k) for k in SMOOTH_DEFAULTS},
            bool(no_smooth))


def _boxes_of(boxes_by_image, iid):
    if boxes_by_image is None or iid not in boxes_by_image:
        return None
    b, s = boxes_by_image[iid]
    return (np.asarray(b).tolist(), None if s is None else np.asarray(s).tolist())


def _plan_infer(sources: Sequence[str], images_per_item: int, chunk_frames: int,
                draw: bool, boxes_by_image, max_frames: Optional[int]):
    """The sources (kind, images / frame count, fingerprint) and their work items, in merge
    order; every source checked here, in one line, before any work."""
    from .io import list_images
    from .runner import drawn_name
    from .sources import image_id, source_kind, source_name
    from .video import open_source

    plan, items, outputs, seen = [], [], {}, set()
    use_boxes = boxes_by_image is not None
    for si, src in enumerate(sources):
        kind = source_kind(src)
        if kind == "video" and not os.path.isfile(src):
            raise InputError("--ray takes image and video files and folders; %s is a camera or "
                             "stream: run it without --ray" % src)
        ab = os.path.abspath(src)
        if ab in seen:
            raise InputError("source given twice: %s" % src)
        seen.add(ab)
        entry = {"source": src, "path": ab, "kind": kind}
        if kind in ("image", "folder"):
            paths = [src] if kind == "image" else list_images(src)
            if not paths:
                raise InputError("no images found in %s" % src)
            ids = [image_id(p, i) for i, p in enumerate(paths)]
            names = [drawn_name(p) for p in paths]
            entry["images"] = len(paths)
            entry["fingerprint"] = [_file_id(p) for p in paths]
            for a in range(0, len(paths), images_per_item):
                b = min(a + images_per_item, len(paths))
                items.append({"id": "s%03d-img-%06d-%06d" % (si, a, b), "kind": "images",
                              "source": si, "draw": draw, "names": names[a:b], "use_boxes": use_boxes,
                              "images": [{"path": os.path.abspath(paths[k]), "image_id": ids[k],
                                          "boxes": _boxes_of(boxes_by_image, ids[k])}
                                         for k in range(a, b)]})
        else:
            fs = open_source(src)              # the one-line checks of a video file
            n = int(fs.frame_count)
            fs.release()
            names = [source_name(src) + ".mp4"]
            entry["fingerprint"] = _file_id(src)
            if max_frames:
                n = min(n, int(max_frames)) if n > 0 else int(max_frames)
            starts = list(range(0, n, chunk_frames)) if n > 0 else [0]
            for ci, a in enumerate(starts):
                b = a + chunk_frames if ci < len(starts) - 1 else (int(max_frames) if max_frames else None)
                it = {"id": "s%03d-vid-%06d-%s" % (si, a, "end" if b is None else "%06d" % b),
                      "kind": "frames", "source": si, "path": ab, "start": a, "end": b,
                      "seek": True, "use_boxes": use_boxes}
                if use_boxes:
                    it["boxes"] = {str(f): _boxes_of(boxes_by_image, f) for f in boxes_by_image
                                   if f >= a and (b is None or f < b)}
                items.append(it)
        if draw:
            for nm in names:
                if nm in outputs:
                    raise InputError("%s and %s would both write %s: infer them one at a time, "
                                     "or with --no-draw" % (outputs[nm], src, nm))
                outputs[nm] = src
        plan.append(entry)
    return plan, items


def _seek_redo(items: List[dict], jobdir: "JobDir") -> List[dict]:
    """Seeked chunks after a chunk whose frames' timestamps were not all at their frame numbers:
    their numbering cannot be trusted; they run again, decoding from the start. (The chunks'
    ``mode`` / ``pts_ok`` are kept on the items when recorded.)"""
    redo = []
    for si in sorted({it["source"] for it in items if it["kind"] == "frames"}):
        trusted = True
        for it in items:
            if it["kind"] != "frames" or it["source"] != si or "mode" not in it:
                continue
            if it["mode"] == "seek" and not trusted:
                jobdir.drop(it["id"])
                it["seek"] = False
                del it["mode"]
                redo.append(it)
                continue
            trusted = trusted and it["pts_ok"]
    return redo


class _Replay:
    """An 'estimator' handing back a video's recorded results, one per call in frame order
    (run_video calls its estimator once per frame, in order), the chunks' records read one at a
    time. Each frame is checked against the checksum its worker recorded: a seeked chunk whose
    frame differs is run again without seeking (``rerun(item)`` -> its new record) and the
    replay goes on with it. The frame numbers are checked against the chunk's range and against
    what run_video reports (:meth:`check`)."""

    def __init__(self, name: str, chunks: List[dict], jobdir: "JobDir", rerun: Callable[[dict], dict]):
        self.name, self.chunks, self.jobdir, self.rerun = name, list(chunks), jobdir, rerun
        self.pending: deque = deque()
        self.issued: deque = deque()
        self.position = 0
        self.served = 0              # frames of the current chunk handed out
        self.ended = None
        self.schema = None
        self.next_chunk = 0
        self.reruns = 0
        while self.schema is None and self._load():
            pass
        if self.schema is None:
            raise InputError("no frame of %s could be decoded" % name)
        self.meta = _ReplayMeta(self.schema)

    def _take(self, it: dict, rec: dict) -> None:
        got = [f["frame"] for f in rec["frames_out"]]
        if got and (self.ended is not None or got[0] < it["start"] or got != sorted(set(got)) or
                    (it["end"] is not None and got[-1] >= it["end"])):
            raise EdgeposeError("%s: chunk %s has frames %d..%d, expected %d..%s"
                                % (self.name, it["id"], got[0], got[-1], it["start"], it["end"]))
        self.schema = self.schema or rec["schema"]
        self.pending.extend((it, f) for f in rec["frames_out"][self.served:])

    def _load(self) -> bool:
        if self.next_chunk >= len(self.chunks):
            return False
        it = self.chunks[self.next_chunk]
        self.next_chunk += 1
        rec = self.jobdir.load(it["id"])
        if rec is None:
            raise EdgeposeError("item %s has no record after the run" % it["id"])
        self.served = 0
        self._take(it, rec)
        if rec["eof"] and it["end"] is not None:
            self.ended = it["id"]
        return True

    def __call__(self, img):
        while not self.pending:
            if not self._load():
                raise EdgeposeError("%s: the video has more frames than its workers read (%d)"
                                    % (self.name, self.position))
        it, f = self.pending[0]
        if f.get("crc") is not None and frame_checksum(img) != f["crc"]:
            if not it.get("seek", True):
                raise EdgeposeError("%s: frame %d decodes differently on a worker and here (another "
                                    "OpenCV/FFmpeg build?)" % (self.name, f["frame"]))
            logger.warning("%s: frame %d is not the frame seeking gave its worker; chunk %s runs "
                           "again without seeking" % (self.name, f["frame"], it["id"]))
            self.reruns += 1
            rec = self.rerun(it)
            self.pending.clear()
            self._take(it, rec)
            return self(img)
        self.pending.popleft()
        self.position += 1
        self.served += 1
        self.issued.append(f["frame"])
        return pose_result(f, self.schema)

    def check(self, entry: dict) -> None:
        """A summary entry run_video produced: its frame number is the recorded one's."""
        want = self.issued.popleft() if self.issued else None
        if entry.get("frame") != want:
            raise EdgeposeError("%s: frame %s decoded here, frame %s recorded by the workers"
                                % (self.name, entry.get("frame"), want))

    def finished(self) -> bool:
        while not self.pending and self._load():
            pass
        return not self.pending


class _ReplayMeta:
    """What run_video and the tracker read of an estimator's metadata: the keypoint names (the
    plot) and the model's own tracking / smoothing defaults."""
    family = "replay"

    def __init__(self, schema: dict):
        self.keypoints = list(schema["keypoint_names"])
        self._d = {k: schema.get(k) for k in ("tracking", "smoothing")}

    def get(self, key, default=None):
        v = self._d.get(key)
        return default if v is None else v


class _Entries:
    """Merged entries on their way to a writer (None: counted, not written): each one checked
    (``check``) and, with several sources, naming its ``source`` (results: last key, summary:
    first)."""

    def __init__(self, writer, source: Optional[str] = None, first: bool = False,
                 check: Optional[Callable[[dict], None]] = None):
        self.writer, self.source, self.first, self.check = writer, source, first, check
        self.count = 0

    def append(self, obj: dict) -> None:
        if self.check is not None:
            self.check(obj)
        if self.writer is not None:
            if self.source is not None:
                obj = dict({"source": self.source}, **obj) if self.first else dict(obj, source=self.source)
            self.writer.append(obj)
        self.count += 1

    def extend(self, objs) -> None:
        for o in objs:
            self.append(o)


def _merge_video(p: dict, si: int, items, jobdir, results, summary, rerun, **video) -> dict:
    """One video's outputs from its chunks' records, through :func:`edgepose.runner.infer_video`
    (the code of ``edgepose infer VIDEO``; ``video``: its keywords), tracked there in frame
    order. Returns the pipeline's stats."""
    from .runner import infer_video

    chunks = [it for it in items if it["kind"] == "frames" and it["source"] == si]
    replay = _Replay(p["source"], chunks, jobdir, rerun)
    summary.check = replay.check
    stats = infer_video(replay, p["source"], results=results, summary=summary, **video)
    if not stats["interrupted"] and not replay.finished() and not video.get("max_frames"):
        raise EdgeposeError("%s: %d frames decoded here, more recorded by the workers"
                            % (p["source"], replay.position))
    return stats


def infer(model: str, sources: Sequence[str], out: Optional[str] = None, json_path: Optional[str] = None,
          summary_json: Optional[str] = None, draw: bool = True, address: Optional[str] = "local",
          workers: Optional[int] = None, threads: Optional[int] = None,
          chunk_frames: Optional[int] = None, images_per_item: int = IMAGES_PER_ITEM,
          track=None,
          jsonl: Optional[str] = None, csv: Optional[str] = None, plot: Optional[str] = None,
          max_frames: Optional[int] = None, pipelined: bool = True, boxes: Optional[str] = None,
          boxes_threshold: float = 0.0, estimator_options: Optional[dict] = None,
          progress: Optional[bool] = None, on_item: Optional[Callable[[dict], None]] = None,
          echo: Optional[Callable[[str], None]] = print, keep_work: bool = False,
          queue_depth: int = QUEUE_DEPTH) -> dict:
    """``edgepose infer`` on Ray: images, folders and video files over ``workers`` actors.

    Writes what ``edgepose infer`` writes for one source: the annotated images / video in
    ``out`` (default ``edgepose_out``; none without ``draw``), the COCO results (``json_path``,
    default ``OUT/results.json``), the per-image/frame ``summary_json``, and for a video the
    ``jsonl`` / ``csv`` / ``plot`` files; ``echo`` gets the lines it prints. Several sources:
    one after the other in that order, every results and summary entry naming its ``source``.
    The outputs are written as they are merged (memory does not grow with the frames).
    ``track``: people IDs through videos (see :func:`_tracker_spec`): the tracker runs here, in
    frame order, so the IDs are those of ``edgepose infer --track``.
    ``on_item(info)``: called on this process after each item's record is written.
    Returns ``{"json", "summary_json", "results", "stats"}``: the paths written, the number of
    results entries, the job's statistics (per worker too)."""
    from .files import sha256_file, write_atomic
    from .runner import video_summary_line

    workers = int(workers or DEFAULT_WORKERS)
    threads = int(threads or 1)
    chunk_frames = int(chunk_frames or DEFAULT_CHUNK_FRAMES)
    images_per_item = int(images_per_item)
    if min(workers, threads, chunk_frames, images_per_item) < 1:
        raise InputError("workers, threads, chunk_frames and images_per_item must be >= 1")
    sources = list(sources)
    if not sources:
        raise InputError("no source given")
    tracker = _tracker_spec(track)
    address = check_address(address)
    _import_ray()
    out_dir = out or "edgepose_out"
    if len(sources) > 1 and boxes:
        raise InputError("--boxes names image ids of one source: give one SOURCE with --boxes")
    boxes_by_image = None
    if boxes:
        from .io import load_coco_boxes
        boxes_by_image = load_coco_boxes(boxes, score_threshold=boxes_threshold)
    spec = _estimator_spec(model, threads, estimator_options)
    digest, meta = _check_model(spec)
    if meta is not None and meta.family == "regression" and meta.decode.get("crop") == "follow" \
            and not spec.get("detector") and boxes_by_image is None:
        chunk_frames = 1 << 40     # each frame's crop follows the previous frame's pose: one item per video
    plan, items = _plan_infer(sources, images_per_item, chunk_frames, draw, boxes_by_image, max_frames)
    videos = [p for p in plan if p["kind"] == "video"]
    if (tracker or jsonl or csv or plot) and not videos:
        raise InputError("--track, --jsonl, --csv and --plot need a video or camera source, got %s"
                         % ", ".join(sources))
    if (jsonl or csv or plot) and len(videos) > 1:
        raise InputError("--jsonl, --csv and --plot write one video's frames: give one video")
    manifest = {"job": None, "kind": "infer", "edgepose": __version__,
                "estimator": _estimator_identity(spec, digest),
                "sources": [[p["kind"], p["fingerprint"]] for p in plan],
                "options": {"images_per_item": images_per_item, "chunk_frames": chunk_frames,
                            "draw": draw, "max_frames": max_frames,
                            "boxes": sha256_file(boxes) if boxes else None,
                            "boxes_threshold": boxes_threshold if boxes else None}}
    manifest["job"] = _job_hash(manifest)
    jobdir = JobDir(os.path.join(work_root(out_dir), manifest["job"]), manifest)
    ok = False
    try:
        for it in items:
            rec = jobdir.load(it["id"])
            if rec is not None and it["kind"] == "images" and draw and not all(
                    os.path.exists(os.path.join(out_dir, n)) for n in it["names"]):
                rec = None             # an annotated image is missing: run the item again
            it["_done"] = rec is not None
            if rec is not None and it["kind"] == "frames":
                it.update(mode=rec["mode"], pts_ok=rec["pts_ok"], seek=rec.get("seek", True))

        def make_record(item, res):
            if item["kind"] == "images":
                for name, data in zip(item["names"], res["drawn"]):
                    write_atomic(os.path.join(out_dir, name), data)
                return {"entries": res["entries"]}
            item.update(mode=res["mode"], pts_ok=res["pts_ok"])
            rec = {k: res[k] for k in ("frames_out", "schema", "mode", "pts_ok", "eof")}
            rec["seek"] = item["seek"]
            return rec

        with _Job(items, jobdir, spec, digest, address, workers,
                  threads, progress, on_item, queue_depth, make_record) as job:

            def rerun(it):           # a seeked chunk whose frames are not the decoded ones
                jobdir.drop(it["id"])
                it["seek"] = False
                it.pop("mode", None)
                job.run([it], again=True)
                return jobdir.load(it["id"])

            if job.done_before:
                logger.info("ray: resuming: %d of %d items were done before"
                            % (job.done_before, len(items)))
            job.run([it for it in items if not it["_done"]])
            while True:
                redo = _seek_redo(items, jobdir)
                if not redo:
                    break
                logger.info("ray: %d video chunks run again decoding from the start (the "
                            "video's timestamps do not allow frame-exact seeking)" % len(redo))
                job.run(redo, again=True)
            t_merge = time.perf_counter()
            json_out = json_path or os.path.join(out_dir, "results.json")
            video = {"out_dir": out_dir if draw else None, "tracker": tracker, "jsonl": jsonl, "csv": csv,
                     "plot": plot, "pipelined": pipelined, "max_frames": max_frames or 0}
            several = len(plan) > 1
            n_img = n_fr = n_res = 0
            from .files import JsonArrayWriter

            with contextlib.ExitStack() as outputs:   # streamed, as edgepose infer writes them
                res_w = outputs.enter_context(JsonArrayWriter(json_out))
                sum_w = outputs.enter_context(JsonArrayWriter(summary_json)) if summary_json else None
                for si, p in enumerate(plan):
                    src = p["source"] if several else None
                    results = _Entries(res_w, src)
                    summary = _Entries(sum_w, src, first=True)
                    if p["kind"] != "video":
                        for it in items:
                            if it["source"] != si:
                                continue
                            rec = jobdir.load(it["id"])
                            if rec is None:
                                raise EdgeposeError("item %s has no record after the run" % it["id"])
                            for e in rec["entries"]:
                                results.extend(e["coco"])
                                summary.append(e["summary"])
                                if echo is not None:
                                    echo("%s: %d people" % (e["summary"]["file"], e["people"]))
                        n_img += summary.count
                        n_res += results.count
                        continue
                    stats = _merge_video(p, si, items, jobdir, results, summary, rerun, **video)
                    if stats["interrupted"]:
                        raise KeyboardInterrupt
                    if echo is not None:
                        echo(video_summary_line(p["source"], stats))
                    n_fr += summary.count
                    n_res += results.count
            if echo is not None:
                echo("wrote %s" % json_out)
            st = job.stats(n_img, n_fr, time.perf_counter() - t_merge)
        log_summary(st)
        ok = True
        return {"json": json_out, "summary_json": summary_json, "results": n_res, "stats": st}
    finally:
        jobdir.close(remove=ok and not keep_work)


# ----------------------------------------------------------------------------------------------
# eval
# ----------------------------------------------------------------------------------------------
def evaluate(model: str, coco: Sequence[str], images: Sequence[str], address: Optional[str] = "local",
             workers: Optional[int] = None, threads: Optional[int] = None,
             images_per_item: int = IMAGES_PER_ITEM, boxes: Optional[str] = None,
             boxes_threshold: float = 0.0, estimator_options: Optional[dict] = None,
             work_dir: Optional[str] = None, progress: Optional[bool] = None,
             on_item: Optional[Callable[[dict], None]] = None, keep_work: bool = False,
             queue_depth: int = QUEUE_DEPTH) -> dict:
    """``edgepose eval`` on Ray: the COCO keypoint stats of ``model`` on one (annotation file,
    images folder) set or several (pooled by :func:`edgepose.evaluate.merge_coco`, as
    ``edgepose eval`` pools them), the images spread over ``workers`` actors. Returns what
    :func:`edgepose.evaluate.evaluate_coco` returns (``stats``, ``images``, ``people``,
    ``results``, identical) and ``ray`` (the job's statistics). ``work_dir``: where the job's
    folder goes (default ``~/.cache/edgepose/ray``)."""
    from .evaluate import coco_keypoint_stats, coco_pairs, load_coco, merge_coco
    from .files import sha256_file

    workers = int(workers or DEFAULT_WORKERS)
    threads = int(threads or 1)
    if min(workers, threads, int(images_per_item)) < 1:
        raise InputError("workers, threads and images_per_item must be >= 1")
    pairs = coco_pairs(list(coco), list(images), boxes=boxes)
    if not pairs:
        raise InputError("no --coco file given")
    coco, images = [c for c, _ in pairs], [d for _, d in pairs]
    address = check_address(address)
    _import_ray()
    if len(coco) == 1:          # exactly evaluate_coco's image list and paths
        gt, images_dir = load_coco(coco[0]), images[0]
    else:
        gt, images_dir = load_coco(merge_coco(list(zip(coco, images)))), "/"
    img_ids = sorted(gt.getImgIds())
    if not img_ids:
        raise InputError("annotation file lists no images: %s" % coco[0])
    paths = [os.path.abspath(os.path.join(images_dir, gt.loadImgs(i)[0]["file_name"])) for i in img_ids]
    for p in paths:
        if not os.path.isfile(p):
            raise InputError("image not found: %s" % p)
    boxes_by_image = None
    if boxes:
        from .io import load_coco_boxes
        boxes_by_image = load_coco_boxes(boxes, score_threshold=boxes_threshold)
    spec = _estimator_spec(model, threads, estimator_options)
    digest, _ = _check_model(spec)
    items = []
    for a in range(0, len(img_ids), int(images_per_item)):
        b = min(a + int(images_per_item), len(img_ids))
        items.append({"id": "img-%06d-%06d" % (a, b), "kind": "eval",
                      "use_boxes": boxes_by_image is not None,
                      "images": [{"image_id": img_ids[k], "path": paths[k],
                                  "boxes": _boxes_of(boxes_by_image, img_ids[k])} for k in range(a, b)]})
    manifest = {"job": None, "kind": "eval", "edgepose": __version__,
                "estimator": _estimator_identity(spec, digest),
                "coco": [[_file_id(c), sha256_file(c), os.path.abspath(d)] for c, d in zip(coco, images)],
                "images": [_file_id(p) for p in paths],
                "options": {"images_per_item": int(images_per_item),
                            "boxes": sha256_file(boxes) if boxes else None,
                            "boxes_threshold": boxes_threshold if boxes else None}}
    manifest["job"] = _job_hash(manifest)
    root = work_dir or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                    os.path.join(os.path.expanduser("~"), ".cache"), "edgepose", "ray")
    jobdir = JobDir(os.path.join(root, manifest["job"]), manifest)
    ok = False
    try:
        for it in items:
            it["_done"] = jobdir.load(it["id"]) is not None
        with _Job(items, jobdir, spec, digest, address, workers, threads, progress, on_item,
                  queue_depth, lambda item, res: {"entries": res["entries"]}) as job:
            if job.done_before:
                logger.info("ray: resuming: %d of %d items were done before"
                            % (job.done_before, len(items)))
            job.run([it for it in items if not it["_done"]])
            t_merge = time.perf_counter()
            results: List[dict] = []
            for it in items:
                rec = jobdir.load(it["id"])
                if rec is None:
                    raise EdgeposeError("item %s has no record after the run" % it["id"])
                for e in rec["entries"]:
                    results.extend(e["coco"])
            out = {"stats": coco_keypoint_stats(gt, results, img_ids), "images": len(img_ids),
                   "people": len(results), "results": results}
            out["ray"] = job.stats(len(img_ids), 0, time.perf_counter() - t_merge)
        ok = True
        return out
    finally:
        jobdir.close(remove=ok and not keep_work)
