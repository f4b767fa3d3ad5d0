"""Video and cameras: an overlapped pipeline over a frame source, tracked results written out.

Sources: :func:`edgepose.frames.open_source` (named here too, with :class:`FrameSource` and
:func:`gstreamer_csi`): a video file, a folder of images, a camera, a V4L2 device, a GStreamer
pipeline, an RTSP/HTTP(S) URL, or any object with ``read()`` and ``release()``. Files and folders
are *finite*: every frame is processed, in order, none dropped. Cameras and streams are *live*: a
reader thread always holds only the newest frame, so a slow model drops stale frames instead of
falling behind.

Pipeline (:func:`run_video`): read/decode -> preprocess + inference -> decode + tracking ->
draw + write, each stage in its own thread joined by bounded queues (OpenCV's decoding and
drawing, onnxruntime, the TFLite interpreter and edgepose's C++ decode release the GIL, so the
stages overlap on several cores). ``pipelined=False`` runs the same stages one after the other.
Ctrl-C stops reading and finalises every output: the video and the JSON lines written so far are
complete, playable files.
"""
import collections
import contextlib
import math
import os
import queue
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import InputError
from .frames import FrameSource, gstreamer_csi, open_source
from .log import logger
from .results import PoseResult

__all__ = ["FrameSource", "open_source", "gstreamer_csi", "run_video", "frame_record",
           "VideoStats"]


# ----------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------
def frame_record(frame: int, time_s: float, result: PoseResult) -> dict:
    """One JSON-lines object: ``{"frame", "time_s", "people": [{"track_id", "score", "box",
    "keypoints", ("coco17")}]}``; ``track_id`` is -1 for untracked people, ``keypoints`` are in
    the model's schema, ``coco17`` in COCO-17 order (x, y, score each). A keypoint that was not
    found is ``[0, 0, 0]`` in both, as in COCO's own files (v = 0) and the results.json that
    ``infer`` writes: test its score, not its coordinates."""
    boxes = getattr(result, "track_boxes", None)
    if boxes is None:
        boxes = result.person_boxes()
    c17 = result.coco17() if result.to_coco17 is not None else None

    def points(kp):
        return [[round(float(x), 2), round(float(y), 2), round(float(s), 4)] if s > 0 else [0, 0, 0]
                for x, y, s in kp]

    people = []
    for i in range(len(result)):
        p = {"track_id": int(result.track_ids[i]) if result.track_ids is not None else -1,
             "score": round(float(result.scores[i]), 4),
             "box": [round(float(v), 2) for v in boxes[i]],
             "keypoints": points(result.keypoints[i])}
        if c17 is not None:
            p["coco17"] = points(c17[i])
        people.append(p)
    return {"frame": int(frame), "time_s": round(float(time_s), 4), "people": people}


class _TextSink:
    """A text file written under a temporary name, renamed into place by close()."""

    def __init__(self, path: str):
        from .files import atomic_path

        self.path = path
        self._ctx = atomic_path(path)
        self._tmp = self._ctx.__enter__()
        self.f = open(self._tmp, "w")

    def close(self) -> None:
        self.f.close()
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        self.f.close()
        with contextlib.suppress(RuntimeError):
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


class _JsonlSink(_TextSink):
    def write(self, frame, t, result):
        import json

        self.f.write(json.dumps(frame_record(frame, t, result), separators=(",", ":")) + "\n")


class _CsvSink(_TextSink):
    def __init__(self, path):
        super().__init__(path)
        self.f.write("frame,time_s,track_id,person_score,keypoint,x,y,score\n")

    def write(self, frame, t, result):
        ids = result.track_ids if result.track_ids is not None else [-1] * len(result)
        lines = []
        for i in range(len(result)):
            for k, name in enumerate(result.keypoint_names):
                x, y, s = result.keypoints[i, k]
                if s > 0:
                    lines.append("%d,%.4f,%d,%.4f,%s,%.2f,%.2f,%.4f\n"
                                 % (frame, t, ids[i], result.scores[i], name, x, y, s))
        self.f.writelines(lines)


class _VideoSink:
    def __init__(self, path: str, fps: float):
        self.path, self.fps, self.w = path, fps, None

    def write(self, frame_img):
        from .io import VideoWriter

        if self.w is None:
            self.w = VideoWriter(self.path, self.fps, (frame_img.shape[1], frame_img.shape[0]))
        self.w.write(frame_img)

    def close(self):
        if self.w is not None:
            self.w.close()

    def abort(self):
        if self.w is not None:
            self.w.abort()


class _Trajectories:
    """Keypoint trajectories per track, kept for ``--plot``."""

    def __init__(self):
        self.data: Dict[int, List[Tuple[float, np.ndarray]]] = {}

    def write(self, frame, t, result):
        if result.track_ids is None:
            return
        for i, tid in enumerate(result.track_ids):
            self.data.setdefault(int(tid), []).append((t, result.keypoints[i].copy()))


