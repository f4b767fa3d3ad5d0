"""edgepose.frames.FrameSource, the one reader of frames: numbering, a stride, seeking checked
against the timestamps (and its fallback), exact counts, sizes, one-line errors."""
import cv2
import numpy as np
import pytest

from edgepose.errors import InputError
from edgepose.frames import FrameSource, SeekMismatch, open_source
from edgepose.io import VideoReader

N = 30


@pytest.fixture(scope="module", params=["MJPG", "mp4v"])
def video(request, tmp_path_factory):
    """30 frames, frame i of brightness 8 * i, 10 fps."""
    fourcc = request.param
    p = str(tmp_path_factory.mktemp("frames") / ("v.avi" if fourcc == "MJPG" else "v.mp4"))
    vw = cv2.VideoWriter(p, cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    assert vw.isOpened()
    for i in range(N):
        vw.write(np.full((48, 64, 3), 8 * i, np.uint8))
    vw.release()
    return p


def _number(img):
    return int(round(float(img.mean()) / 8))


def test_a_file_is_numbered_timed_and_sized(video):
    src = FrameSource.video_file(video)
    assert src.kind == "file" and not src.live and src.size == (64, 48)
    assert src.fps == pytest.approx(10.0) and src.frame_count == N
    got = list(src)
    src.release()
    assert [g[0] for g in got] == list(range(N)) and [_number(g[2]) for g in got] == list(range(N))
    assert got[3][1] == pytest.approx(0.3) and src.eof and src.pts_ok
    r = VideoReader(video)
    assert (r.size, r.fps, len(r)) == ((64, 48), src.fps, N)
    assert sum(1 for _ in r) == N


def test_a_stride_and_a_choice_of_frames(video):
    with FrameSource.video_file(video) as src:
        assert [i for i, _, _ in src.frames(step=5)] == [0, 5, 10, 15, 20, 25]
    with FrameSource.video_file(video) as src:
        got = list(src.frames(end=12, only={3, 7, 11, 20}))
        assert [i for i, _, _ in got] == [3, 7, 11] and [_number(f) for _, _, f in got] == [3, 7, 11]
        assert not src.eof
    with FrameSource.video_file(video) as src:
        with pytest.raises(InputError, match="step"):
            next(src.frames(step=0))


def test_seeking_lands_where_asked_or_decodes_forward(video):
    with FrameSource.video_file(video) as src:
        assert src.seek(17) and src.seeked
        i, t, f = src.read()
        assert (i, _number(f)) == (17, 17) and t == pytest.approx(1.7)
        assert not src.seek(4, fast=False) and not src.seeked       # backwards, decoding from 0
        assert [(i, _number(f)) for i, _, f in src.frames(end=7)] == [(4, 4), (5, 5), (6, 6)]
        assert not src.seek(9, fast=False)                          # forwards from here
        assert _number(src.read()[2]) == 9
        assert src.count_frames() == N and src.read()[0] == 0      # exact count, then at frame 0


def test_a_seeked_frame_whose_timestamp_disagrees_is_refused(video, monkeypatch):
    with FrameSource.video_file(video) as src:
        real = src._pts
        monkeypatch.setattr(src, "_pts", lambda: real() + 3)
        assert not src.seek(10) and not src.seeked                  # the landing is checked
        assert src.read()[0] == 10
    with FrameSource.video_file(video) as src:
        assert src.seek(10)
        monkeypatch.setattr(src, "_pts", lambda: 99)                # a later frame disagrees
        frames = src.frames()
        assert next(frames)[0] == 10
        with pytest.raises(SeekMismatch, match="frame 11 has the timestamp of frame 99"):
            next(frames)
    with FrameSource.video_file(video) as src:                      # not seeked: only noted
        monkeypatch.setattr(src, "_pts", lambda: 99)
        assert len(list(src.frames())) == N and not src.pts_ok


def test_live_sources_cannot_seek_and_files_fail_in_one_line(tmp_path):
    class Cam:
        def read(self):
            return True, np.zeros((4, 6), np.uint8)

        def release(self):
            pass

    src = open_source(Cam())
    assert src.live and src.read()[2].shape == (4, 6, 3) and src.size == (6, 4)
    with pytest.raises(InputError, match="cannot seek"):
        src.seek(3)
    empty, junk = tmp_path / "e.mp4", tmp_path / "j.mp4"
    empty.write_bytes(b"")
    junk.write_bytes(b"\x00" * 4096)
    for path, msg in ((tmp_path / "missing.mp4", "video not found"), (empty, "video file is empty"),
                      (junk, "cannot open video")):
        with pytest.raises(InputError, match=msg) as e:
            FrameSource.video_file(str(path))
        assert "\n" not in str(e.value)
