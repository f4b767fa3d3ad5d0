"""The tiny test models that several test files build (ONNX, with edgepose metadata), in one place.

- :func:`tiny_bottomup`: a 6-conv Lightweight-OpenPose-shaped bottom-up model, random weights
  (input ``BOTTOMUP_HW``; the TensorRT bundles of ``tests/make_trt_bundles.py``, INT8 export,
  concurrency and kill tests);
- :func:`build_dots_model`: the constructed top-down "dots" model: a crop becomes heatmaps that
  peak where the crop shows bright dots, a Gaussian blur (sigma ``DOTS_SIGMA`` input px) sampled
  at stride ``DOTS_STRIDE`` (kernel centred on input pixel 4*i: heatmap_offset 0, HRNet's
  convention), then channel selection (keypoint k looks at colour channel ``DOTS_COLOUR[k]``;
  flip pairs share a colour, so the model is mirror-consistent). A dot drawn in the image must
  come back at the same image position after crop -> decode -> inverse affine
  (``tests/test_topdown.py``).

Importing this module needs numpy and edgepose's runtime only (the runtime tests import it on the
devices' Pythons); onnx and the exporters are imported when a model is built.
"""
import numpy as np

BOTTOMUP_HW = (64, 96)

DOTS_IN_H, DOTS_IN_W, DOTS_STRIDE = 256, 192, 4
# colour channel per keypoint; both members of each flip pair share one
DOTS_COLOUR = [0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
DOTS_SIGMA, DOTS_KSIZE = 6.0, 25


def tiny_bottomup(path, seed=0):
    """Write the tiny bottom-up model (heatmaps 18, PAFs 38 at stride 8) to ``path``."""
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
    meta = make_meta("lightweight-openpose", {}, BOTTOMUP_HW, True, None)
    embed_onnx(m, meta)
    onnx.checker.check_model(m)
    onnx.save(m, path)


def dots_meta(batch_dynamic=True):
    """The dots model's :class:`edgepose.metadata.ModelMeta` (COCO-17, flip pairs, padding 1.25)."""
    from edgepose.metadata import ModelMeta
    from edgepose.schema import COCO17_FLIP_PAIRS, COCO17_KEYPOINTS, COCO17_SKELETON

    return ModelMeta({
        "family": "topdown", "arch": "test-dots",
        "input": {"name": "image", "layout": "NCHW", "height": DOTS_IN_H, "width": DOTS_IN_W,
                  "channel_order": "BGR", "mean": [0, 0, 0], "std": [255, 255, 255],
                  "dynamic_hw": False, "dynamic_batch": batch_dynamic},
        "outputs": {"heatmaps": {"name": "heatmaps", "layout": "NCHW"}},
        "stride": DOTS_STRIDE, "heatmap_offset": 0.0, "schema": "coco17",
        "keypoints": COCO17_KEYPOINTS, "skeleton": [list(s) for s in COCO17_SKELETON],
        "flip_pairs": [list(p) for p in COCO17_FLIP_PAIRS], "to_coco17": list(range(17)),
        "crop": {"padding": 1.25},
    })


def build_dots_model(path, batch=None):
    """Write the dots model to ``path`` (``batch``: a fixed batch size, else dynamic); returns
    ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgepose.metadata import embed_onnx

    r = (DOTS_KSIZE - 1) // 2
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / DOTS_SIGMA) ** 2)
    k2 = np.outer(g, g)
    k2 /= k2.sum()
    w = np.zeros((3, 1, DOTS_KSIZE, DOTS_KSIZE), np.float32)
    w[:, 0] = k2
    n = batch if batch else "N"
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["blur"], group=3, strides=[DOTS_STRIDE, DOTS_STRIDE],
                         pads=[r, r, r, r], kernel_shape=[DOTS_KSIZE, DOTS_KSIZE]),
        helper.make_node("Gather", ["blur", "sel"], ["heatmaps"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "dots",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [n, 3, DOTS_IN_H, DOTS_IN_W])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT,
                                       [n, 17, DOTS_IN_H // DOTS_STRIDE, DOTS_IN_W // DOTS_STRIDE])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(DOTS_COLOUR, np.int64), "sel")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    embed_onnx(model, dots_meta(batch is None))
    onnx.save(model, path)
    return path
