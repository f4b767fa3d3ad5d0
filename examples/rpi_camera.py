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
    p.add_argument("--track", action="store_true", help="people IDs and smoothed keypoints")
    p.add_argument("--jsonl", help="write one JSON line per frame here")
    args = p.parse_args(argv)

    from edgepose.errors import EdgeposeError
    from edgepose.log import configure
    from edgepose.pipelines import load_estimator
    from edgepose.video import open_source, run_video

    configure(0)
    opts = {"height": args.height_in} if args.height_in else {}
    try:
        est = load_estimator(args.model, detector=args.detector, threads=args.threads, **opts)
        backend = getattr(est, "backend", None)
        if backend is not None and hasattr(backend, "describe"):
            print(backend.describe())
        src = open_source(camera_source(args), width=args.width, height=args.height, fps=args.fps,
                          mjpg=True)
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
