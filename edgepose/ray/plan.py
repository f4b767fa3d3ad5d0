"""What a job runs: the sources as work items (``images_per_item`` images, or a video's frames
``[start, end)``), each source checked in one line before any work; the frame ranges a worker
decodes (:class:`FrameRange`, seeking checked against the timestamps) and the checksum that the
driver's replay checks each recorded frame against."""
import hashlib
import json
import os
import zlib
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError


class FrameRange:
    """``(index, time_s, frame)`` of a video's frames ``first <= index < end`` (``end`` None: to
    the end), numbered and timed as :class:`edgepose.frames.FrameSource` numbers them (the
    frames of ``edgepose infer VIDEO``; an undecodable frame is skipped and keeps its number),
    which reads them: ``seek=True`` seeks to ``first`` with the landing checked against the
    frames' timestamps (a first frame that disagrees makes it decode from frame 0 instead:
    ``mode`` "sequential"; a later one raises :class:`edgepose.frames.SeekMismatch`), ``seek=False`` decodes
    from frame 0 (always right, slower). See :meth:`FrameSource.seek` and
    :meth:`FrameSource.frames`.

    After iterating: ``mode``; ``pts_ok`` (every frame's timestamp gave its number: the
    timestamps run at a constant rate); ``eof`` (the video ended before ``end``)."""

    def __init__(self, path: str, first: int = 0, end: Optional[int] = None, seek: bool = True):
        self.path, self.first, self.end, self.seek = path, int(first), end, bool(seek)
        self.mode = "sequential"
        self.pts_ok = True
        self.eof = False
        self.fps = 30.0

    def __iter__(self) -> Iterator[Tuple[int, float, np.ndarray]]:
        from ..frames import FrameSource

        with FrameSource.video_file(self.path) as src:
            self.fps = src.fps
            if self.first > 0 and src.seek(self.first, fast=self.seek):
                self.mode = "seek"
            for got in src.frames(end=self.end):
                self.pts_ok = src.pts_ok
                yield got
            self.pts_ok, self.eof = src.pts_ok, src.eof


def frame_checksum(img: np.ndarray) -> int:
    """CRC-32 of a frame's pixels (a seeked frame must be the frame decoding from 0 gives)."""
    return zlib.crc32(np.ascontiguousarray(img).data) & 0xFFFFFFFF


def file_id(path: str) -> list:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def job_hash(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tracker_spec(track) -> Optional[tuple]:
    """``track`` in :func:`edgepose.track.tracker_options`' normal form (None: no tracking),
    checked here (one line), before any work."""
    from ..track import tracker_options

    return tracker_options(track)


def boxes_of(boxes_by_image, iid):
    if boxes_by_image is None or iid not in boxes_by_image:
        return None
    b, s = boxes_by_image[iid]
    return (np.asarray(b).tolist(), None if s is None else np.asarray(s).tolist())


def plan_infer(sources: Sequence[str], images_per_item: int, chunk_frames: int,
                draw: bool, boxes_by_image, max_frames: Optional[int]):
    """The sources (kind, images / frame count, fingerprint) and their work items, in merge
    order; every source checked here, in one line, before any work."""
    from ..io import list_images
    from ..runner import drawn_name
    from ..frames import open_source
    from ..sources import image_id, source_kind, source_name

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
            entry["fingerprint"] = [file_id(p) for p in paths]
            for a in range(0, len(paths), images_per_item):
                b = min(a + images_per_item, len(paths))
                items.append({"id": "s%03d-img-%06d-%06d" % (si, a, b), "kind": "images",
                              "source": si, "draw": draw, "names": names[a:b], "use_boxes": use_boxes,
                              "images": [{"path": os.path.abspath(paths[k]), "image_id": ids[k],
                                          "boxes": boxes_of(boxes_by_image, ids[k])}
                                         for k in range(a, b)]})
        else:
            fs = open_source(src)              # the one-line checks of a video file
            n = int(fs.frame_count)
            fs.release()
            names = [source_name(src) + ".mp4"]
            entry["fingerprint"] = file_id(src)
            if max_frames:
                n = min(n, int(max_frames)) if n > 0 else int(max_frames)
            starts = list(range(0, n, chunk_frames)) if n > 0 else [0]
            for ci, a in enumerate(starts):
                b = a + chunk_frames if ci < len(starts) - 1 else (int(max_frames) if max_frames else None)
                it = {"id": "s%03d-vid-%06d-%s" % (si, a, "end" if b is None else "%06d" % b),
                      "kind": "frames", "source": si, "path": ab, "start": a, "end": b,
                      "seek": True, "use_boxes": use_boxes}
                if use_boxes:
                    it["boxes"] = {str(f): boxes_of(boxes_by_image, f) for f in boxes_by_image
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


def seek_redo(items: List[dict], jobdir) -> List[dict]:
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
