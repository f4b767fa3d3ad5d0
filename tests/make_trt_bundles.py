"""Jetson bundles of a small bottom-up model (random weights), for the TensorRT tests.

    python tests/make_trt_bundles.py OUTDIR      (in the main environment: needs the exporters, onnx)

Writes ``OUTDIR/tiny.onnx`` (a 6-conv Lightweight-OpenPose-shaped model with edgepose metadata),
``OUTDIR/calib/`` (8 images), and the bundles ``OUTDIR/int8`` (jetson-int8: FP32 + Q/DQ ONNX,
calibration cache) and ``OUTDIR/fp16`` (jetson-fp16), made the way ``edgepose export`` makes them.
``tests/test_tensorrt_device.py`` runs them on each JetPack's (FAKE) TensorRT on the device's
Python, where the exporters cannot run (``EDGEPOSE_TRT_BUNDLES_DIR=OUTDIR``); ``tests/test_tensorrt.py``
uses the same model and images.
"""
import os
import sys

import numpy as np

H, W = 64, 96


def tiny_bottomup(path, seed=0):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgepose.exporters.onnx_export import make_meta
    from edgepose.metadata import embed_onnx

    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(name, x, cin, cout, k, s, relu=True):
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, name + ".w"), numpy_helper.from_array(b, name + ".b")])
        y = name + ".out"
        nodes.append(helper.make_node("Conv", [x, name + ".w", name + ".b"], [y], name=name,
                                      kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4))
        if relu:
            nodes.append(helper.make_node("Relu", [y], [name + ".relu"], name=name + "_relu"))
            return name + ".relu"
        return y

    x = conv("c1", "image", 3, 8, 3, 2)
    x = conv("c2", x, 8, 16, 3, 2)
    x = conv("c3", x, 16, 16, 3, 2)
    x = conv("c4", x, 16, 16, 1, 1)
    hm = conv("hm", x, 16, 18, 1, 1, relu=False)
    paf = conv("paf", x, 16, 38, 1, 1, relu=False)
    nodes.append(helper.make_node("Identity", [hm], ["heatmaps"], name="hm_out"))
    nodes.append(helper.make_node("Identity", [paf], ["pafs"], name="paf_out"))
    g = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["batch", 18, "h8", "w8"]),
         helper.make_tensor_value_info("pafs", TensorProto.FLOAT, ["batch", 38, "h8", "w8"])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    meta = make_meta("lightweight-openpose", {}, (H, W), True, None)
    embed_onnx(m, meta)
    onnx.checker.check_model(m)
    onnx.save(m, path)


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
