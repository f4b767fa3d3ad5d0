"""One road from a source to results: the library that ``edgepose infer`` / ``track`` / ``eval`` /
``bench``, the Python API and Ray all run.

- :class:`EstimatorOptions`: THE estimator options (model, detector, backend and decode options)
  as one object: from a command line (:meth:`~EstimatorOptions.from_args`), from keywords, or
  from the plain dict a Ray worker receives (:meth:`~EstimatorOptions.from_dict`).
- :func:`tracker_options_from_args`: a command line's tracking flags in the one normal form of
  :func:`edgepose.track.tracker_options` (checked before the model loads); the tracker itself is
  :meth:`edgepose.track.Tracker.from_options` (defaults < the model's metadata < the options).
- :func:`infer_images` and :func:`infer_video`: a model over images or one video, writing the
  annotated outputs and filling the COCO results and per-image / per-frame summary writers;
  :func:`image_entry` is the summary entry of one image (the Ray workers build theirs with it,
  so outputs stay byte-identical).

Nothing here prints: results go to writers, progress to ``echo`` and the ``edgepose`` logger.
"""
import os
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from .errors import InputError
from .sources import image_id, source_name

__all__ = ["EstimatorOptions", "tracker_options_from_args", "infer_images", "infer_video",
           "image_entry", "people_counts", "video_summary_line"]


