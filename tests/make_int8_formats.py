"""Write every cpu-int8 format of a small OpenPose-structured model, for tests/test_int8_load.py.

    python tests/make_int8_formats.py OUTDIR      (in the main environment: needs onnx, onnxruntime)

The model has Lightweight OpenPose's structure at toy size (seconds to build and quantize):
normalisation inside the graph (BGR raw 0-255), a conv stem, depthwise-separable blocks, an
initial stage with heatmap and PAF heads, and a refinement stage reading the Concat of features,
heatmaps and PAFs, with a residual Add; two float outputs. One pointwise conv has a **dead
output channel** (all weights zero, as trained networks have): onnxruntime's quantizer gives such
a channel its own scale and zero point, which with uint8 weights (U8U8) used to make a model that
onnxruntime < 1.20 refuses under graph optimisation.

Each format (:data:`edgepose.exporters.int8.kernels.FORMATS`: u8s8, u8s7, u8u8) is quantized the
way ``cpu-int8`` quantizes (:data:`edgepose.exporters.ort_int8.DEFAULTS`, one calibration set),
and its exact output on a fixed input (Q/DQ as written, graph optimisations off: the integer
arithmetic) is saved as ``FORMAT.OUTPUT.npy``. ``probe.onnx`` is the host kernel-class probe of
:mod:`edgepose.exporters.int8.kernels` with its exact output. ``manifest.json`` lists it all.
"""
import json
import os
import sys

import numpy as np

H, W = 48, 64


