"""Jetson bundles of a small bottom-up model (random weights), for the TensorRT tests.

    python tests/make_trt_bundles.py OUTDIR      (in the main environment: needs the exporters, onnx)

Writes ``OUTDIR/tiny.onnx`` (``tests/tiny_models.py``'s 6-conv Lightweight-OpenPose-shaped model),
``OUTDIR/calib/`` (8 images), and the bundles ``OUTDIR/int8`` (jetson-int8: FP32 + Q/DQ ONNX,
calibration cache) and ``OUTDIR/fp16`` (jetson-fp16), made the way ``edgepose export`` makes them.
``tests/test_tensorrt_device.py`` runs them on each JetPack's (FAKE) TensorRT on the device's
Python, where the exporters cannot run (``EDGEPOSE_TRT_BUNDLES_DIR=OUTDIR``); ``tests/test_tensorrt.py``
uses the same model and images. Both use the helpers here (a bundle's copy, its model input,
onnxruntime's outputs); importing this file needs numpy and the runtime only.
"""
import os
import shutil
import sys

import numpy as np
from tiny_models import BOTTOMUP_HW, tiny_bottomup   # beside this file: on sys.path as a script too

H, W = BOTTOMUP_HW     # the bundles' model input


def calib_images(d):
    """8 blurred noise images with a bright disc, of several heights."""
    import cv2

    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(8):
        img = cv2.GaussianBlur(rng.integers(0, 255, (48 + 8 * i, 80, 3), dtype=np.uint8), (7, 7), 2)
        cv2.circle(img, (40, 24), 10 + i, (255, 200, 50), -1)
        cv2.imwrite(os.path.join(d, "%02d.png" % i), img)
    return d


def export_bundle(model, calib, out, mode="int8", log=None, **kw):
    """A bundle as the tests make it: few calibration samples, and no accuracy gate (random
    weights on random images: the gate is not what the TensorRT tests are about)."""
    from edgepose.exporters.tensorrt import export_jetson_bundle

    kw.setdefault("n_calib", 5)
    kw.setdefault("holdout", 2)
    if mode != "fp16":
        kw.setdefault("max_label_free_drop", 100.0)
    return export_jetson_bundle(model, out, mode=mode, calib=None if mode == "fp16" else calib,
                                build_engine=False, log=log or (lambda m: None), **kw)


def copy_bundle(src, dst):
    """A fresh copy of a bundle (a test changes its copy only)."""
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def ort_outputs(path, x):
    """The outputs of an ONNX file on onnxruntime's CPU provider, by name."""
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {"image": x})))


def model_input(meta, w=W):
    """A fixed random image, ``H`` x ``w``, preprocessed for the bundles' model."""
    from edgepose.preprocess import preprocess_bottomup
    rng = np.random.default_rng(5)
    img = rng.integers(0, 255, (H, w, 3), dtype=np.uint8)
    return preprocess_bottomup(img, meta)[0]


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    model = os.path.join(outdir, "tiny.onnx")
    tiny_bottomup(model)
    calib = calib_images(os.path.join(outdir, "calib"))
    for mode in ("int8", "fp16"):
        export_bundle(model, calib, os.path.join(outdir, mode), mode=mode)
    print("wrote the int8 and fp16 bundles of %s to %s" % (os.path.basename(model), outdir))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/make_trt_bundles.py OUTDIR")
    main(sys.argv[1])
