"""Concurrency (issue 12): estimators used from two threads at once give exactly the results
they give alone; two ``build-engine`` runs on one bundle build one engine, the second waiting
for the first (a lock file) and reusing its engine; concurrent writers of one artifact never
leave a partial one.

What may be shared between threads:
- an onnxruntime estimator (bottom-up, top-down, the person detector): yes.
  ``InferenceSession.run`` is thread-safe, the C++ decoder keeps one workspace per thread
  (``thread_local``) and releases the GIL, and the pipelines keep no per-call state (only the
  detector's ``timings``, which then belong to one of the concurrent calls);
- a TFLite or TensorRT estimator: no. A TFLite interpreter and a TensorRT execution context
  hold the input and output tensors of the call in progress: use one estimator per thread
  (tested below for TFLite).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from edgepose import files as efiles  # noqa: E402
from edgepose import io as eio  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ROUNDS = 4          # each thread runs every image this many times


def _people_images(assets, n=6):
    from edgepose.io import list_images, read_image
    return [read_image(p) for p in list_images(os.path.join(assets, "people"))[:n]]


def _run_threads(fns):
    """Run the callables at once (released together by a barrier); re-raise the first error."""
    barrier = threading.Barrier(len(fns))
    out, errs = [None] * len(fns), []

    def work(i):
        try:
            barrier.wait()
            out[i] = fns[i]()
        except BaseException as e:  # noqa: B902 (reported below)
            errs.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]
    return out


def _poses(est, imgs, order):
    return [(i, est(imgs[i])) for _ in range(ROUNDS) for i in order]


def _same(alone, got):
    for i, res in got:
        ref = alone[i]
        np.testing.assert_array_equal(res.keypoints, ref.keypoints)
        np.testing.assert_array_equal(res.scores, ref.scores)
        if ref.boxes is not None:
            np.testing.assert_array_equal(res.boxes, ref.boxes)


def _check(make, imgs, shared):
    """Results alone, then from two threads at once (one estimator each, or one shared), in
    opposite orders so that different images run side by side."""
    a = make()
    alone = [a(im) for im in imgs]
    assert sum(len(r) for r in alone) > 0, "no people found: the comparison would say little"
    fwd, rev = list(range(len(imgs))), list(reversed(range(len(imgs))))
    if shared:
        got = _run_threads([lambda: _poses(a, imgs, fwd), lambda: _poses(a, imgs, rev)])
    else:
        b = make()
        got = _run_threads([lambda: _poses(a, imgs, fwd), lambda: _poses(b, imgs, rev)])
    for g in got:
        _same(alone, g)


@pytest.mark.parametrize("shared", [False, True], ids=["two-estimators", "one-shared"])
def test_bottomup_from_two_threads(tfpose_model, assets, shared):
    from edgepose.pipelines import load_estimator
    imgs = _people_images(assets)
    _check(lambda: load_estimator(tfpose_model, threads=1, height=160), imgs, shared)


@pytest.mark.parametrize("shared", [False, True], ids=["two-estimators", "one-shared"])
def test_topdown_with_detector_from_two_threads(assets, tmp_path, shared):
    from tiny_models import build_dots_model
    from edgepose.pipelines import load_estimator
    det = os.path.join(assets, "detectors", "light_person_detector.onnx")
    if not os.path.exists(det):
        pytest.skip("light_person_detector.onnx missing from assets")
    model = build_dots_model(str(tmp_path / "dots.onnx"))
    imgs = _people_images(assets)
    _check(lambda: load_estimator(model, detector=det, threads=1), imgs, shared)


def test_tflite_detectors_one_per_thread(assets):
    """TFLite: an interpreter per thread (sharing one is not safe, see the module docstring)."""
    pytest.importorskip("ai_edge_litert")
    from edgepose.pipelines.detector import PersonDetector
    det = os.path.join(assets, "detectors", "light_person_detector.tflite")
    if not os.path.exists(det):
        pytest.skip("light_person_detector.tflite missing from assets")
    imgs = _people_images(assets)
    a, b = PersonDetector(det, threads=1), PersonDetector(det, threads=1)
    alone = [a(im) for im in imgs]
    assert sum(len(s) for _, s in alone) > 0
    fwd, rev = list(range(len(imgs))), list(reversed(range(len(imgs))))

    def run(d, order):
        return [(i, d(imgs[i])) for _ in range(ROUNDS) for i in order]

    for got in _run_threads([lambda: run(a, fwd), lambda: run(b, rev)]):
        for i, (boxes, scores) in got:
            np.testing.assert_array_equal(boxes, alone[i][0])
            np.testing.assert_array_equal(scores, alone[i][1])


# ----------------------------------------------------------------------------------------------
# concurrent writers of one artifact
# ----------------------------------------------------------------------------------------------
def test_atomic_dir_writers_and_a_reader(tmp_path):
    """Two threads replace one directory over and over while a third reads it: the reader
    always finds one writer's complete directory (never a mixture, never a partial one)."""
    target = str(tmp_path / "bundle")
    n = 25

    def write(tag):
        def go():
            for k in range(n):
                with efiles.atomic_dir(target) as d:
                    for f in ("a", "b", "c"):
                        with open(os.path.join(d, f), "w") as fh:
                            fh.write("%s-%d" % (tag, k))
        return go

    seen = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                vals = []
                for f in ("a", "b", "c"):
                    with open(os.path.join(target, f)) as fh:
                        vals.append(fh.read())
            except FileNotFoundError:
                continue      # before the first write, or the directory swapped while reading
            seen.append(vals)
        return None

    r = threading.Thread(target=read)
    r.start()
    try:
        _run_threads([write("x"), write("y")])
    finally:
        stop.set()
        r.join()
    with open(os.path.join(target, "a")) as fh:
        last = fh.read()
    assert last in ("x-%d" % (n - 1), "y-%d" % (n - 1))
    assert sorted(os.listdir(target)) == ["a", "b", "c"]
    assert [n_ for n_ in os.listdir(tmp_path) if n_ != "bundle"] == []
    # a reader between two opens may see two generations: each file is still whole
    for vals in seen:
        assert all(v.split("-")[0] in "xy" and v.split("-")[1].isdigit() for v in vals)