def plot_trajectories(traj: "_Trajectories", names: Sequence[str], path: str,
                      max_tracks: int = 100, size: Tuple[int, int] = (1400, 180)) -> None:
    """A PNG of every track's keypoints against time: one row per track (in order of ID, at
    most ``max_tracks``, the rest counted in the title), its x on the left, its y on the right
    drawn the way the image runs (y grows downwards), one colour per keypoint with a legend
    on top."""
    from .draw import _palette
    from .io import write_image

    W, H = size
    items = sorted(traj.data.items())
    tracks = items[:max_tracks]
    if not tracks:
        img = np.full((H, W, 3), 255, np.uint8)
        cv2.putText(img, "no tracks", (20, H // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
        write_image(path, img)
        return
    t_all = [t for _, v in tracks for t, _ in v]
    t0, t1 = min(t_all), max(max(t_all), min(t_all) + 1e-3)
    K = tracks[0][1][0][1].shape[0]
    names = list(names) if len(names) == K else ["kp%d" % k for k in range(K)]
    cols = _palette(K)
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.42
    # legend: the keypoint colours, wrapped over as many lines as needed
    legend_rows, row, x = [], [], 10
    for k, name in enumerate(names):
        wdt = 22 + cv2.getTextSize(name, font, fs, 1)[0][0] + 14
        if x + wdt > W - 10 and row:
            legend_rows.append(row)
            row, x = [], 10
        row.append((k, name, x))
        x += wdt
    legend_rows.append(row)
    title = "%d track(s)%s; time %.1f..%.1f s; left: x (px), right: y (px, downwards as in the image)" % (
        len(items), "" if len(items) <= max_tracks else ", the first %d drawn" % max_tracks, t0, t1)
    head = np.full((30 + 20 * len(legend_rows), W, 3), 255, np.uint8)
    cv2.putText(head, title, (10, 18), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for r, row in enumerate(legend_rows):
        y = 38 + 20 * r
        for k, name, x in row:
            cv2.line(head, (x, y - 4), (x + 16, y - 4), cols[k], 3, cv2.LINE_AA)
            cv2.putText(head, name, (x + 20, y), font, fs, (0, 0, 0), 1, cv2.LINE_AA)
    panels = [head]
    half = W // 2
    for tid, rows in tracks:
        ts = np.array([t for t, _ in rows])
        kp = np.stack([k for _, k in rows])                      # [T,K,3]
        img = np.full((H, W, 3), 255, np.uint8)
        for axis, x_off in ((0, 0), (1, half)):
            vals = kp[:, :, axis][kp[:, :, 2] > 0]
            lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
            hi = max(hi, lo + 1.0)
            left, right, top, bottom = x_off + 55, x_off + half - 10, 22, H - 12
            px = lambda t: int(left + (right - left) * (t - t0) / (t1 - t0))               # noqa: E731
            if axis == 0:    # x: larger values higher up
                py = lambda v: int(bottom - (bottom - top) * (v - lo) / (hi - lo))        # noqa: E731
            else:            # y: as in the image, larger values lower down
                py = lambda v: int(top + (bottom - top) * (v - lo) / (hi - lo))           # noqa: E731
            cv2.rectangle(img, (left, top), (right, bottom), (200, 200, 200), 1)
            for k in range(K):
                pts = [(t, px(t), py(v)) for t, v, s in zip(ts, kp[:, k, axis], kp[:, k, 2]) if s > 0]
                for a, b in zip(pts[:-1], pts[1:]):
                    if b[0] - a[0] <= 0.25:          # a gap (keypoint or person missing) stays a gap
                        cv2.line(img, a[1:], b[1:], cols[k], 1, cv2.LINE_AA)
            lab_top, lab_bot = ("%.0f" % hi, "%.0f" % lo) if axis == 0 else ("%.0f" % lo, "%.0f" % hi)
            cv2.putText(img, lab_top, (x_off + 5, top + 8), font, 0.38, (80, 80, 80), 1, cv2.LINE_AA)
            cv2.putText(img, lab_bot, (x_off + 5, bottom), font, 0.38, (80, 80, 80), 1, cv2.LINE_AA)
            cv2.putText(img, "track %d  %s" % (tid, "x" if axis == 0 else "y"), (left + 5, 16), font, 0.45,
                        (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(img)
    write_image(path, np.vstack(panels))


# ----------------------------------------------------------------------------------------------
# the pipeline
# ----------------------------------------------------------------------------------------------
class VideoStats(dict):
    """What :func:`run_video` did: frames read/processed/dropped/skipped, wall time, fps,
    per-stage medians (ms), the outputs written, and whether it was interrupted."""


class _Latest:
    """A one-slot buffer that always holds the newest item (live sources drop stale frames)."""

    def __init__(self):
        self._item = None
        self._cv = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item, timeout=None):
        with self._cv:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cv.notify()

    def get(self, timeout=None):
        with self._cv:
            if self._item is None and not self.closed:
                self._cv.wait(timeout)
            if self._item is None:
                if self.closed:
                    return _END
                raise queue.Empty
            item, self._item = self._item, None
            return item

    def close(self):
        with self._cv:
            self.closed = True
            self._cv.notify_all()


_END = object()


def _stages(estimator):
    """(infer, finish): an estimator with ``stages()`` (the estimator protocol, see
    :mod:`edgepose.pipelines`) splits into inference and decode; any other runs whole in the
    inference stage."""
    stages = getattr(estimator, "stages", None)
    if callable(stages):
        return stages()
    return estimator, None


def run_video(source, estimator, tracker=None, out_video: Optional[str] = None,
              jsonl: Optional[str] = None, csv: Optional[str] = None, plot: Optional[str] = None,
              pipelined: bool = True, max_fps: Optional[float] = None, max_frames: int = 0,
              progress: bool = False, display: bool = False, draw: bool = True,
              on_result: Optional[Callable[[int, float, np.ndarray, PoseResult], None]] = None,
              queue_size: int = 4, report_every_s: float = 0.0) -> "VideoStats":
    """Run ``estimator`` (a pipeline from :func:`edgepose.pipelines.load_estimator`) over every
    frame of ``source`` (see :func:`open_source`), optionally through ``tracker``
    (:class:`edgepose.track.Tracker`), writing an annotated video, JSON lines, a CSV of
    trajectories and a trajectory plot. ``on_result(frame, time_s, image, result)`` is called in
    order for every processed frame. Returns :class:`VideoStats`."""
    from .draw import draw_poses

    if max_fps is not None and not (max_fps > 0 and math.isfinite(max_fps)):
        raise InputError("max_fps must be a positive number, got %r" % max_fps)
    src = open_source(source)
    sinks: List = []
    video = None
    traj = _Trajectories() if plot else None
    try:
        if out_video:
            video = _VideoSink(out_video, src.fps if not src.live or not max_fps else min(src.fps, max_fps))
        if jsonl:
            sinks.append(_JsonlSink(jsonl))
        if csv:
            sinks.append(_CsvSink(csv))
    except BaseException:
        for s in sinks:
            s.abort()
        src.release()
        raise
    if traj is not None:
        sinks.append(traj)
    infer, finish = _stages(estimator)
    if hasattr(estimator, "start_sequence"):   # frames in order: MoveNet-style crops follow the last pose
        estimator.start_sequence()
    stats = VideoStats(source=str(src.name), kind=src.kind, live=src.live, frames_read=0,
                       frames_processed=0, frames_dropped=0, frames_skipped=0, interrupted=False,
                       pipelined=bool(pipelined))
    # stage times of the last 1000 frames (bounded: a camera runs for days)
    times = {k: collections.deque(maxlen=1000) for k in ("inference_ms", "postprocess_ms", "write_ms")}
    bar = None
    if progress and not src.live:
        from .log import progress_bar

        bar = progress_bar(total=src.frame_count or None, desc="frames", unit="frame", enabled=True)
    stop = threading.Event()
    errors: List[BaseException] = []
    t_start = time.perf_counter()
    t_report = [t_start, 0]

    def do_infer(item):
        i, t, img = item
        t0 = time.perf_counter()
        mid = infer(img)
        times["inference_ms"].append((time.perf_counter() - t0) * 1e3)
        return i, t, img, mid

    def do_post(item):
        i, t, img, mid = item
        t0 = time.perf_counter()
        res = finish(mid) if finish is not None else mid
        if tracker is not None:
            res = tracker.update(res, t)
        times["postprocess_ms"].append((time.perf_counter() - t0) * 1e3)
        return i, t, img, res

    def do_write(item):
        i, t, img, res = item
        t0 = time.perf_counter()
        if video is not None or display:
            vis = draw_poses(img, res) if draw else img
            if video is not None:
                video.write(vis)
            if display:
                cv2.imshow("edgepose", vis)
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    stop.set()
        for s in sinks:
            s.write(i, t, res)
        stats["frames_processed"] += 1
        times["write_ms"].append((time.perf_counter() - t0) * 1e3)
        if on_result is not None:
            on_result(i, t, img, res)
        if bar is not None:
            bar.update(1)
        if report_every_s:
            now = time.perf_counter()
            if now - t_report[0] >= report_every_s:
                k = stats["frames_processed"] - t_report[1]
                logger.info("%.1f fps, %d people" % (k / (now - t_report[0]), len(res)))
                t_report[0], t_report[1] = now, stats["frames_processed"]

    def frames() -> Iterator:
        period = 1.0 / max_fps if max_fps else 0.0
        t_next = time.perf_counter()
        while not stop.is_set():
            if max_frames and stats["frames_read"] >= max_frames:
                return
            if period:
                delay = t_next - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t_next = max(t_next + period, time.perf_counter() - period)
            item = src.read()
            if item is None:
                return
            stats["frames_read"] += 1
            yield item

    interrupted = False
    try:
        if not pipelined:
            for item in frames():
                do_write(do_post(do_infer(item)))
        else:
            q_in = _Latest() if src.live else queue.Queue(maxsize=queue_size)
            q_mid: "queue.Queue" = queue.Queue(maxsize=2)
            q_out: "queue.Queue" = queue.Queue(maxsize=queue_size)

            def put(q, item):
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        return True
                    except queue.Full:
                        continue
                return False

            def get(q):
                while True:
                    try:
                        return q.get(timeout=0.1)
                    except queue.Empty:
                        if stop.is_set() and not isinstance(q, _Latest):
                            return _END
                        continue

            def reader():
                try:
                    for item in frames():
                        if not put(q_in, item):
                            break
                except BaseException as e:  # noqa: B902 - re-raised in the caller
                    errors.append(e)
                    stop.set()
                finally:
                    if isinstance(q_in, _Latest):
                        q_in.close()
                    else:
                        put_end(q_in)

            def put_end(q):
                while True:
                    try:
                        q.put(_END, timeout=0.1)
                        return
                    except queue.Full:
                        if stop.is_set():
                            with contextlib.suppress(queue.Empty):
                                q.get_nowait()

            def worker(q_a, q_b, fn):
                try:
                    while True:
                        item = get(q_a)
                        if item is _END:
                            break
                        if not put(q_b, fn(item)):
                            break
                except BaseException as e:  # noqa: B902
                    errors.append(e)
                    stop.set()
                finally:
                    put_end(q_b)

            threads = [threading.Thread(target=reader, name="edgepose-read", daemon=True),
                       threading.Thread(target=worker, args=(q_in, q_mid, do_infer),
                                        name="edgepose-infer", daemon=True),
                       threading.Thread(target=worker, args=(q_mid, q_out, do_post),
                                        name="edgepose-post", daemon=True)]
            for th in threads:
                th.start()
            try:
                while True:                     # draw + write in the calling thread (Ctrl-C lands here)
                    item = get(q_out)
                    if item is _END:
                        break
                    do_write(item)
            except KeyboardInterrupt:
                interrupted = True
                stop.set()
                # finish what is already decoded so the outputs end cleanly
                while True:
                    try:
                        item = q_out.get(timeout=0.5)
                    except queue.Empty:
                        break
                    if item is _END:
                        break
                    do_write(item)
            finally:
                stop.set()
                for th in threads:
                    th.join(timeout=10.0)
            if isinstance(q_in, _Latest):
                stats["frames_dropped"] = q_in.dropped
            if errors:
                raise errors[0]
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        # a failure: keep what was written if anything was (a valid, playable file), else nothing
        _finish(video, sinks, keep=stats["frames_processed"] > 0)
        src.release()
        if bar is not None:
            bar.close()
        raise
    finally:
        if display:
            with contextlib.suppress(Exception):
                cv2.destroyAllWindows()
    src.release()
    if bar is not None:
        bar.close()
    written = _finish(video, sinks, keep=True)
    if plot and traj is not None:
        plot_trajectories(traj, getattr(getattr(estimator, "meta", None), "keypoints", None) or [], plot)
        written.append(plot)
    wall = time.perf_counter() - t_start
    stats.update(interrupted=interrupted, frames_skipped=src.skipped, ended_early=src.ended_early,
                 frame_count=src.frame_count, wall_s=wall, fps_source=src.fps,
                 fps=stats["frames_processed"] / wall if wall > 0 else 0.0, outputs=written,
                 stages_ms={k: float(np.median(v)) if v else 0.0 for k, v in times.items()})
    return stats


def _finish(video, sinks, keep: bool) -> List[str]:
    """Close (keep) or delete every output; returns the paths written."""
    written = []
    for s in ([video] if video is not None else []) + [s for s in sinks if hasattr(s, "close")]:
        try:
            if keep:
                s.close()
                if os.path.exists(s.path):
                    written.append(s.path)
            else:
                s.abort()
        except Exception as e:  # noqa: B902 - one failing output must not lose the others
            logger.warning("could not finalise %s: %s" % (getattr(s, "path", s), e))
    return written
