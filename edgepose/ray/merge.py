"""The outputs from the records, through :mod:`edgepose.runner` (the code of ``edgepose infer``):
a video is replayed through ``infer_video``, its frames decoded once more here and each checked
against the checksum its worker recorded (a seeked chunk whose frame differs runs again without
seeking); entries stream to their writers, naming their source when there are several."""
from collections import deque
from typing import Callable, List, Optional

from ..errors import EdgeposeError, InputError
from ..log import logger
from .plan import frame_checksum
from .records import pose_result


class Replay:
    """An 'estimator' handing back a video's recorded results, one per call in frame order
    (run_video calls its estimator once per frame, in order), the chunks' records read one at a
    time. Each frame is checked against the checksum its worker recorded: a seeked chunk whose
    frame differs is run again without seeking (``rerun(item)`` -> its new record) and the
    replay goes on with it. The frame numbers are checked against the chunk's range and against
    what run_video reports (:meth:`check`)."""

    def __init__(self, name: str, chunks: List[dict], jobdir, rerun: Callable[[dict], dict]):
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


class Entries:
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


def merge_video(p: dict, si: int, items, jobdir, results, summary, rerun, **video) -> dict:
    """One video's outputs from its chunks' records, through :func:`edgepose.runner.infer_video`
    (the code of ``edgepose infer VIDEO``; ``video``: its keywords), tracked there in frame
    order. Returns the pipeline's stats."""
    from ..runner import infer_video

    chunks = [it for it in items if it["kind"] == "frames" and it["source"] == si]
    replay = Replay(p["source"], chunks, jobdir, rerun)
    summary.check = replay.check
    stats = infer_video(replay, p["source"], results=results, summary=summary, **video)
    if not stats["interrupted"] and not replay.finished() and not video.get("max_frames"):
        raise EdgeposeError("%s: %d frames decoded here, more recorded by the workers"
                            % (p["source"], replay.position))
    return stats
