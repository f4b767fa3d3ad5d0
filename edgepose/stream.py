"""Live pose estimation on a frame source (camera, video): the loop the camera demos share."""
from __future__ import annotations

import time
from typing import Optional

import cv2

from .log import logger


def run_stream(cap, estimator, out: Optional[str] = None, fps: float = 30.0, display: bool = False,
               max_frames: int = 0, report_every_s: float = 1.0) -> int:
    """Read frames from ``cap`` (anything with ``read()`` / ``release()``, e.g. cv2.VideoCapture),
    estimate and draw poses, print fps once a second, optionally write ``out`` (mp4) and show a
    window; stop when the source ends, after ``max_frames`` frames, on Esc/q or Ctrl-C.
    Returns the number of frames processed."""
    from .draw import draw_poses
    from .io import VideoWriter

    writer = None
    n, n_last, t_last, t_model = 0, 0, time.perf_counter(), 0.0
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                logger.info("the source stopped delivering frames")
                break
            if frame.ndim == 3 and frame.shape[2] == 4:   # XBGR8888 camera configurations
                frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
            t0 = time.perf_counter()
            result = estimator(frame)
            t_model += time.perf_counter() - t0
            vis = draw_poses(frame, result)
            n += 1
            now = time.perf_counter()
            if now - t_last >= report_every_s:
                k = n - n_last
                logger.info("%.1f fps (pose %.1f ms/frame), %d people"
                            % (k / (now - t_last), 1000 * t_model / k, len(result)))
                n_last, t_last, t_model = n, now, 0.0
            if out:
                if writer is None:
                    writer = VideoWriter(out, float(fps), (vis.shape[1], vis.shape[0]))
                writer.write(vis)
            if display:
                cv2.imshow("edgepose", vis)
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    break
            if max_frames and n >= max_frames:
                break
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()
        if writer is not None:
            writer.close()
        if display:
            cv2.destroyAllWindows()
    return n