def test_two_video_writers_of_one_path(tmp_path):
    """Two writers of one output video at once (two runs writing OUT/clip.mp4) each write
    their own temporary; the last close wins, whole."""
    target = str(tmp_path / "clip.mp4")
    w1 = eio.VideoWriter(target, 10.0, (64, 48))
    w2 = eio.VideoWriter(target, 10.0, (64, 48))
    assert w1.tmp != w2.tmp
    for i in range(10):
        w1.write(np.full((48, 64, 3), 50, np.uint8))
    for i in range(5):
        w2.write(np.full((48, 64, 3), 200, np.uint8))
    w2.close()
    w1.close()
    frames = list(eio.VideoReader(target))
    assert len(frames) == 10
    assert os.listdir(tmp_path) == ["clip.mp4"]


# ----------------------------------------------------------------------------------------------
# two build-engine runs on one bundle (FAKE TensorRT: tests/fake_tensorrt)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("onnx")
    from tiny_models import tiny_bottomup as _tiny_bottomup
    from edgepose.exporters.tensorrt import export_jetson_bundle

    d = tmp_path_factory.mktemp("lock")
    _tiny_bottomup(str(d / "tiny.onnx"))
    export_jetson_bundle(str(d / "tiny.onnx"), str(d / "tiny.jetson-fp16"), mode="fp16",
                         build_engine=False, log=lambda m: None)
    return str(d / "tiny.jetson-fp16")


def _fresh(bundle, tmp_path):
    b = str(tmp_path / "b")
    shutil.copytree(bundle, b)
    return b


def _engine_dir_clean(b):
    from edgepose import trt_cache as tc
    d = os.path.join(b, tc.ENGINES_DIR)
    names = sorted(os.listdir(d))
    engines = [n for n in names if n.endswith(".engine")]
    assert len(engines) == 1 and names == sorted(engines + [engines[0] + ".json", ".build.lock"]), names
    return os.path.join(d, engines[0])


def _wait_for(cond, what, limit=120.0):
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("gave up waiting for %s" % what)
        time.sleep(0.02)


def test_build_engine_from_two_threads(bundle, tmp_path, monkeypatch):
    sys.path.insert(0, HERE)
    import fake_tensorrt
    from edgepose.backends.tensorrt import TensorrtBackend, build_engine
    from edgepose.backends.tensorrt import build as bld

    trt, _ = fake_tensorrt.install(monkeypatch, "10.3.0")
    b = _fresh(bundle, tmp_path)
    entered, go = threading.Event(), threading.Event()
    real = bld._build_plan_bytes

    def slow(*a, **k):
        entered.set()
        assert go.wait(120)
        return real(*a, **k)

    monkeypatch.setattr(bld, "_build_plan_bytes", slow)
    logs = {"A": [], "B": []}
    waiting = threading.Event()

    def log_b(m):
        logs["B"].append(m)
        if "waiting" in m:
            waiting.set()

    out = {}
    ta = threading.Thread(target=lambda: out.setdefault("A", build_engine(b, log=logs["A"].append)))
    ta.start()
    assert entered.wait(120)
    tb = threading.Thread(target=lambda: out.setdefault("B", build_engine(b, log=log_b)))
    tb.start()
    assert waiting.wait(120), logs["B"]
    go.set()
    ta.join()
    tb.join()
    assert out["A"] == out["B"] == _engine_dir_clean(b)
    assert len(trt.built) == 1                              # one engine built, not two
    assert any("using it" in m for m in logs["B"]), logs["B"]
    assert TensorrtBackend(b, log=lambda m: None).meta is not None


