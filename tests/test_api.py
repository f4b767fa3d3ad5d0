"""The public API: edgepose.load(path)(image) -> result with .people, .draw(), .to_coco();
lazy top-level names; nothing changed in the environment at import."""
import os
import subprocess
import sys

import numpy as np
import pytest

import edgepose
from edgepose.errors import InputError
from edgepose.pose import Pose
from edgepose.results import PoseResult
from edgepose.schema import CMU18_KEYPOINTS, CMU18_LIMBS, CMU18_TO_COCO17


def test_import_is_cheap_and_changes_nothing():
    code = ("import os, sys; before = dict(os.environ); import edgepose; "
            "assert dict(os.environ) == before, 'environment changed'; "
            "heavy = [m for m in ('cv2', 'onnxruntime', 'torch', 'onnx') if m in sys.modules]; "
            "assert not heavy, heavy; "
            "assert callable(edgepose.load); "
            "assert edgepose.Tracker.__module__ == 'edgepose.track'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout


def test_export_on_a_device_python_is_a_one_line_error(monkeypatch):
    import edgepose as ep

    monkeypatch.setattr(sys, "version_info", (3, 6, 9, "final", 0))
    monkeypatch.delitem(ep.__dict__, "export", raising=False)
    with pytest.raises(edgepose.ExportError, match="needs Python >= 3.8"):
        ep.export("model.pth", target="onnx")


def test_lazy_names():
    assert set(edgepose.__all__) >= {"load", "Tracker", "run_video", "export", "PoseResult"}
    assert "load" in dir(edgepose)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgepose.nope  # noqa: B018


class _Fake:
    """An estimator returning one person at a fixed place, recording what it was given."""
    meta = type("M", (), {"family": "bottomup"})()

    def __init__(self):
        self.seen = []

    def __call__(self, img):
        self.seen.append(img)
        kp = np.full((1, 18, 3), -1, np.float32)
        kp[0, :, 2] = 0
        kp[0, 0] = [10, 12, 0.9]
        kp[0, 1] = [10, 30, 0.8]
        return PoseResult(kp, [0.7], CMU18_KEYPOINTS, skeleton=[tuple(l[:2]) for l in CMU18_LIMBS], to_coco17=CMU18_TO_COCO17)


def test_pose_call_on_arrays_and_paths(tmp_path):
    import cv2

    fake = _Fake()
    pose = Pose(fake)
    img = np.full((40, 50, 3), 90, np.uint8)
    r = pose(img)
    assert r.image is img and r.source is None and len(r) == 1
    p = r.people[0]
    assert p.score == pytest.approx(0.7) and p["nose"] == pytest.approx((10, 12, 0.9))
    assert p["neck"] == pytest.approx((10, 30, 0.8)) and p.track_id is None
    assert p.box.tolist() == pytest.approx([10, 12, 0, 18])
    with pytest.raises(KeyError, match="no keypoint 'tail'"):
        p["tail"]
    drawn = r.draw()
    assert drawn.shape == img.shape and (drawn != img).any() and (img == 90).all()
    coco = r.to_coco(5)
    assert coco[0]["image_id"] == 5 and coco[0]["keypoints"][:3] == [10.0, 12.0, 0.9]
    # grey and BGRA arrays become BGR; a path is read with the runtime's own reader
    assert pose(img[:, :, 0]).image.shape == (40, 50, 3)
    assert pose(np.dstack([img, img[:, :, :1]])).image.shape == (40, 50, 3)
    f = str(tmp_path / "x.png")
    cv2.imwrite(f, img)
    r = pose(f)
    assert r.source == f and (r.image == img).all()
    assert pose.family == "bottomup" and pose.meta is fake.meta     # the pipeline shows through


@pytest.mark.parametrize("bad, msg", [
    (3, "expected an image path or a numpy array"),
    (np.zeros((4, 4), np.float32), "expected a uint8 image array"),
    (np.zeros((4, 4, 2), np.uint8), "expected an HxWx3 BGR image array"),
    (np.zeros((1, 9, 3), np.uint8), "too small"),
    ("missing.jpg", "image not found"),
])
def test_pose_bad_input(bad, msg):
    with pytest.raises(InputError, match=msg):
        Pose(_Fake())(bad)


def test_result_without_image_cannot_draw():
    r = _Fake()(None)
    with pytest.raises(ValueError, match="pass draw"):
        r.draw()
    assert r.draw(np.zeros((40, 50, 3), np.uint8)).shape == (40, 50, 3)


def test_readme_three_lines_on_the_real_model(lwop_onnx, assets):
    pose = edgepose.load(lwop_onnx)
    result = pose(os.path.join(assets, "coco", "000000196141.jpg"))
    assert len(result.people) == 4 and result.draw().shape == result.image.shape
    assert all(p.score > 0.3 for p in result.people)
    assert len(result.to_coco(1)) == 4


def test_no_module_imports_the_cli():
    """The CLI parses and prints; the library (runner, sources, Ray, exporters) never imports it,
    so there is no import circle through it (edgepose/__main__.py is the CLI's own entry)."""
    import ast

    if sys.version_info < (3, 8):
        pytest.skip("the exporters' sources need Python >= 3.8 to parse")

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    offenders = []
    for top in ("edgepose", "exporters", "calibration"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                path = os.path.join(d, f)
                if not f.endswith(".py") or path.endswith(os.path.join("edgepose", "__main__.py")):
                    continue
                tree = ast.parse(open(path, encoding="utf-8").read())
                for n in ast.walk(tree):
                    names = []
                    if isinstance(n, ast.ImportFrom):
                        mod = n.module or ""
                        names = [mod] + [mod + "." + a.name if mod else a.name for a in n.names]
                    elif isinstance(n, ast.Import):
                        names = [a.name for a in n.names]
                    if any(x in ("cli", "edgepose.cli", ".cli") or x.endswith(".cli") for x in names):
                        offenders.append(os.path.relpath(path, root))
    assert offenders == [], offenders


def test_int8_package_has_no_import_cycle():
    """exporters/int8/ is split by concern with acyclic dependencies: no module imports (at the
    top or inside a function) one that imports it back, directly or through others."""
    import ast

    if sys.version_info < (3, 8):
        pytest.skip("the exporters' sources need Python >= 3.8 to parse")

    pkg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exporters", "int8")
    mods = sorted(f[:-3] for f in os.listdir(pkg) if f.endswith(".py") and f != "__init__.py")
    deps = {}
    for m in mods:
        tree = ast.parse(open(os.path.join(pkg, m + ".py"), encoding="utf-8").read())
        found = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom):
                mod = n.module or ""
                if n.level == 1:            # from .x import ..., from . import x
                    found.update([mod.split(".")[0]] if mod else [a.name for a in n.names])
                elif mod.startswith("edgepose.exporters.int8"):
                    rest = mod[len("edgepose.exporters.int8"):].lstrip(".")
                    found.update([rest.split(".")[0]] if rest else [a.name for a in n.names])
            elif isinstance(n, ast.Import):
                found.update(a.name.split(".")[3] for a in n.names
                             if a.name.startswith("edgepose.exporters.int8."))
        deps[m] = found & set(mods) - {m}
    assert "graph" in mods and deps["graph"] == set()

    def cycle_from(m, path):
        if m in path:
            return path[path.index(m):] + [m]
        for d in sorted(deps[m]):
            c = cycle_from(d, path + [m])
            if c:
                return c
        return None

    cycles = [c for c in (cycle_from(m, []) for m in mods) if c]
    assert cycles == [], " -> ".join(cycles[0])


def test_video_pipeline_splits_estimators_by_protocol_not_family():
    """run_video overlaps inference and decode for any estimator offering stages() (the
    estimator protocol, edgepose.pipelines), whatever its family; others run in one stage."""
    from edgepose.video import _stages

    class TwoStage:
        meta = type("M", (), {"family": "anything"})()

        def infer(self, img):
            return img.sum()

        def finish(self, x):
            return x

        def stages(self):
            return self.infer, self.finish

    e = TwoStage()
    assert _stages(e) == (e.infer, e.finish)
    fake = _Fake()
    assert _stages(fake) == (fake, None)
