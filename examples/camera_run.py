"""What the camera examples share (``jetson_camera.py``, ``rpi_camera.py``): their camera, model and
output options, loading a model, and the run itself: the camera opened through ``edgepose.video.open_source``,
optional tracking, ``edgepose.video.run_video`` (frame rate logged once a second), a closing line;
an edgepose error ends it in one line.

Not an example of its own: the examples import it from their folder, so each stays runnable as a
script from anywhere. Python 3.6 syntax (JetPack 4.6).
"""
import sys


def add_camera_options(p, width, height):
    """The camera's options: --device (a USB camera), --width, --height (defaults given), --fps."""
    p.add_argument("--device", default="0", help="USB camera: index or /dev/videoN")
    p.add_argument("--width", type=int, default=width)
    p.add_argument("--height", type=int, default=height)
    p.add_argument("--fps", type=int, default=30)


def add_model_options(p, threads=None, detector_help="person detector (top-down models)"):
    """The options :func:`load_model` reads: --height-in, --detector, --threads (default given)."""
    p.add_argument("--height-in", type=int, help="bottom-up model input height (dynamic models)")
    p.add_argument("--detector", help=detector_help)
    p.add_argument("--threads", type=int, default=threads, help="CPU threads (onnx/tflite models)")


def add_output_options(p):
    """The options every camera example has: window, annotated video, frame limit, tracking,
    JSON lines."""
    p.add_argument("--display", action="store_true", help="show the frames in a window")
    p.add_argument("--out", help="write the annotated video here")
    p.add_argument("--frames", type=int, default=0, help="stop after N frames (0: run until Ctrl-C)")
    p.add_argument("--track", action="store_true", help="people IDs and smoothed keypoints")
    p.add_argument("--jsonl", help="write one JSON line per frame here")


def load_model(args):
    """``(estimator, backend)``: ``args.model`` through ``edgepose.pipelines.load_estimator``
    (``--detector``, ``--threads``, ``--height-in``)."""
    from edgepose.pipelines import load_estimator

    opts = {"height": args.height_in} if args.height_in else {}
    est = load_estimator(args.model, detector=args.detector, threads=args.threads, **opts)
    return est, getattr(est, "backend", None)


def run_camera(args, load, camera, mjpg=False):
    """Load the model (``load()`` -> ``(estimator, backend)``; the backend described), open the
    camera (``camera()`` -> a source for ``open_source``, at ``--width`` x ``--height``,
    ``--fps``), run it; returns 0, or exits with the one-line edgepose error."""
    from edgepose.errors import EdgeposeError
    from edgepose.log import configure
    from edgepose.video import open_source, run_video

    configure(0)
    try:
        est, backend = load()
        if backend is not None and hasattr(backend, "describe"):
            print(backend.describe())
        src = open_source(camera(), width=args.width, height=args.height, fps=args.fps, mjpg=mjpg)
        tracker = None
        if args.track:
            from edgepose.track import Tracker
            tracker = Tracker()
        st = run_video(src, est, tracker=tracker, out_video=args.out, jsonl=args.jsonl,
                       display=args.display, max_frames=args.frames, report_every_s=1.0)
    except EdgeposeError as e:
        sys.exit("edgepose: %s" % e)
    print("%d frames, %.1f fps, %d stale frames dropped" % (st["frames_processed"], st["fps"], st["frames_dropped"]))
    return 0
