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
import sys


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


def open_camera(args):
    import cv2

    if args.camera == "pi":
        return PiCamera(args.width, args.height, args.fps)
    src = int(args.device) if str(args.device).isdigit() else args.device
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        sys.exit("cannot open the USB camera %s (ls /dev/video*; v4l2-ctl --list-devices)" % args.device)
    cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, args.width)
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, args.height)
    cap.set(cv2.CAP_PROP_FPS, args.fps)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help=".tflite (or .onnx) model made by edgepose export")
    p.add_argument("--camera", choices=["pi", "usb"], default="pi")
    p.add_argument("--device", default="0", help="USB camera: index or /dev/videoN")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--height-in", type=int, help="bottom-up model input height (dynamic models)")
    p.add_argument("--detector", help="person detector (top-down models), e.g. light_person_detector.tflite")
    p.add_argument("--display", action="store_true", help="show the frames in a window")
    p.add_argument("--out", help="write the annotated video here")
    p.add_argument("--frames", type=int, default=0, help="stop after N frames (0: run until Ctrl-C)")
    args = p.parse_args(argv)

    from edgepose.errors import EdgeposeError
    from edgepose.stream import run_stream
    from edgepose.pipelines import load_estimator

    opts = {"height": args.height_in} if args.height_in else {}
    try:
        est = load_estimator(args.model, detector=args.detector, threads=args.threads, **opts)
    except EdgeposeError as e:
        sys.exit("edgepose: %s" % e)
    backend = getattr(est, "backend", None)
    if backend is not None and hasattr(backend, "describe"):
        print(backend.describe())
    cap = open_camera(args)
    run_stream(cap, est, out=args.out, fps=float(args.fps), display=args.display,
               max_frames=args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
