"""Q/DQ quantization, exact float rewrites, range setting, and the cpu-int8 accuracy gate."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepose.errors import ExportError
from edgepose.exporters.int8.bias import bias_correction_deltas, float_conv_means
from edgepose.exporters.int8.qdq import quantize_qdq, quantize_with_ranges, uniform_weight_zero_points
from edgepose.exporters.int8.rewrites import concat_plans, equalize_model, fold_diagonal_convs
from edgepose.exporters.int8.stats import QuantStats, _qerr, collect_stats, ranges_from_stats
from edgepose.exporters.int8.units import conv_units, unit_sensitivity, unit_tensors

ASSETS_VIDEO = ("videos", "arm_wrestling.mp4")


def _tiny_model(path, seed=0, outlier=False):
    """conv3x3+relu -> dw3x3 -> pw+relu -> dw1x1 (diagonal) -> pw -> 'heatmaps' (NCHW)."""
    rng = np.random.default_rng(seed)
    inits = []

    def w(name, shape, scale=0.3):
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        inits.append(numpy_helper.from_array(a, name))
        return name

    nodes = [
        helper.make_node("Conv", ["x", w("w0", (8, 3, 3, 3)), w("b0", (8,), 0.1)], ["c0"], name="conv0", pads=[1] * 4),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", w("w1", (8, 1, 3, 3))], ["d1"], name="dw1", group=8, pads=[1] * 4),
        helper.make_node("Conv", ["d1", w("w2", (16, 8, 1, 1)), w("b2", (16,), 0.1)], ["c2"], name="pw2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", w("w3", (16, 1, 1, 1), 1.0)], ["d3"], name="dw3", group=16),
        helper.make_node("Conv", ["d3", w("w4", (4, 16, 1, 1)), w("b4", (4,), 0.1)], ["heatmaps"], name="pw4"),
    ]
    if outlier:   # one channel 1000x larger than the others: per-tensor 8 bits cannot hold both
        a = numpy_helper.to_array(inits[0]).copy()
        a[0] *= 1000.0
        inits[0] = numpy_helper.from_array(a, "w0")
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def _run(path, x, exact=True):
    """Run a model; a Q/DQ model runs exactly as written (graph optimisations off), the device's
    integer arithmetic, never this CPU's int8 kernels (x86 without VNNI saturates 16-bit sums)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if exact:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path if isinstance(path, str) else path.SerializeToString(), so,
                             providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def _inputs(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_model(str(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def test_fold_and_equalize_are_exact(tiny):
    x = _inputs(2, 5)
    m, n = fold_diagonal_convs(tiny)
    assert n == 1 and "dw3" not in {k.name for k in m.graph.node}
    st = collect_stats(m, _inputs(4, 1))
    e1, n1 = equalize_model(m)                                   # data-free (Nagel et al.)
    e2, n2 = equalize_model(m, channel_absmax=st.channel_absmax)  # activation-aware
    assert n1 >= 1 and n2 >= 1
    for xi in x:
        ref = _run(tiny, xi)
        for mm in (m, e1, e2):
            np.testing.assert_allclose(_run(mm, xi), ref, rtol=1e-4, atol=1e-4)
    # activation-aware CLE equalizes the ReLU output feeding the depthwise conv
    st2 = collect_stats(e2, _inputs(4, 1))
    a = st2.channel_absmax["r0"]
    assert a.max() / a.min() < 1.01 < st.channel_absmax["r0"].max() / st.channel_absmax["r0"].min()


def test_symmetric_qdq_structure(tiny, tmp_path):
    out = str(tmp_path / "q.onnx")
    info = quantize_qdq(tiny, out, _inputs(8, 1), symmetric_activations=True)
    assert info["activation_type"] == "int8" and "r0" in info["ranges"]
    lo, hi = info["ranges"]["x"]
    assert lo == -hi                                     # symmetric range
    m = onnx.load(out)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    q_nodes = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    dq_nodes = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    assert q_nodes and dq_nodes
    for n in q_nodes + dq_nodes:
        if len(n.input) > 2 and n.input[2] in inits:
            zp = inits[n.input[2]]
            assert np.all(zp == 0), n.name                   # symmetric: zero points 0
            assert zp.dtype in (np.int8, np.int32), (n.name, zp.dtype)
    # weights: per-channel int8 (one scale per output channel, axis 0)
    w_dq = [n for n in dq_nodes if n.input[0] in inits and inits[n.input[0]].dtype == np.int8]
    assert len(w_dq) == 4                                # 4 convs left after folding dw3
    for n in w_dq:
        scale = inits[n.input[1]]
        assert scale.ndim == 1 and scale.shape[0] == inits[n.input[0]].shape[0]
    # the output conv writes float: no Q/DQ between it and 'heatmaps'
    prod = {o: n for n in m.graph.node for o in n.output}
    assert prod["heatmaps"].op_type == "Conv"


@pytest.mark.parametrize("sym", [False, True])
def test_quantized_output_agrees_with_float(tiny, tmp_path, sym):
    out = str(tmp_path / ("q%d.onnx" % sym))
    quantize_qdq(tiny, out, _inputs(16, 1), symmetric_activations=sym)
    for xi in _inputs(3, 7):      # held-out inputs
        # stated tolerance: relative L2 error under 3% on this 4-layer model
        assert _rel(_run(tiny, xi), _run(out, xi)) < 0.03


def test_range_methods_on_heavy_tail():
    rng = np.random.default_rng(0)
    v = np.concatenate([np.zeros(10 ** 6), rng.exponential(1.0, 10 ** 6), [200.0]])   # sparse ReLU-like
    lo, hi = 0.0, float(v.max())
    counts, _ = np.histogram(v, bins=2048, range=(lo, hi))
    st = QuantStats({"t": (lo, hi)}, {"t": (counts, lo, hi)})
    r_mm = ranges_from_stats(st, "minmax")["t"]
    r_pc = ranges_from_stats(st, "percentile", percentile=99.9)["t"]
    r_mse = ranges_from_stats(st, "mse")["t"]
    assert r_mm == (0.0, 200.0)
    assert r_pc[0] == 0.0 and 5.0 < r_pc[1] < 12.0           # exp(1) 99.9th pct ~ 6.9 of the data
    assert r_mse[0] == 0.0 and r_mse[1] < r_mm[1]            # the lone outlier is clipped
    centers = (np.arange(2048) + 0.5) * hi / 2048
    err = _qerr(centers, counts.astype(float), np.zeros(3), np.array([r_mm[1], r_pc[1], r_mse[1]]), 256)
    assert err[2] <= err[0] and err[2] <= err[1]             # MSE-optimal clipping is optimal


def test_ort_calibrator_memory_is_bounded(tiny, tmp_path):
    with pytest.raises(ExportError, match="calibrator would hold"):
        quantize_qdq(tiny, str(tmp_path / "e.onnx"), _inputs(4, 1), method="ort-entropy",
                       max_memory_mb=1e-6)
    assert not os.path.exists(str(tmp_path / "e.onnx"))


def test_bad_quantization_input(tiny, tmp_path):
    with pytest.raises(ExportError, match="calibration inputs"):
        quantize_qdq(tiny, str(tmp_path / "a.onnx"), [])
    with pytest.raises(ExportError, match="unknown calibration method"):
        quantize_qdq(tiny, str(tmp_path / "a.onnx"), _inputs(2, 1), method="magic")
    with pytest.raises(ExportError, match="NaN"):
        quantize_qdq(tiny, str(tmp_path / "a.onnx"), [np.full((1, 3, 16, 16), np.nan, np.float32)])
    with pytest.raises(ExportError, match="keep_float names unknown"):
        quantize_with_ranges(onnx.load(tiny), str(tmp_path / "a.onnx"), {}, keep_float=["nope"])


def test_sensitivity_finds_the_outlier_layer(tmp_path):
    p = _tiny_model(str(tmp_path / "o.onnx"), outlier=True)
    m, _ = fold_diagonal_convs(p)
    st = collect_stats(m, _inputs(8, 1))
    units = conv_units(m)
    # one unit per conv input tensor: its producer conv (through a Relu) and its consumers
    assert units == [["conv0"], ["conv0", "dw1"], ["dw1", "pw2"], ["pw2", "pw4"]]
    assert unit_tensors(m) == ["x", "r0", "d1", "r2"]
    sens = unit_sensitivity(m, units, ranges_from_stats(st), _inputs(2, 3))
    # the tensor that holds the 1000x channel (relu0's output, r0) is the most sensitive
    assert units[int(np.argmax(sens))] == ["conv0", "dw1"]


# ---------------------------------------------------------------------------------------------
# the real model: the gate fails the naive configuration ("INT8 finds nobody") and leaves nothing
# ---------------------------------------------------------------------------------------------
def _video(assets):
    return os.path.join(assets, *ASSETS_VIDEO)


def test_gate_fails_destroyed_tfpose_and_leaves_nothing(tfpose_model, assets, tmp_path):
    from edgepose.exporters.ort_int8 import export_cpu_int8

    out = tmp_path / "out"
    # what the issue measured: plain static INT8 of every layer, Concat included
    with pytest.raises(ExportError, match="accuracy gate failed: label-free AP drop"):
        export_cpu_int8(tfpose_model, str(out / "m.int8.onnx"), calib=_video(assets), n_calib=4,
                        holdout=2, search=False, fold=False, equalize=False,
                        quiet=True, measure_speed=False)
    assert not out.exists() or os.listdir(str(out)) == []


def test_gate_passes_and_writes_artifact_and_report(tfpose_model, assets, tmp_path):
    from edgepose.exporters.ort_int8 import export_cpu_int8
    from edgepose.metadata import read_onnx_meta
    from edgepose.pipelines import load_estimator

    convs = [n.name for n in onnx.load(tfpose_model).graph.node if n.op_type == "Conv"]
    out = str(tmp_path / "m.int8.onnx")
    rep = export_cpu_int8(tfpose_model, out, calib=_video(assets), n_calib=4, holdout=2,
                          keep_float=convs, quiet=True, measure_speed=False)
    acc = rep["accuracy"]
    assert acc["passed"] and acc["holdout_frames"] == 2
    assert acc["label_free_drop"] <= acc["max_label_free_drop"] and acc["int8_mac_fraction"] == 0.0
    assert acc["evaluation"].startswith("exact Q/DQ") and acc["host"]["kernels"]["name"]
    assert not acc["resolves_budget"] and "cannot resolve" in acc["resolution_note"]
    assert os.path.exists(out) and os.path.exists(rep["report_json"])
    with open(rep["report_json"]) as f:
        saved = json.load(f)
    assert saved["accuracy"]["label_free_drop"] == pytest.approx(acc["label_free_drop"])
    png = rep["report_png"]
    assert png.endswith(".report.png") and saved["accuracy"]["comparison_png"] == os.path.basename(png)
    import cv2
    pic = cv2.imread(png)
    assert pic is not None and pic.shape[0] >= 2 * 300 and pic.shape[1] >= 2 * 420   # 2 frames, 2 cells
    for f in (out, rep["report_json"], png):         # not mkstemp's 0600
        assert oct(os.stat(f).st_mode & 0o777) == oct(0o666 & ~_umask()), f
    meta = read_onnx_meta(out)
    assert meta.get("precision") == "int8"
    assert meta.get("quantization")["calibration_sha256"] == rep["calibration"]["source_hash"]
    assert len(load_estimator(out, threads=2)(np.zeros((96, 128, 3), np.uint8))) == 0


@pytest.mark.skipif(not os.environ.get("EDGEPOSE_SLOW"), reason="slow (minutes): set EDGEPOSE_SLOW=1, "
                    "or run benchmarks/int8_frontier.py")
def test_tfpose_cpu_int8_search_meets_budget_or_says_why(tfpose_model, assets, coco, tmp_path):
    from edgepose.exporters.ort_int8 import export_cpu_int8

    out = tmp_path / "m.int8.onnx"
    rep = export_cpu_int8(tfpose_model, str(out), calib=_video(assets), n_calib=16, holdout=8,
                          coco=coco[0], images_dir=coco[1], quiet=True)
    acc = rep["accuracy"]
    assert acc["passed"] and acc["ap_drop"] <= 1.0
    # measured today: only a mostly-float configuration meets 1 AP point; it ships with a warning
    # that names the frontier
    if acc["float_mac_fraction"] >= 0.9:
        assert "frontier tried" in acc["warning"] and len(acc["search"]) > 3


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_sequential_bias_correction_removes_mean_output_error(tmp_path):
    """Sequential empirical bias correction (quantize_qdq(bias_correction=True)): the per-channel
    mean error of the output shrinks on the calibration inputs and on held-out ones, the
    overall error does not grow, and the correction is self-consistent (measuring it again on
    the corrected model finds almost nothing left)."""
    path = _tiny_model(str(tmp_path / "t.onnx"), seed=3)
    calib, held = _inputs(16, 11), _inputs(16, 12)
    kw = dict(equalize=False, fold=False)          # no rewrites: the raw quantization bias
    q0, q1 = str(tmp_path / "q0.onnx"), str(tmp_path / "q1.onnx")
    i0 = quantize_qdq(path, q0, calib, **kw)
    i1 = quantize_qdq(path, q1, calib, bias_correction=True, **kw)
    assert i0["bias_corrected_convs"] == 0 and i1["bias_corrected_convs"] == 5
    assert i1["ranges"] == i0["ranges"]           # the biases move, the ranges stay

    def errs(q, xs):
        d = np.concatenate([_run(q, x) - _run(path, x) for x in xs])   # (n, C, H, W)
        return np.abs(d.mean(axis=(0, 2, 3))).max(), float(np.sqrt((d ** 2).mean()))

    for xs in (calib, held):
        (b0, r0), (b1, r1) = errs(q0, xs), errs(q1, xs)
        assert b1 < 0.5 * b0, (b0, b1)
        assert r1 <= r0 * 1.01, (r0, r1)
    fm = float_conv_means(path, calib)
    again = bias_correction_deltas(q1, fm, calib)
    first = bias_correction_deltas(q0, fm, calib)
    assert max(np.abs(v).max() for v in again.values()) < 0.05 * max(np.abs(v).max() for v in first.values())


# ---------------------------------------------------------------------------------------------
# exact evaluation, the host's kernel class, concat-aware equalization
# ---------------------------------------------------------------------------------------------
def _one_conv_qdq(rng, C=32, K=16, act="uint8"):
    """x -> Q/DQ (act) -> Conv (per-channel int8 weights) -> Q/DQ (uint8) -> out."""
    adt = np.uint8 if act == "uint8" else np.int8
    sx, zx = 0.02, (0 if act == "int8" else 10)
    wq = rng.integers(-127, 128, (K, C, 3, 3)).astype(np.int8)
    sw = rng.uniform(0.5, 2.0, K).astype(np.float32) / 127.0
    b = rng.normal(0, 0.5, K).astype(np.float32)
    sy, zy = 0.05, 128
    inits = [numpy_helper.from_array(np.array(sx, np.float32), "sx"),
             numpy_helper.from_array(np.array(zx, adt), "zx"),
             numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(sw, "sw"),
             numpy_helper.from_array(np.zeros(K, np.int8), "zw"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array(sy, np.float32), "sy"),
             numpy_helper.from_array(np.array(zy, np.uint8), "zy")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "sy", "zy"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["out"])]
    g = helper.make_graph(nodes, "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 12, 12])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, K, 12, 12])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m, dict(sx=sx, zx=zx, wq=wq, sw=sw, b=b, sy=sy, zy=zy, qmin=np.iinfo(adt).min, qmax=np.iinfo(adt).max)


@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_exact_evaluation_is_the_integer_arithmetic(act):
    """edgepose's exact Q/DQ evaluation (onnxruntime, graph optimisations off) against a numpy
    int64 reference of the integer convolution: the same requantized integers (a float32-rounding
    tie may flip one level, in a negligible share). Large activations times large weights: where
    a CPU's int8 kernels saturate 16-bit sums this graph is wrong there, and right here."""
    rng = np.random.default_rng(0)
    m, p = _one_conv_qdq(rng, act=act)
    x = rng.uniform(-1, 6, (1, 32, 12, 12)).astype(np.float32)
    got = _run(m, x, exact=True)
    xq = np.clip(np.rint(x / p["sx"]) + p["zx"], p["qmin"], p["qmax"]).astype(np.int64) - p["zx"]
    xp = np.pad(xq, ((0, 0), (0, 0), (1, 1), (1, 1)))
    acc = np.zeros((1, 16, 12, 12), np.int64)
    for kh in range(3):
        for kw in range(3):
            acc += np.einsum("nchw,kc->nkhw", xp[:, :, kh:kh + 12, kw:kw + 12], p["wq"][:, :, kh, kw].astype(np.int64))
    y = acc * (p["sx"] * p["sw"].astype(np.float64)).reshape(1, -1, 1, 1) + p["b"].reshape(1, -1, 1, 1)
    ref = (np.clip(np.rint(y / p["sy"]) + p["zy"], 0, 255) - p["zy"]) * p["sy"]
    steps = np.abs(got - ref) / p["sy"]
    assert steps.max() <= 1.0 + 1e-4
    assert np.mean(steps > 0.5) < 1e-3


def test_int8_kernel_class_and_format_choice(monkeypatch):
    from edgepose.exporters.int8 import kernels as ck
    for forced, sat, fmt in (("saturating", True, "u8u8"), ("exact", False, "u8s8")):
        monkeypatch.setenv("EDGEPOSE_INT8_KERNELS", forced)
        ck.int8_kernel_class.cache_clear()
        k = ck.int8_kernel_class()
        assert k["saturates_u8s8"] is sat and k["source"].startswith("EDGEPOSE_INT8_KERNELS")
        f = ck.cpu_int8_format()
        assert f["format"] == fmt and f["weight_type"] == ("uint8" if sat else "int8")
        assert ck.cpu_int8_format("u8s7")["reduce_range"] is True
    with pytest.raises(ExportError, match="unknown cpu-int8 format"):
        ck.cpu_int8_format("u4s4")
    monkeypatch.delenv("EDGEPOSE_INT8_KERNELS")
    ck.int8_kernel_class.cache_clear()
    k = ck.int8_kernel_class()
    # whatever this CPU is, its name follows from the flags and the probe gives a verdict
    assert k["name"] and isinstance(k["saturates_u8s8"], bool)
    if "vnni" in k["name"] or k["name"].startswith("arm64"):
        assert not k["saturates_u8s8"]


def test_u8s7_and_u8u8_graphs_keep_accuracy_exactly(tiny, tmp_path):
    """The two non-saturating cpu-int8 formats (7-bit weights; uint8 weights with zero point 128)
    as graphs: exactly evaluated, both close to float on held-out inputs."""
    for name, kw in (("u8s7", dict(reduce_range=True)), ("u8u8", dict(weight_type="uint8"))):
        out = str(tmp_path / ("%s.onnx" % name))
        quantize_qdq(tiny, out, _inputs(16, 1), **kw)
        m = onnx.load(out)
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        w = [inits[n.input[0]] for n in m.graph.node if n.op_type == "DequantizeLinear"
             and n.input[0] in inits and inits[n.input[0]].ndim == 4]
        if name == "u8s7":
            assert all(a.dtype == np.int8 and np.abs(a.astype(int)).max() <= 64 for a in w)
        else:
            assert all(a.dtype == np.uint8 for a in w)
        for xi in _inputs(3, 7):
            assert _rel(_run(tiny, xi), _run(out, xi)) < 0.05


def _concat_model(path):
    """features (range ~40, also feeding the head) ++ a 0-1 head -> depthwise -> pointwise."""
    rng = np.random.default_rng(4)
    inits = []

    def w(name, shape, scale):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    nodes = [
        helper.make_node("Conv", ["x", w("wf", (16, 3, 3, 3), 4.0), w("bf", (16,), 1.0)], ["f0"], name="feat", pads=[1] * 4),
        helper.make_node("Relu", ["f0"], ["f"], name="feat_relu"),
        helper.make_node("Conv", ["f", w("wh", (4, 16, 1, 1), 0.01), w("bh", (4,), 0.1)], ["h0"], name="head"),
        helper.make_node("Sigmoid", ["h0"], ["h1"], name="sig"),
        helper.make_node("Conv", ["h1", w("wh2", (4, 4, 1, 1), 0.3), w("bh2", (4,), 0.1)], ["h"], name="head2"),
        helper.make_node("Concat", ["f", "h"], ["cat"], name="concat", axis=1),
        helper.make_node("Conv", ["cat", w("wd", (20, 1, 3, 3), 0.3)], ["d"], name="dw", group=20, pads=[1] * 4),
        helper.make_node("Conv", ["d", w("wp", (4, 20, 1, 1), 1.0), w("bp", (4,), 0.1)], ["heatmaps"], name="pw"),
    ]
    wp = numpy_helper.to_array(inits[-2]).copy()
    wp[:, :16] *= 0.003          # the output reads mostly the head's channels, as a next stage does
    inits[-2] = numpy_helper.from_array(wp, "wp")
    g = helper.make_graph(nodes, "cat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_concat_aware_equalization_is_exact_and_unshares_the_scale(tmp_path):
    p = _concat_model(str(tmp_path / "cat.onnx"))
    calib, held = _inputs(16, 1), _inputs(4, 9)
    plans = concat_plans(onnx.load(p))
    assert len(plans) == 1
    assert [i["producer"] is not None for i in plans[0]["inputs"]] == [False, True]  # features shared
    st = collect_stats(p, calib)
    m, n = equalize_model(onnx.load(p), channel_absmax=st.channel_absmax, concats=True)
    for x in held:
        np.testing.assert_allclose(_run(m, x, exact=False), _run(p, x, exact=False), rtol=1e-4, atol=1e-4)
    a0 = st.channel_absmax["cat"]
    a1 = collect_stats(m, calib).channel_absmax["cat"]
    assert a0[16:].max() < 0.1 * a0[:16].max()              # the head's channels get few levels
    np.testing.assert_allclose(a1[16:], a1[:16].max(), rtol=1e-3)   # now they use the full range
    np.testing.assert_allclose(a1[:16], a0[:16], rtol=1e-5)         # the shared features unchanged
    errs = {}
    for ec in (False, True):
        out = str(tmp_path / ("q%d.onnx" % ec))
        quantize_qdq(p, out, calib, equalize_concat=ec, symmetric_activations=True)
        errs[ec] = np.mean([_rel(_run(p, x, exact=False), _run(out, x)) for x in held])
    assert errs[True] < 0.2 * errs[False], errs        # measured: 0.24 -> 0.006


def test_dead_channel_gets_its_siblings_zero_point(tiny, tmp_path):
    """U8U8: onnxruntime's quantizer gives an all-zero output channel zero point 0 beside its
    siblings' 128, which onnxruntime < 1.20 refuses once it fuses QLinearConv. The written model
    has one zero point per weight tensor and dequantizes to the same weights."""
    m = onnx.load(tiny)
    for i in m.graph.initializer:
        if i.name == "w2":
            a = numpy_helper.to_array(i).copy()
            a[3] = 0.0
            i.CopyFrom(numpy_helper.from_array(a, "w2"))
    src = str(tmp_path / "dead.onnx")
    onnx.save(m, src)
    out = str(tmp_path / "dead_u8u8.onnx")
    info = quantize_qdq(src, out, _inputs(8, 1), weight_type="uint8", fold=False, equalize=False)
    assert info["dead_channel_zero_points_fixed"] == 1
    q = onnx.load(out)
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "w2_quantized"][0]
    zp, w = inits[dq.input[2]], inits[dq.input[0]]
    assert np.unique(zp).tolist() == [128] and np.all(w[3] == 128)
    deq = (w.astype(np.int64) - zp.reshape(-1, 1, 1, 1)) * inits[dq.input[1]].reshape(-1, 1, 1, 1)
    assert np.all(deq[3] == 0)
    # a live channel with its own zero point cannot be rewritten exactly: refused
    zp_bad = zp.copy()
    zp_bad[0] = 0
    for i in q.graph.initializer:
        if i.name == dq.input[2]:
            i.CopyFrom(numpy_helper.from_array(zp_bad, dq.input[2]))
    with pytest.raises(ExportError, match="its own zero point"):
        uniform_weight_zero_points(q)


@pytest.fixture(scope="module")
def tiny_bottomup(tmp_path_factory):
    """A tiny bottom-up model with edgepose metadata and a folder of 12 calibration images."""
    import cv2
    from tiny_models import tiny_bottomup as _tiny_bottomup
    d = tmp_path_factory.mktemp("tiny_bu")
    _tiny_bottomup(str(d / "tiny.onnx"))
    (d / "calib").mkdir()
    rng = np.random.default_rng(3)
    for i in range(12):
        img = cv2.GaussianBlur(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), (7, 7), 2)
        cv2.circle(img, (40, 24), 10 + i, (255, 200, 50), -1)
        cv2.imwrite(str(d / "calib" / ("%02d.png" % i)), img)
    return d


def test_cpu_int8_measures_speed_and_says_what_int8_buys(tiny_bottomup, tmp_path, capsys):
    """Every cpu-int8 export times INT8 against FP32 on this CPU (CPU and wall time, 1 and all
    threads) and its last line names the kernel class; PASSED is never printed alone when the
    speed-up is below 1.2x or the held-out set cannot resolve the budget; --min-speedup fails in
    one line with nothing written."""
    from edgepose.cli import main
    from edgepose.exporters.int8.gate import final_line
    from edgepose.exporters.int8.report import format_report
    src, calib = str(tiny_bottomup / "tiny.onnx"), str(tiny_bottomup / "calib")
    out = str(tmp_path / "a" / "t.int8.onnx")
    rc = main(["export", src, "--target", "cpu-int8", "--calib", calib, "--n-calib", "4",
               "--max-label-free-drop", "100", "-o", out])
    printed = capsys.readouterr()
    lines = printed.out.strip().splitlines()
    assert rc == 0 and lines[-2].startswith("wrote %s (+ " % out) and sum(l.startswith("wrote") for l in lines) == 1
    rep = json.load(open(out[:-5] + ".report.json"))["accuracy"]
    hs = rep["host_speed"]
    assert [r["threads"] for r in hs["per_threads"]] == sorted({1, os.cpu_count()})
    assert all(r["float_cpu_ms"] > 0 and r["int8_cpu_ms"] > 0 and r["float_ms"] > 0 for r in hs["per_threads"])
    assert hs["speedup"] == hs["per_threads"][0]["cpu_speedup"]
    assert lines[-1].startswith("INT8 on this CPU (%s" % hs["kernels"]["name"])
    # 8 held-out frames cannot resolve a budget: the last line says so, and how many would
    assert "UNRESOLVED" in lines[-1] and "about %d would" % rep["frames_to_resolve"] in lines[-1]
    assert "-> PASSED" not in printed.err
    # a resolved pass with no speed-up: PASSED is qualified
    r2 = dict(rep, resolves_budget=True, host_speed=dict(hs, speedup=0.96))
    gate = [l for l in format_report(r2).splitlines() if l.startswith("gate:")][0]
    assert gate.endswith("PASSED on accuracy; 0.96x FP32 on this CPU: no speed-up here")
    assert "0.96x FP32" in final_line(r2) and "no speed-up here" in final_line(r2)
    r3 = dict(r2, host_speed=dict(hs, speedup=3.1))
    assert format_report(r3).count("-> PASSED\n") == 1 and "no speed-up" not in final_line(r3)
    # --min-speedup: one line, nothing written
    d2 = tmp_path / "b"
    rc = main(["export", src, "--target", "cpu-int8", "--calib", calib, "--n-calib", "4",
               "--max-label-free-drop", "100", "--min-speedup", "1000", "-o", str(d2 / "t.int8.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and "below --min-speedup 1000" in err[-1] and "nothing written" in err[-1]
    assert not d2.exists() or os.listdir(str(d2)) == []


def test_gate_screens_on_a_subset_and_decides_on_every_frame(tiny_bottomup, tmp_path):
    """With more held-out frames than the trial subset, a configuration is scored on the subset
    first and the verdict the report gives is the one on every held-out frame."""
    import cv2

    from edgepose.exporters.api import export
    from edgepose.exporters.int8.search import TRIAL_FRAMES
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(5)
    for i in range(TRIAL_FRAMES + 12):
        img = cv2.GaussianBlur(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), (7, 7), 2)
        cv2.circle(img, (20 + i, 24), 8 + i % 5, (255, 200, 50), -1)
        cv2.imwrite(str(calib / ("%02d.png" % i)), img)
    logs = []
    rep = export(str(tiny_bottomup / "tiny.onnx"), target="cpu-int8", out=str(tmp_path / "t.int8.onnx"),
                 calib=str(calib), n_calib=4, max_label_free_drop=100.0, progress=False, log=logs.append)
    a = rep["accuracy"]
    n = TRIAL_FRAMES + 12 - 4
    assert a["holdout_frames"] == n and "scored_on" not in a        # the verdict: every frame
    assert any("on %d of the %d held-out frames first" % (TRIAL_FRAMES, n) in m for m in logs)


# ---------------------------------------------------------------------------------------------
# the mixed-precision search: bisection, and the frames that rank the units
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, answer, gran", [(113, 24, 7), (113, 1, 7), (113, 113, 7), (10, 3, 1), (113, 60, 1)])
def test_bisection_finds_the_smallest_passing_count_to_its_granularity(n, answer, gran):
    from edgepose.exporters.int8.search import bisect_units

    tried = []

    def trial(k, lo, hi):
        assert lo < k <= hi <= n
        tried.append(k)
        return {"k": k}, {"passed": k >= answer}

    k, (info, rep) = bisect_units(n, gran, 0, trial)
    assert rep["passed"] and info["k"] == k and answer <= k < answer + gran + 1
    assert len(tried) <= int(np.ceil(np.log2(n / gran))) + 1
    # nothing passes short of every unit in float: that one is tried last; a float model that
    # fails too (a broken gate) gives None
    assert bisect_units(n, gran, 0, lambda k, lo, hi: ({}, {"passed": k >= n}))[0] == n
    assert bisect_units(n, gran, 0, lambda k, lo, hi: ({}, {"passed": False})) is None
    # a count already known to pass bounds the bisection: nothing at or above it is tried again,
    # and it is the answer when nothing smaller passes
    top = min(n, answer + 2 * gran)
    tried.clear()
    k, (info, rep) = bisect_units(n, gran, 0, trial, top=(top, ({"k": top}, {"passed": True})))
    assert all(t < top for t in tried) and info["k"] == k and answer <= k <= top
    assert k < answer + gran + 1 or k == top
    tried.clear()
    assert bisect_units(n, gran, 0, trial, top=(answer, ({"k": answer}, {"passed": True})))[0] == answer
    assert len(tried) <= max(0, int(np.ceil(np.log2(answer / gran)))) + 1


@pytest.mark.parametrize("t_sub, t_all, want", [
    # (units in float the 32-frame subset passes from, all frames pass from): the trials, in order
    (1, 1, [(0, "sub"), (2, "sub"), (1, "sub"), (1, "all")]),
    # the subset is optimistic at 1: its next pass (2) is confirmed and is the answer, without
    # bisecting up to every unit
    (1, 2, [(0, "sub"), (2, "sub"), (1, "sub"), (1, "all"), (2, "all")]),
    # ... and when that fails too, the bisection goes on with every frame above it
    (1, 4, [(0, "sub"), (2, "sub"), (1, "sub"), (1, "all"), (2, "all"), (3, "all"), (4, "all")]),
])
def test_search_confirms_its_choice_on_every_frame_and_goes_on_from_the_next_pass(
        tiny_bottomup, tmp_path, monkeypatch, t_sub, t_all, want):
    """gated_quantize's control flow on scripted verdicts: full INT8 and the bisection on the
    subset, the choice confirmed on every held-out frame, and where that fails, the next count
    that passed on the subset confirmed before any further bisection."""
    import cv2

    from edgepose.calibration.samples import load_samples
    from edgepose.exporters.int8 import search
    from edgepose.metadata import read_onnx_meta

    src = str(tiny_bottomup / "tiny.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(5)
    for i in range(search.TRIAL_FRAMES + 12):
        cv2.imwrite(str(calib / ("%02d.png" % i)),
                    cv2.GaussianBlur(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), (7, 7), 2))
    meta = read_onnx_meta(src)
    cs = load_samples(str(calib), meta, n=4, holdout="auto")
    n_all = len(cs.holdout_images)
    assert n_all > search.TRIAL_FRAMES
    # units ranked in model order: c1 | c1 c2 | c2 c3 | c3 c4 | c4 hm paf, so the k most
    # sensitive units keep k convs in float (k <= 4)
    monkeypatch.setattr(search, "unit_sensitivity", lambda model, units, *a, **k: [-float(i) for i in range(len(units))])
    kept, trials = [], []
    real = search.quantize_qdq
    monkeypatch.setattr(search, "quantize_qdq", lambda *a, **kw: (kept.append(len(kw["keep_float"])), real(*a, **kw))[1])

    def scripted(ref, out, frames, meta, **kw):
        on = "all" if len(frames.holdout_images) == n_all else "sub"
        ok = kept[-1] >= (t_all if on == "all" else t_sub)
        trials.append((kept[-1], on))
        return {"passed": ok, "label_free_drop": 5.0 if ok else 20.0, "oks_agreement": 0.9,
                "label_free_drop_ci95": [2.0, 8.0] if ok else [15.0, 25.0],   # a miss never undecided
                "max_label_free_drop": 10.0, "holdout_frames": len(frames.holdout_images)}
    monkeypatch.setattr(search, "accuracy_report", scripted)
    out = str(tmp_path / "t.int8.onnx")
    info, rep = search.gated_quantize(src, out, cs, meta, quantize_kwargs={}, measure_speed=False)
    assert trials == want
    assert rep["passed"] and len(rep["keep_float"]) == t_all and os.path.exists(out)
    assert kept[-1] == t_all                     # the chosen configuration is the one on disk


def test_search_time_left_counts_the_steps_to_go_and_the_rescored_misses():
    from edgepose.exporters.int8.search import _search_time_left

    # k=16 passed in (0, 32]: (0, 16) still needs 3 halvings to be 2 units wide; confirming on
    # all frames costs 4 subset trials of 10 s
    assert _search_time_left([10.0, 10.0], 0, 32, 16, True, 2, 4.0) == "about 70 s left"
    # one of the two steps so far was an undecided miss rescored on every frame (20 s): a step
    # is expected to take 10 + 20 / 2 s; the confirmation is a plain subset multiple
    assert _search_time_left([10.0, 10.0], 0, 32, 16, True, 2, 4.0, [20.0]) == "about 100 s left"
    assert _search_time_left([], 0, 32, 16, True, 2, 4.0) == "time left unknown"


def test_sensitivity_inputs_match_the_model_layout_and_halve_dynamic_sizes(tmp_path):
    from edgepose.exporters.int8.units import sensitivity_inputs

    def model(dims):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        return helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))

    rng = np.random.default_rng(0)
    nhwc = rng.random((1, 36, 52, 3), dtype=np.float32)
    # dynamic NCHW model, NHWC frame: transposed, then 2x2 means cropped to the stride (8)
    (a,) = sensitivity_inputs(model([1, 3, "h", "w"]), [nhwc], stride=8)
    assert a.shape == (1, 3, 16, 24)
    ref = nhwc[0, :32, :48].reshape(16, 2, 24, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1)
    np.testing.assert_allclose(a[0], ref, rtol=1e-6)
    # a static model keeps its size (only the layout changes)
    (b,) = sensitivity_inputs(model([1, 3, 36, 52]), [nhwc], stride=8)
    np.testing.assert_array_equal(b, nhwc.transpose(0, 3, 1, 2))
    (c,) = sensitivity_inputs(model([1, "h", "w", 3]), [nhwc], stride=4)
    assert c.shape == (1, 16, 24, 3)
