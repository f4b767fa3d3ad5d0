"""Bad input at the command line: one clear line on stderr, a non-zero exit, nothing half-written."""
import json
import os
import subprocess
import sys

import pytest

from edgepose.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def one_line_error(rc, err, *words):
    assert rc == 2, (rc, err)
    assert len(err.splitlines()) == 1 and err.startswith("edgepose: error:"), err
    for w in words:
        assert w in err, err


def test_missing_model(capsys, tmp_path):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"x")
    rc, err = run(capsys, "infer", str(tmp_path / "missing.onnx"), str(img), "--out", str(tmp_path / "o"))
    one_line_error(rc, err, "not found", "missing.onnx")
    assert not (tmp_path / "o").exists()


def test_text_file_named_onnx(capsys, tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a model\n")
    rc, err = run(capsys, "info", str(fake))
    one_line_error(rc, err, "model.onnx")


def test_onnx_without_metadata_needs_spec(capsys, tfpose_onnx, assets, tmp_path):
    img = os.path.join(assets, "coco", "000000196141.jpg")
    rc, err = run(capsys, "infer", tfpose_onnx, img, "--out", str(tmp_path / "o"))
    one_line_error(rc, err, "no edgepose metadata", "--spec")
    assert not (tmp_path / "o").exists()


def test_unreadable_image(capsys, tfpose_model, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    rc, err = run(capsys, "infer", tfpose_model, str(bad), "--out", str(tmp_path / "o"))
    one_line_error(rc, err, "broken.jpg")
    assert not (tmp_path / "o" / "results.json").exists()


def test_empty_video(capsys, tfpose_model, tmp_path):
    v = tmp_path / "empty.mp4"
    v.write_bytes(b"")
    rc, err = run(capsys, "infer", tfpose_model, str(v), "--out", str(tmp_path / "o"))
    one_line_error(rc, err, "empty")
    assert not (tmp_path / "o").exists() or os.listdir(tmp_path / "o") == []


def test_non_checkpoint_pth(capsys, tmp_path):
    p = tmp_path / "weights.pth"
    p.write_text("hello")
    out = tmp_path / "m.onnx"
    rc, err = run(capsys, "export", str(p), "--arch", "lightweight-openpose", "-o", str(out))
    one_line_error(rc, err)
    assert os.listdir(tmp_path) == ["weights.pth"]


def test_spec_that_does_not_fit(capsys, tfpose_onnx, tmp_path):
    spec = json.load(open(os.path.join(os.path.dirname(__file__), "..", "examples",
                                       "tfpose_mobilenet_thin.spec.json")))
    spec_bad = json.loads(json.dumps(spec).replace('"NHWC"', '"NCHW"'))
    sp = tmp_path / "bad.spec.json"
    sp.write_text(json.dumps(spec_bad))
    out = tmp_path / "m.onnx"
    rc, err = run(capsys, "export", tfpose_onnx, "--spec", str(sp), "-o", str(out))
    one_line_error(rc, err)
    assert sorted(os.listdir(tmp_path)) == ["bad.spec.json"]


def test_console_script_exit_code_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgepose", "info", str(tmp_path / "nope.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "not found" in r.stderr


@pytest.mark.parametrize("argv,words", [
    (["bench", "m.onnx", "--runs", "0"], ["--runs", "must be >= 1"]),
    (["bench", "m.onnx", "--threads", "-2"], ["--threads", "must be >= 1"]),
    (["export", "m.onnx", "-o", "x.onnx", "--n-calib", "0"], ["--n-calib", "must be >= 1"]),
    (["export", "m.onnx", "-o", "x.onnx", "--holdout", "some"], ["--holdout", "'auto'"]),
])
def test_nonsense_counts_are_usage_errors(capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    for w in words:
        assert w in err, err


def test_unknown_target_option_fails_before_work(tmp_path):
    """Every target declares its options: a misspelt one is an error before the FP32 export."""
    from edgepose.errors import ExportError
    from edgepose.exporters.api import export
    src = tmp_path / "x.pth"
    src.write_bytes(b"not read")
    for target, bad in (("cpu-int8", "equalise"), ("rpi-int8", "methd"), ("jetson-int8", "workspace")):
        with pytest.raises(ExportError, match="unknown option.*%s" % bad):
            export(str(src), target=target, out=str(tmp_path / "o"), calib=str(tmp_path), **{bad: 1})
    assert sorted(os.listdir(tmp_path)) == ["x.pth"]


def test_decode_defaults_come_from_one_table():
    import inspect
    from edgepose import decode
    from edgepose.metadata import DECODE_DEFAULTS
    bu = DECODE_DEFAULTS["bottomup"]
    for fn in (decode.decode_bottomup, decode.group_people):
        for name, p in inspect.signature(fn).parameters.items():
            if name in bu:
                assert p.default == bu[name], (fn.__name__, name, p.default, bu[name])
    src = open(os.path.join(os.path.dirname(__file__), "..", "cpp_ext", "kernels.hpp")).read()
    assert "double min_person_score = %s;" % bu["min_person_score"] in src


def test_bad_calibration_source_fails_before_the_fp32_export(capsys, tmp_path, assets):
    """A bad --calib (or --coco) is reported in one line before the checkpoint is even loaded:
    the failing process never imports torch."""
    ckpt = os.path.join(assets, "models", "lwop_hpe0001.pth")
    if not os.path.exists(ckpt):
        pytest.skip("lwop checkpoint missing")
    img = tmp_path / "one.jpg"
    img.write_bytes(b"x")
    probe = ("import sys; from edgepose.cli import main; rc = main(sys.argv[1:]); "
             "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    for calib, words in (([str(tmp_path / "nope")], ["not found", "nope"]),
                         ([str(img)], ["single image"]),
                         ([os.path.join(assets, "people"), os.path.join(assets, "people")], ["twice"])):
        r = subprocess.run([sys.executable, "-c", probe, "export", ckpt, "--target", "cpu-int8",
                            "-o", str(tmp_path / "o.onnx"), "--calib"] + calib, capture_output=True, text=True)
        one_line_error(r.returncode, r.stderr.strip(), *words)
        assert r.stdout.strip() == "no torch"
    rc, err = run(capsys, "export", ckpt, "--target", "cpu-int8", "-o", str(tmp_path / "o.onnx"),
                  "--calib", os.path.join(assets, "people"), "--coco", str(tmp_path / "no.json"))
    one_line_error(rc, err, "COCO annotation file not found")
    assert sorted(os.listdir(tmp_path)) == ["one.jpg"]
