#!/usr/bin/env python3
"""Live pose estimation on a Raspberry Pi: Pi camera (picamera2) or USB camera, TFLite model.

    python3 examples/rpi_camera.py tfpose.int8.tflite                   # Pi camera (picamera2)
    python3 examples/rpi_camera.py tfpose.int8.tflite --camera usb --device 0
    python3 examples/rpi_camera.py model.tflite --height-in 224 --out run.mp4 --frames 200

The model (``edgepose export ... --target rpi-int8`` / ``tflite-fp16`` / ``tflite-fp32``, or any
model edgepose loads) goes through ``edgepose.pipelines.load_estimator`` with ``--threads``
(default 4: one per Cortex-A72/A76 core); ``edgepose.draw.draw_poses`` draws; the frame rate is
printed once a second. ``--display`` opens a window (needs a desktop session).

picamera2 comes with Raspberry Pi OS (``sudo apt install python3-picamera2``; a virtualenv
needs ``--system-site-packages``). Its ``RGB888`` format is laid out B, G, R in memory, which is
OpenCV's BGR: frames go to edgepose unchanged.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # camera_run.py, beside this file
import camera_run  # noqa: E402


class PiCamera:
    """picamera2 frames as BGR uint8 arrays."""

    def __init__(self, width, height, fps):
        try:
            from picamera2 import Picamera2
        except ImportError:
            sys.exit("picamera2 is not importable: sudo apt install python3-picamera2 "
                     "(in a virtualenv: --system-site-packages), or use --camera usb")
        self.cam = Picamera2()
        cfg = self.cam.create_video_configuration(main={"size": (width, height), "format": "RGB888"},
                                                  controls={"FrameRate": float(fps)})
        self.cam.configure(cfg)
        self.cam.start()

    def read(self):
        frame = self.cam.capture_array("main")
        return frame is not None, frame

    def release(self):
        self.cam.stop()
        self.cam.close()


def camera_source(args):
    """The camera as an edgepose source: picamera2 frames, or the USB device."""
    if args.camera == "pi":
        return PiCamera(args.width, args.height, args.fps)
    return args.device


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help=".tflite (or .onnx) model made by edgepose export")
    p.add_argument("--camera", choices=["pi", "usb"], default="pi")
    camera_run.add_camera_options(p, width=640, height=480)
    camera_run.add_model_options(
        p, threads=4, detector_help="person detector (top-down models), e.g. light_person_detector.tflite")
    camera_run.add_output_options(p)
    args = p.parse_args(argv)
    return camera_run.run_camera(args, lambda: camera_run.load_model(args), lambda: camera_source(args),
                                 mjpg=True)


if __name__ == "__main__":
    sys.exit(main())
