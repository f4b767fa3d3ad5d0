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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # camera_run.py, beside this file
import camera_run  # noqa: E402


def camera_source(args):
    """The camera as an edgepose source spec: the CSI pipeline string or the USB device."""
    if args.camera == "csi":
        from edgepose.video import gstreamer_csi

        return gstreamer_csi(args.sensor_id, args.width, args.height, args.fps, args.flip)
    return args.device


def load(args):
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
        return BottomUpEstimator(backend, **({"height": args.height_in} if args.height_in else {})), backend
    return camera_run.load_model(args)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="TensorRT bundle directory, .engine, .onnx or .tflite")
    p.add_argument("--engine", help="prebuilt engine for the bundle (trtexec --saveEngine)")
    p.add_argument("--camera", choices=["csi", "usb"], default="csi")
    p.add_argument("--sensor-id", type=int, default=0, help="CSI sensor id")
    p.add_argument("--flip", type=int, default=0, help="nvvidconv flip-method (0-7)")
    p.add_argument("--mjpg", action="store_true", help="ask the USB camera for MJPG (higher fps)")
    camera_run.add_camera_options(p, width=1280, height=720)
    camera_run.add_model_options(p)
    camera_run.add_output_options(p)
    args = p.parse_args(argv)
    return camera_run.run_camera(args, lambda: load(args), lambda: camera_source(args), mjpg=args.mjpg)


if __name__ == "__main__":
    sys.exit(main())
