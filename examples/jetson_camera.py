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
- edgepose needs Python >= 3.8 (JetPack 5 / 6). JetPack 4.6 (Nano) ships TensorRT's Python
  bindings for Python 3.6 only: build the engine there with the trtexec line of the bundle's
  README; running this script there needs TensorRT bindings built for Python 3.8.
"""
import argparse
import sys


def gstreamer_csi(sensor_id=0, width=1280, height=720, fps=30, flip=0, out_width=None, out_height=None):
    """The nvarguscamerasrc pipeline: NVMM NV12 from the ISP → BGRx (nvvidconv) → BGR appsink."""
    ow, oh = out_width or width, out_height or height
    return ("nvarguscamerasrc sensor-id=%d ! "
            "video/x-raw(memory:NVMM), width=(int)%d, height=(int)%d, format=(string)NV12, framerate=(fraction)%d/1 ! "
            "nvvidconv flip-method=%d ! video/x-raw, width=(int)%d, height=(int)%d, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"
            % (sensor_id, width, height, fps, flip, ow, oh))


def open_camera(args):
    import cv2

    if args.camera == "csi":
        pipe = gstreamer_csi(args.sensor_id, args.width, args.height, args.fps, args.flip)
        cap = cv2.VideoCapture(pipe, cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            has_gst = any(ln.strip().startswith("GStreamer") and "YES" in ln
                          for ln in cv2.getBuildInformation().splitlines())
            why = ("check the camera cable and 'nvgstcapture-1.0'" if has_gst else
                   "this OpenCV has no GStreamer support: use JetPack's python3-opencv "
                   "(pip uninstall opencv-python opencv-python-headless)")
            sys.exit("cannot open the CSI camera (sensor-id %d): %s\npipeline: %s" % (args.sensor_id, why, pipe))
        return cap
    dev = args.device
    src = int(dev) if str(dev).isdigit() else dev
    cap = cv2.VideoCapture(src, cv2.CAP_V4L2) if not isinstance(src, str) or src.startswith("/dev/") \
        else cv2.VideoCapture(src)
    if not cap.isOpened():
        sys.exit("cannot open the USB camera %s (ls /dev/video*; v4l2-ctl --list-devices)" % dev)
    if args.mjpg:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, args.width)
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, args.height)
    cap.set(cv2.CAP_PROP_FPS, args.fps)
    return cap


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
    args = p.parse_args(argv)

    from edgepose.errors import EdgeposeError
    from edgepose.stream import run_stream

    try:
        est, backend = load(args)
    except EdgeposeError as e:
        sys.exit("edgepose: %s" % e)
    if backend is not None and hasattr(backend, "describe"):
        print(backend.describe())
    cap = open_camera(args)
    run_stream(cap, est, out=args.out, fps=float(args.fps), display=args.display,
               max_frames=args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