def fp32_model(path, seed=0):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = []
    nodes = []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    def conv(name, x, cin, cout, k=1, stride=1, group=1, relu=True, dead=None, bias=True):
        fan_in = cin // group * k * k
        w = (rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        if dead is not None:
            w[dead] = 0.0
        ins = [x, const(name + "_w", w)]
        if bias:
            ins.append(const(name + "_b", rng.normal(0.05, 0.05, cout)))
        nodes.append(helper.make_node("Conv", ins, [name], name=name, kernel_shape=[k, k],
                                      strides=[stride, stride], group=group, pads=[k // 2] * 4))
        if not relu:
            return name
        nodes.append(helper.make_node("Relu", [name], [name + "_relu"], name=name + "_relu"))
        return name + "_relu"

    nodes.append(helper.make_node("Sub", ["data", const("mean", np.full((1, 3, 1, 1), 128.0))], ["centred"], name="sub"))
    nodes.append(helper.make_node("Mul", ["centred", const("scale", np.full((1, 3, 1, 1), 1 / 256.0))], ["norm"],
                                  name="mul"))
    x = conv("stem", "norm", 3, 16, k=3, stride=2)
    x = conv("dw1", x, 16, 16, k=3, group=16)
    x = conv("pw1", x, 16, 32, dead=5)                       # the dead channel
    x = conv("dw2", x, 32, 32, k=3, stride=2, group=32)
    x = conv("pw2", x, 32, 32)
    x = conv("dw3", x, 32, 32, k=3, stride=2, group=32)
    feat = conv("pw3", x, 32, 24)
    s = conv("stage1", feat, 24, 24, k=3)
    hm1 = conv("stage1_heatmaps", s, 24, 5, relu=False)
    paf1 = conv("stage1_pafs", s, 24, 6, relu=False)
    nodes.append(helper.make_node("Concat", [feat, hm1, paf1], ["cat"], name="concat", axis=1))
    r = conv("ref1", "cat", 35, 24)
    r2 = conv("ref2", r, 24, 24, k=3, relu=False)
    nodes.append(helper.make_node("Add", [r, r2], ["res"], name="residual"))
    nodes.append(helper.make_node("Relu", ["res"], ["res_relu"], name="res_relu"))
    conv("heatmaps", "res_relu", 24, 5, relu=False)
    conv("pafs", "res_relu", 24, 6, relu=False)
    hs, ws = H // 8, W // 8
    g = helper.make_graph(nodes, "mini_openpose", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, H, W])],
                          [helper.make_tensor_value_info("pafs", TensorProto.FLOAT, [1, 6, hs, ws]),
                           helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 5, hs, ws])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8      # what onnxruntime 1.10 (Jetson Nano, Python 3.6) reads
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def images(n, seed):
    """Smooth BGR 0-255 images (blobs on a gradient), NCHW float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    out = []
    for _ in range(n):
        img = np.empty((3, H, W), np.float32)
        for c in range(3):
            a = rng.uniform(20, 120) + rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy
            for _ in range(4):
                cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(3, 12)
                a = a + rng.uniform(-120, 120) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            img[c] = a
        out.append(np.clip(img, 0, 255)[None])
    return out


def run(path, x, exact):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if exact
                                   else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    s = ort.InferenceSession(path if isinstance(path, str) else path.SerializeToString(), so,
                             providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, {s.get_inputs()[0].name: x})))


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: python tests/make_int8_formats.py OUTDIR")
    import onnx
    from onnx import numpy_helper

    from edgepose.exporters.int8.kernels import FORMATS, probe_model
    from edgepose.exporters.int8.qdq import prepare_model, quantize_qdq
    from edgepose.exporters.ort_int8 import DEFAULTS

    out = argv[0]
    os.makedirs(out, exist_ok=True)
    fp32 = fp32_model(os.path.join(out, "fp32.onnx"))
    calib, x = images(8, 1), images(1, 99)[0]
    np.save(os.path.join(out, "input.npy"), x)
    prepared = prepare_model(fp32, calib, **{k: DEFAULTS[k] for k in ("fold", "equalize", "equalize_concat")})
    qkw = {k: v for k, v in DEFAULTS.items() if k not in ("fold", "equalize", "equalize_concat")}
    manifest = {"input": "input.npy", "models": [],
                "made_by": "tests/make_int8_formats.py", "onnx": onnx.__version__}
    import onnxruntime
    manifest["onnxruntime"] = onnxruntime.__version__
    for fmt, fkw in FORMATS.items():
        path = os.path.join(out, fmt + ".onnx")
        info = quantize_qdq(fp32, path, calib, prepared=prepared, **dict(qkw, **fkw))
        m = onnx.load(path)
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        dead = 0
        for n in m.graph.node:        # the artifact's contract: one zero point per weight tensor
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4:
                zp = inits[n.input[2]]
                assert np.unique(zp).size == 1, (fmt, n.name, zp)
                w = inits[n.input[0]].astype(np.int64) - zp.astype(np.int64).reshape(-1, 1, 1, 1)
                dead += int(np.sum(~np.any(w.reshape(w.shape[0], -1) != 0, axis=1)))
        assert dead >= 1, "%s: the dead channel disappeared" % fmt
        exp = run(path, x, exact=True)
        files = {}
        for name, arr in exp.items():
            files[name] = "%s.%s.npy" % (fmt, name)
            np.save(os.path.join(out, files[name]), arr)
        manifest["models"].append({"format": fmt, "file": fmt + ".onnx", "expected": files,
                                   "weight_type": fkw["weight_type"], "reduce_range": fkw["reduce_range"],
                                   "dead_channels": dead,
                                   "zero_points_made_uniform": info.get("dead_channel_zero_points_fixed", 0)})
    probe, probe_x = probe_model()
    onnx.save(probe, os.path.join(out, "probe.onnx"))
    np.save(os.path.join(out, "probe_input.npy"), probe_x)
    np.save(os.path.join(out, "probe.expected.npy"), run(probe, probe_x, exact=True)["out"])
    manifest["probe"] = {"file": "probe.onnx", "input": "probe_input.npy", "expected": "probe.expected.npy"}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    print("wrote %d int8 formats (%s) to %s" % (len(FORMATS), ", ".join(FORMATS), out))


if __name__ == "__main__":
    main(sys.argv[1:])