class EstimatorOptions:
    """Everything that decides which estimator runs and how (``None``: the model's default).

    model, detector (a path or None), detector_spec, threads, providers, exact_int8, height,
    refine, flip_test, max_peaks, backend (None: by file type; see :func:`edgepose.backends.load_backend`),
    detector_backend (None: ``backend`` where it reads the detector's file, else by file type)."""

    FIELDS = ("model", "detector", "detector_spec", "threads", "providers", "exact_int8", "height",
              "refine", "flip_test", "max_peaks", "backend", "detector_backend")
    __slots__ = FIELDS

    def __init__(self, model: str, detector: Optional[str] = None, detector_spec: Optional[str] = None,
                 threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
                 exact_int8: bool = False, height: Optional[int] = None, refine: Optional[str] = None,
                 flip_test: bool = False, max_peaks: Optional[int] = None, backend: Optional[str] = None,
                 detector_backend: Optional[str] = None):
        self.model = os.fspath(model)
        self.detector, self.detector_spec = detector, detector_spec
        self.threads = None if threads is None else int(threads)
        self.providers = None if providers is None else list(providers)
        self.exact_int8, self.flip_test = bool(exact_int8), bool(flip_test)
        self.height, self.refine, self.max_peaks = height, refine, max_peaks
        from .backends import check_backend

        self.backend = check_backend(backend, self.exact_int8)  # a bad combination: refused here
        self.detector_backend = check_backend(detector_backend)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "EstimatorOptions":
        unknown = set(d) - set(cls.FIELDS)
        if unknown:
            raise InputError("unknown estimator option(s): %s" % ", ".join(sorted(unknown)))
        if not d.get("model"):
            raise InputError("no model given")
        return cls(**d)

    @classmethod
    def from_args(cls, args) -> "EstimatorOptions":
        """From an argparse namespace (a missing attribute is the default)."""
        return cls(**{k: getattr(args, k, None) for k in cls.FIELDS if getattr(args, k, None) is not None})

    def to_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def absolute(self) -> "EstimatorOptions":
        """The same options with existing model / detector / spec paths made absolute (a Ray
        worker may start in another folder)."""
        d = self.to_dict()
        for k in ("model", "detector", "detector_spec"):
            if isinstance(d[k], str) and os.path.exists(d[k]):
                d[k] = os.path.abspath(d[k])
        return EstimatorOptions(**d)

    def decode_options(self) -> Dict[str, Any]:
        out = {}
        for k in ("height", "refine", "detector_spec", "max_peaks"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.flip_test:
            out["flip_test"] = True
        return out

    def load(self, threads: Optional[int] = None):
        """The estimator (:func:`edgepose.pipelines.load_estimator`); ``threads`` overrides."""
        from .pipelines import load_estimator

        return load_estimator(self.model, detector=self.detector,
                              threads=self.threads if threads is None else threads,
                              providers=self.providers, exact_int8=self.exact_int8,
                              backend=self.backend, detector_backend=self.detector_backend,
                              **self.decode_options())

    def __repr__(self) -> str:
        return "EstimatorOptions(%s)" % ", ".join("%s=%r" % kv for kv in self.to_dict().items()
                                                   if kv[1] not in (None, False))


# -- tracking -------------------------------------------------------------------------------------
def tracker_options_from_args(args) -> tuple:
    """:func:`edgepose.track.tracker_options` of a command line's tracking flags."""
    from .track import SMOOTH_DEFAULTS, TRACK_DEFAULTS, tracker_options

    return tracker_options(({k: getattr(args, k, None) for k in TRACK_DEFAULTS},
                            {k: getattr(args, k, None) for k in SMOOTH_DEFAULTS},
                            bool(getattr(args, "no_smooth", False))))


# -- images -----------------------------------------------------------------------------------------
def _boxes_for(boxes_by_image, iid):
    """(boxes, scores) of an image id or frame number; none when the file lists none."""
    return boxes_by_image.get(iid, (np.zeros((0, 4), np.float32), None))


def image_entry(res, path: str, iid: int) -> dict:
    """THE summary entry of one image (``edgepose infer --summary-json``)."""
    return {"file": os.path.basename(path), "image_id": iid, **res.to_dict()}


def drawn_name(path: str) -> str:
    """The annotated image's file name in the output folder."""
    return os.path.splitext(os.path.basename(path))[0] + ".jpg"


def infer_images(est, paths: Sequence[str], out_dir: Optional[str] = None, boxes_by_image=None,
                 results=None, summary=None, echo: Optional[Callable[[str], None]] = None,
                 progress: bool = False) -> int:
    """``est`` over image files: annotated copies in ``out_dir`` (None: none), COCO results
    (``results.extend``; image ids from :func:`edgepose.sources.image_id`), summary entries
    (``summary.append``), ``echo("NAME: N people")``. Returns the number of people found."""
    from .draw import draw_poses
    from .io import read_image, write_image
    from .log import progress_bar

    total = 0
    for i, p in enumerate(progress_bar(paths, total=len(paths), desc="infer", unit="img",
                                       enabled=progress) or paths):
        img = read_image(p)
        iid = image_id(p, i)
        if boxes_by_image is not None:
            b, s = _boxes_for(boxes_by_image, iid)
            res = est(img, boxes=b, box_scores=s)
        else:
            res = est(img)
        total += len(res)
        if results is not None and res.to_coco17 is not None:
            results.extend(res.to_coco_results(iid))
        if summary is not None:
            summary.append(image_entry(res, p, iid))
        if out_dir is not None:
            write_image(os.path.join(out_dir, drawn_name(p)), draw_poses(img, res))
        if echo is not None:
            echo("%s: %d people" % (os.path.basename(p), len(res)))
    return total


# -- video -----------------------------------------------------------------------------------------
def people_counts(hist) -> np.ndarray:
    """People per frame from :func:`infer_video`'s ``people_per_frame`` ({people: frames})."""
    if isinstance(hist, dict):
        return np.repeat(np.array(list(hist), np.int64), np.array(list(hist.values()), np.int64))
    return np.asarray(list(hist or []), np.int64)


def video_summary_line(source: str, stats: dict) -> str:
    """THE one line ``edgepose infer VIDEO`` prints (with or without Ray)."""
    c = people_counts(stats["people_per_frame"])
    c = c if len(c) else np.zeros(1, np.int64)
    return ("%s: %d frames, people per frame: median %d, min %d, max %d%s"
            % (source_name(source), stats["frames_processed"], int(np.median(c)), c.min(), c.max(),
               "".join("; wrote %s" % p for p in stats["outputs"])))


def infer_video(est, source, out_dir: Optional[str] = None, results=None, summary=None,
                tracker: Optional[tuple] = None, jsonl: Optional[str] = None, csv: Optional[str] = None,
                plot: Optional[str] = None, pipelined: bool = True, max_fps: Optional[float] = None,
                max_frames: int = 0, boxes_by_image=None, progress: bool = False) -> dict:
    """One video source (file, folder of frames, camera, stream) through the overlapped pipeline
    (:func:`edgepose.video.run_video`): the annotated video ``OUT_DIR/NAME.mp4`` (None: none),
    COCO results with the frame number as image id, per-frame summary entries, JSON lines, CSV and
    plot; ``tracker``: tracking options in any form :func:`edgepose.track.tracker_options` takes. ``boxes_by_image``: person boxes per frame
    number (top-down; the frames then run in order on one thread). Returns run_video's stats plus
    ``people_per_frame`` ({people: frames}); raises InputError when no frame decodes."""
    from .log import logger
    from .video import run_video

    track = None
    if tracker:
        from .track import Tracker

        track = Tracker.from_options(tracker, est.meta)
    if boxes_by_image is not None:
        whole, frame_no = est, iter(range(1 << 62))

        def est(img):
            b, s = _boxes_for(boxes_by_image, next(frame_no))
            return whole(img, boxes=b, box_scores=s)
        est.meta = whole.meta
    counts: Dict[int, int] = {}        # people per frame -> frames (bounded memory)

    def on_result(i, t, img, res):
        counts[len(res)] = counts.get(len(res), 0) + 1
        if results is not None and res.to_coco17 is not None:
            results.extend(res.to_coco_results(i))
        if summary is not None:
            summary.append({"frame": i, "time_s": round(t, 4), **res.to_dict()})

    name = source_name(source) if isinstance(source, str) else "camera"
    out_video = None if out_dir is None else os.path.join(out_dir, name + ".mp4")
    stats = run_video(source, est, tracker=track, out_video=out_video, jsonl=jsonl, csv=csv, plot=plot,
                      pipelined=pipelined, max_fps=max_fps, max_frames=max_frames or 0,
                      progress=progress, on_result=on_result)
    stats["people_per_frame"] = counts
    if stats["frames_skipped"] or stats.get("ended_early"):
        logger.warning("%s: %d frame(s) could not be decoded and were skipped%s"
                       % (name, stats["frames_skipped"],
                          "; the file ended after %d of its %d frames" % (stats["frames_read"], stats["frame_count"])
                          if stats.get("ended_early") else ""))
    if stats["frames_processed"] == 0 and not stats["interrupted"]:
        raise InputError("no frame of %s could be decoded" % source)
    return stats
