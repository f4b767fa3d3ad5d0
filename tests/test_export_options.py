"""ExportOptions: one typed options object for every export target, checked in one place."""
import dataclasses
import os

import pytest

from edgepose.errors import ExportError
from edgepose.exporters.int8.options import TARGET_OPTIONS, ExportOptions


def test_every_target_takes_known_options_and_every_option_has_a_target():
    from edgepose.exporters.api import TARGETS

    fields = {f.name for f in dataclasses.fields(ExportOptions)} - {"target"}
    assert set(TARGET_OPTIONS) == set(TARGETS) - {"tflite"}      # tflite: a foreign .tflite, no options
    assert set().union(*TARGET_OPTIONS.values()) == fields
    assert TARGET_OPTIONS["onnx"] == frozenset()
    assert {"min_speedup", "format", "quiet"} <= TARGET_OPTIONS["cpu-int8"] - TARGET_OPTIONS["jetson-int8"]
    assert {"workspace_mb", "dla_core", "float_outputs"} <= TARGET_OPTIONS["jetson-int8"] - TARGET_OPTIONS["cpu-int8"]


def test_unknown_and_inapplicable_options_are_refused_in_one_line_naming_the_options():
    with pytest.raises(ExportError, match=r"^target cpu-int8: unknown option\(s\) equalise \(options: .*equalize") as e:
        ExportOptions.for_target("cpu-int8", equalise=True)
    assert "\n" not in str(e.value)
    with pytest.raises(ExportError, match=r"option\(s\) min_speedup do not apply to target jetson-int8 "
                                          r"\(options: .*workspace_mb"):
        ExportOptions.for_target("jetson-int8", min_speedup=2.0)
    with pytest.raises(ExportError, match=r"option\(s\) n_calib do not apply to target onnx \(options: none\)"):
        ExportOptions.for_target("onnx", n_calib=8)
    with pytest.raises(ExportError, match="unknown target 'tpu-int8'"):
        ExportOptions.for_target("tpu-int8")


