#!/usr/bin/env python3
"""Live pose estimation on a Jetson: CSI camera (GStreamer, nvarguscamerasrc) or USB camera.

    python3 examples/jetson_camera.py tfpose.jetson-int8/              # bundle: engine built/cached
    python3 examples/jetson_camera.py tfpose.jetson-int8/ --camera usb --device 0
    python3 examples/jetson_camera.py model.onnx --camera usb          # any model edgepose loads
    python3 examples/jetson_camera.py bundle/ --engine bundle/model.engine --out run.mp4 --frames 300

The model goes through ``edgepose.pipelines.load_estimator`` (a TensorRT bundle or ``.engine``
runs on TensorRT; ``.onnx``/``.tflite`` work too), ``edgepose.draw.draw_poses`` draws, and the
frame rate is printed once a second. ``--display`` opens a window (needs a desktop session).

Notes for Jetson boards:
- The CSI path needs OpenCV built with GStreamer (JetPack's ``python3-opencv`` is; the pip
  ``opencv-python`` wheels are not). The script says so when the pipeline cannot open.
- ``sudo nvpmodel -m 0 && sudo jetson_clocks`` before measuring: the default power mode
  throttles the GPU.
- The runtime installs on each JetPack's own Python (README: "Jetson Nano (JetPack 4.6)",
  "Jetson Orin (JetPack 5/6)"): 3.6 with TensorRT 8.2 on the Nano, whose Maxwell GPU has no fast
  INT8 (an int8 bundle is built fp16 there, with a message); 3.8 / 3.10 on JetPack 5 / 6. Use a
  venv made with --system-site-packages so that JetPack's tensorrt and OpenCV are seen.
- This script keeps Python 3.6 syntax (JetPack 4.6).
"""
import argparse
import sys


def camera_source(args):
    """The camera as an edgepose source spec: the CSI pipeline string or the USB device."""
    if args.camera == "csi":
        from edgepose.video import gstreamer_csi

        return gstreamer_csi(args.sensor_id, args.width, args.height, args.fps, args.flip)
    return args.device


def load(args):
    from edgepose.pipelines import load_estimator

    opts = {}
    if args.height_in:
        opts["height"] = args.height_in
    if args.engine:
        # a prebuilt engine (e.g. trtexec --saveEngine) for a bundle
        from edgepose.backends.tensorrt import TensorrtBackend
        from edgepose.pipelines.bottomup import BottomUpEstimator

        backend = TensorrtBackend(args.model, engine=args.engine)
        if backend.meta is not None and backend.meta.family == "topdown":
            from edgepose.pipelines.detector import PersonDetector
            from edgepose.pipelines.topdown import TopDownEstimator

            det = PersonDetector(args.detector) if args.detector else None
            return TopDownEstimator(backend, detector=det), backend
        return BottomUpEstimator(backend, **opts), backend
    est = load_estimator(args.model, detector=args.detector, threads=args.threads, **opts)
    return est, getattr(est, "backend", None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="TensorRT bundle directory, .engine, .onnx or .tflite")
    p.add_argument("--engine", help="prebuilt engine for the bundle (trtexec --saveEngine)")
    p.add_argument("--camera", choices=["csi", "usb"], default="csi")
    p.add_argument("--sensor-id", type=int, default=0, help="CSI sensor id")
    p.add_argument("--flip", type=int, default=0, help="nvvidconv flip-method (0-7)")
    p.add_argument("--device", default="0", help="USB camera: index or /dev/videoN")
    p.add_argument("--mjpg", action="store_true", help="ask the USB camera for MJPG (higher fps)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--height-in", type=int, help="bottom-up model input height (dynamic models)")
    p.add_argument("--detector", help="person detector (top-down models)")
    p.add_argument("--threads", type=int, help="CPU threads (onnx/tflite models)")
    p.add_argument("--display", action="store_true", help="show the frames in a window")
    p.add_argument("--out", help="write the annotated video here")
    p.add_argument("--frames", type=int, default=0, help="stop after N frames (0: run until Ctrl-C)")
    p.add_argument("--track", action="store_true", help="people IDs and smoothed keypoints")
    p.add_argument("--jsonl", help="write one JSON line per frame here")
    args = p.parse_args(argv)

    from edgepose.errors import EdgeposeError
    from edgepose.log import configure
    from edgepose.video import open_source, run_video

    configure(0)
    try:
        est, backend = load(args)
        if backend is not None and hasattr(backend, "describe"):
            print(backend.describe())
        src = open_source(camera_source(args), width=args.width, height=args.height, fps=args.fps,
                          mjpg=args.mjpg)
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


if __name__ == "__main__":
    sys.exit(main())