DRIVER = r'''
import os, sys, time, types
sys.path.insert(0, %(here)r)
import fake_tensorrt
rt = fake_tensorrt.make_fake_cudart()
trt = fake_tensorrt.make_fake_tensorrt("10.3.0", cudart=rt)
cuda, bnd = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
bnd.runtime, cuda.bindings = rt, bnd
sys.modules.update({"tensorrt": trt, "cuda": cuda, "cuda.bindings": bnd, "cuda.bindings.runtime": rt})
pause = os.environ.get("PAUSE_DIR")
if pause:
    import edgepose.backends.tensorrt.build as bld
    real = bld._build_plan_bytes
    def slow(*a, **k):
        open(os.path.join(pause, "entered"), "w").close()
        while not os.path.exists(os.path.join(pause, "go")):
            time.sleep(0.02)
        return real(*a, **k)
    bld._build_plan_bytes = slow
from edgepose.cli import main
sys.exit(main(["build-engine"] + sys.argv[1:]))
''' % {"here": HERE}


def _spawn(args, log, **env):
    e = dict(os.environ, **env)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-c", DRIVER] + args, stdout=log, stderr=subprocess.STDOUT,
                            env=e)


def _text(p):
    with open(p) as f:
        return f.read()


@pytest.mark.skipif(os.name != "posix", reason="flock: POSIX")
@pytest.mark.parametrize("force", [False, True], ids=["cached", "force"])
def test_two_build_engine_processes(bundle, tmp_path, force):
    """Process A builds (held inside the build), B starts and waits on the lock, A finishes:
    B uses A's engine (with --force too: it is newer than B's request); one engine, no
    temporaries."""
    b = _fresh(bundle, tmp_path)
    pause = tmp_path / "pause"
    pause.mkdir()
    la, lb = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    extra = ["--force"] if force else []
    with open(la, "w") as fa, open(lb, "w") as fb:
        a = _spawn([b] + extra, fa, PAUSE_DIR=str(pause))
        try:
            _wait_for(lambda: (pause / "entered").exists() or a.poll() is not None, "A to start building")
            assert a.poll() is None, _text(la)
            bp = _spawn([b] + extra, fb)
            _wait_for(lambda: "waiting for it to finish" in _text(lb) or bp.poll() is not None,
                      "B to wait on the lock")
            assert "pid %d" % a.pid in _text(lb), _text(lb)
            (pause / "go").touch()
            assert a.wait(120) == 0, _text(la)
            assert bp.wait(120) == 0, _text(lb)
        finally:
            for p in [a] + ([bp] if "bp" in locals() else []):
                if p.poll() is None:
                    p.kill()
                    p.wait()
    engine = _engine_dir_clean(b)
    assert "engine: %s" % engine in _text(la) and "engine: %s" % engine in _text(lb)
    assert _text(la).count("building a TensorRT") == 1
    assert "building a TensorRT" not in _text(lb) and "using it" in _text(lb), _text(lb)


@pytest.mark.skipif(os.name != "posix", reason="flock: POSIX")
def test_killed_builder_does_not_block_the_next(bundle, tmp_path):
    """A builder killed (SIGKILL) while holding the lock: the kernel drops its lock, the next
    run builds, and nothing of the killed run is left in the cache."""
    b = _fresh(bundle, tmp_path)
    pause = tmp_path / "pause"
    pause.mkdir()
    la, lb = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    with open(la, "w") as fa:
        a = _spawn([b], fa, PAUSE_DIR=str(pause))
        _wait_for(lambda: (pause / "entered").exists() or a.poll() is not None, "A to start building")
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
    with open(lb, "w") as fb:
        assert _spawn([b], fb).wait(120) == 0, _text(lb)
    assert "waiting" not in _text(lb) and _text(lb).count("building a TensorRT") == 1
    _engine_dir_clean(b)
