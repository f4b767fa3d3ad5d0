#!/usr/bin/env python3
"""Bad input, tried as a user would: every case runs the real CLI in a subprocess and must end in
one line on stderr and exit code 2, with nothing left in the output folder.

    python benchmarks/bad_inputs.py [--markdown]      # needs EDGEPOSE_ASSETS (the real models)
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from edgepose.assets import asset  # noqa: E402


def lie(src, dst, edit):
    """A copy of ONNX model ``src`` whose edgepose metadata was hand-edited by ``edit(dict)``."""
    import onnx

    m = onnx.load(src)
    for p in m.metadata_props:
        if p.key == "edgepose":
            d = json.loads(p.value)
            edit(d)
            p.value = json.dumps(d)
    onnx.save(m, dst)
    return dst


def cases(d):
    A = lambda *p: asset(*p)  # noqa: E731
    ckpt = A("models", "lwop_hpe0001.pth")
    img = A("coco", "000000196141.jpg")
    vid = A("videos", "arm_wrestling.mp4")
    model = os.path.join(d, "lwop.onnx")
    subprocess.run([sys.executable, "-m", "edgepose", "-q", "export", ckpt, "-o", model], check=True)
    txt = os.path.join(d, "notes.onnx")
    open(txt, "w").write("not a model\n")
    trunc = os.path.join(d, "trunc.onnx")
    open(trunc, "wb").write(open(model, "rb").read()[:100000])
    empty_img = os.path.join(d, "empty.jpg")
    open(empty_img, "wb").close()
    bad_vid = os.path.join(d, "bad.mp4")
    open(bad_vid, "wb").write(b"\0" * 1000)

    def set_(path, value):
        def edit(m):
            cur = m
            for k in path[:-1]:
                cur = cur[k]
            cur[path[-1]] = value
        return edit

    lies = [("stride 0", set_(["stride"], 0)), ("stride -8", set_(["stride"], -8)),
            ("stride 4 (model's is 8)", set_(["stride"], 4)),
            ("input height 0", set_(["input", "height"], 0)),
            ("input height 10**9", set_(["input", "height"], 10 ** 9)),
            ("no keypoints", set_(["keypoints"], [])),
            ("heatmap_offset 'abc'", set_(["heatmap_offset"], "abc")),
            ("decode.max_peaks -1", set_(["decode", "max_peaks"], -1)),
            ("mean NaN", set_(["input", "mean"], [float("nan")] * 3)),
            ("layout NHWC (model's is NCHW)", set_(["input", "layout"], "NHWC")),
            ("smoothing.beta -1", lambda m: m.__setitem__("smoothing", {"beta": -1}))]
    out = os.path.join(d, "out")
    rows = []
    for name, edit in lies:
        p = lie(model, os.path.join(d, "lie_%d.onnx" % len(rows)), edit)
        rows.append(("metadata lie: " + name, ["infer", p, img, "--out", out]))
    rows += [
        ("missing model", ["infer", os.path.join(d, "nope.onnx"), img, "--out", out]),
        ("text file named .onnx", ["infer", txt, img, "--out", out]),
        ("truncated ONNX", ["infer", trunc, img, "--out", out]),
        ("empty image file", ["infer", model, empty_img, "--out", out]),
        ("corrupt video", ["infer", model, bad_vid, "--out", out]),
        ("camera that does not exist", ["track", model, "/dev/video99", "--out", out]),
        ("stream that does not answer", ["track", model, "rtsp://127.0.0.1:9/cam", "--out", out]),
        ("bench --runs 0", ["bench", model, "--runs", "0"]),
        ("bench --threads -2", ["bench", model, "--threads", "-2"]),
        ("--height on a fixed-size model", ["infer", model, img, "--height", "256", "--out", out]),
        ("--input-size not a multiple of the stride", ["export", ckpt, "-o", os.path.join(out, "x.onnx"),
                                                       "--input-size", "367x500"]),
        ("--input-size 0x0", ["export", ckpt, "-o", os.path.join(out, "x.onnx"), "--input-size", "0x0"]),
        ("--calib missing folder", ["export", ckpt, "--target", "cpu-int8", "--calib", os.path.join(d, "nope"),
                                    "-o", os.path.join(out, "x.onnx")]),
        ("--calib a single image", ["export", ckpt, "--target", "cpu-int8", "--calib", img,
                                    "-o", os.path.join(out, "x.onnx")]),
        ("--n-calib 0", ["export", ckpt, "--target", "cpu-int8", "--n-calib", "0", "-o", os.path.join(out, "x.onnx")]),
        ("unknown target", ["export", ckpt, "--target", "jetson-int4", "-o", os.path.join(out, "x")]),
        ("option the target does not take", ["export", ckpt, "--target", "onnx", "--dla-core", "1",
                                             "-o", os.path.join(out, "x.onnx")]),
        ("--max-fps 0", ["track", model, vid, "--max-fps", "0"]),
        ("--beta nan", ["track", model, vid, "--beta", "nan"]),
        ("--max-peaks 0", ["infer", model, img, "--max-peaks", "0"]),
        ("track on an image", ["track", model, img]),
        ("eval --coco without --images", ["eval", model, "--coco", A("coco", "test_coco.json")]),
        ("build-engine on a non-bundle", ["build-engine", d]),
    ]
    return rows, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    d = tempfile.mkdtemp(prefix="edgepose-bad-")
    failures = 0
    try:
        rows, out = cases(d)
        if args.markdown:
            print("| input | exit | message |\n|---|---|---|")
        for name, argv_ in rows:
            r = subprocess.run([sys.executable, "-m", "edgepose"] + argv_, capture_output=True, text=True,
                               timeout=600)
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            msg = lines[-1] if lines else ""
            left = os.listdir(out) if os.path.isdir(out) else []
            ok = r.returncode == 2 and len(lines) == 1 and not left
            failures += not ok
            if args.markdown:
                print("| %s | %d | `%s`%s |" % (name, r.returncode, msg.replace("|", "\\|"),
                                              "" if ok else " **(%d lines, left %s)**" % (len(lines), left)))
            else:
                print("%-45s %3d %s %s" % (name, r.returncode, "ok  " if ok else "FAIL", msg))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("%d of %d cases not a one-line exit 2" % (failures, len(rows)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