@pytest.mark.parametrize("target,kwargs,words", [
    ("cpu-int8", {"min_speedup": 0}, "min_speedup must be > 0, got 0"),
    ("cpu-int8", {"min_speedup": "fast"}, "min_speedup must be a number, got 'fast'"),
    ("cpu-int8", {"format": "u4s4"}, "unknown cpu-int8 format 'u4s4' (choose from auto, u8s8"),
    ("cpu-int8", {"holdout": "some"}, "holdout must be a count or 'auto', got 'some'"),
    ("rpi-int8", {"calib_holdout": -1}, "calib_holdout must be >= 0, got -1"),
    ("jetson-int8", {"method": "magic"}, "unknown calibration method 'magic'"),
    ("jetson-int8", {"workspace_mb": 0}, "workspace_mb must be positive, got 0"),
    ("jetson-int8-dla", {"dla_core": -1}, "dla_core must be >= 0, got -1"),
    ("jetson-int8", {"aspect_range": (1.0,)}, "aspect_range must be a pair"),
    ("rpi-int8", {"activation_bits": 4}, "activation_bits must be 8 or 16, got 4"),
    ("cpu-int8", {"equalize": "weight"}, "equalize must be 'activations', 'weights'"),
    ("cpu-int8", {"log": "stderr"}, "log must be a callable"),
])
def test_bad_values_are_refused_once(target, kwargs, words):
    with pytest.raises(ExportError) as e:
        ExportOptions.for_target(target, **kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_every_numeric_option_is_checked_by_its_annotation():
    """The value kinds come from the field annotations, so a new int/float/pair option is checked
    without being listed again: every one of them refuses a word, naming itself."""
    hints = {f.name: f.type for f in dataclasses.fields(ExportOptions)}
    numeric = [k for k, t in hints.items() if t.replace("Optional[", "").rstrip("]") in ("int", "float")]
    pairs = [k for k, t in hints.items() if "Tuple[int, int]" in t or "Tuple[float, float]" in t]
    assert {"n_calib", "workspace_mb", "percentile", "min_speedup"} <= set(numeric)
    assert set(pairs) == {"aspect_range", "height_range", "opt_hw"}
    for name in numeric + pairs:
        target = next(t for t, takes in TARGET_OPTIONS.items() if name in takes)
        bad = ("x", "y") if name in pairs else "x"
        with pytest.raises(ExportError, match="^%s must be a number, got 'x'$" % name):
            ExportOptions.for_target(target, **{name: bad})


def test_values_are_normalised():
    o = ExportOptions.for_target("cpu-int8", n_calib="8", max_ap_drop=None, method="MSE", format="auto",
                                 keep_float="conv1", holdout=None, min_speedup="1.5")
    assert (o.target, o.n_calib, o.max_ap_drop, o.method, o.format) == ("cpu-int8", 8, 1.0, "mse", None)
    assert (o.keep_float, o.holdout, o.min_speedup) == (("conv1",), "auto", 1.5)
    assert o.given() == {"n_calib": 8, "method": "mse", "keep_float": ("conv1",), "min_speedup": 1.5}
    assert o.pick(("reduce_range", "per_channel", "n_calib")) == {"per_channel": True, "n_calib": 8}
    t = ExportOptions.for_target("rpi-int8", calib_holdout=5)       # TFLite's older name of holdout
    assert t.holdout == 5 and ExportOptions.for_target("rpi-int8", calib_holdout=5, holdout=3).holdout == 3
    j = ExportOptions.for_target("jetson-fp16", aspect_range=[1, 2], opt_hw=[256.0, 320.0])
    assert j.aspect_range == (1.0, 2.0) and j.opt_hw == (256, 320)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.n_calib = 4


def test_target_functions_take_options_or_keywords_checked_the_same_way(tmp_path):
    """A target function takes options= (made for its target) or keyword options, checked by the
    same constructor; options made for another target are checked again for this one."""
    from edgepose.exporters.ort_int8 import export_cpu_int8
    from edgepose.exporters.tensorrt import export_jetson_bundle
    from edgepose.exporters.tflite import export_tflite

    missing = str(tmp_path / "missing.onnx")
    with pytest.raises(ExportError, match=r"target cpu-int8: unknown option\(s\) equalise"):
        export_cpu_int8(missing, str(tmp_path / "o.onnx"), calib=str(tmp_path), equalise=True)
    with pytest.raises(ExportError, match=r"min_speedup do not apply to target jetson-fp16"):
        export_jetson_bundle(missing, str(tmp_path / "b"), mode="fp16",
                             options=ExportOptions.for_target("cpu-int8", min_speedup=2.0))
    with pytest.raises(ExportError, match=r"target rpi-int8: unknown option\(s\) methd"):
        export_tflite(missing, str(tmp_path / "o.tflite"), mode="int8", methd="mse")
    with pytest.raises(ExportError, match="options must be an ExportOptions, got dict"):
        export_cpu_int8(missing, str(tmp_path / "o.onnx"), options={"n_calib": 4})
    # good options: the function goes on to its own checks
    with pytest.raises(ExportError, match="FP32 ONNX model not found"):
        export_cpu_int8(missing, str(tmp_path / "o.onnx"), calib=str(tmp_path),
                        options=ExportOptions.for_target("cpu-int8", n_calib=4), quiet=True)
    assert os.listdir(str(tmp_path)) == []


def test_cli_refuses_an_option_the_target_does_not_take_before_any_work(capsys, tmp_path):
    from edgepose.cli import main

    src = tmp_path / "x.pth"
    src.write_bytes(b"not read")
    rc = main(["export", str(src), "--target", "jetson-int8", "--calib", str(tmp_path), "--min-speedup", "2",
               "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "min_speedup do not apply to target jetson-int8" in err
    assert os.listdir(str(tmp_path)) == ["x.pth"]
