"""Kill safety (issue 12): a SIGKILL at any point of an export leaves under the output name the
previous artifact or none, never a partial one; the temporaries of killed runs are removed by a
later run, never those of a live writer.

- the write steps one by one: a child process dies by SIGKILL inside ``atomic_path`` /
  ``atomic_dir`` / ``VideoWriter`` (mid-write, written but not fsync'ed, before and after the
  rename or exchange, between moving the previous directory aside and renaming its replacement
  in where the file system cannot exchange names);
- which temporaries ``clean_stale_temps`` removes (dead writer, reused pid, other host, old) and
  which it keeps (this process, a live process, files that are not edgepose's);
- real exports (``python -m edgepose export``: onnx from a checkpoint, cpu-int8, tflite-fp32, a
  jetson-int8 bundle) killed after seeded random delays spread over the run (import,
  calibration, conversion, writing), with and without a previous artifact; then one successful
  export must leave no temporary in the folder and every visible file must load.

The random trials are few here (CI: onnx, cpu-int8 and the bundle on tiny models). More:
``EDGEPOSE_KILL_TRIALS=20`` (per target, tflite-fp32 included), ``EDGEPOSE_KILL_REAL=1`` (the
real Lightweight OpenPose from the assets instead of tiny models), ``EDGEPOSE_KILL_TARGETS=onnx,
cpu-int8`` to choose, ``EDGEPOSE_KILL_REPORT=kill.json`` for the per-trial outcomes, ``-s`` for
the table::

    EDGEPOSE_KILL_REAL=1 EDGEPOSE_KILL_TRIALS=20 EDGEPOSE_KILL_REPORT=kill.json pytest tests/test_kill.py -k random -s
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edgepose import files as efiles
from edgepose import io as eio

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and /proc: POSIX only")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PREVIOUS = b"the previous artifact\n" * 1000
NEW_SIZE = 8 << 20


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _hidden(d):
    return sorted(n for n in os.listdir(d) if n.startswith("."))


def _sha(path):
    if os.path.isdir(path):
        out = {}
        for root, _, files in os.walk(path):
            for f in files:
                p = os.path.join(root, f)
                out[os.path.relpath(p, path)] = efiles.sha256_file(p)
        return out
    return efiles.sha256_file(path)


# ----------------------------------------------------------------------------------------------
# the write steps one by one
# ----------------------------------------------------------------------------------------------
# argv: point, kind (file|dir|jsonarray|video), target. Writes the new artifact (NEW_SIZE bytes of a known
# pattern; a directory of two such files; a video) and SIGKILLs itself at ``point``.
DRIVER = r'''
import os, signal, sys
point, kind, target = sys.argv[1:4]
import numpy as np
import edgepose.files as efiles
import edgepose.io as eio

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def new_bytes():
    return (np.arange(%(n)d, dtype=np.uint32) * 2654435761).astype(np.uint32).tobytes()[:%(n)d]

absd = os.path.abspath(target)
real_replace, real_rename, real_r2, real_fsync = os.replace, os.rename, efiles._renameat2, efiles._fsync

def replace(a, b):
    if os.path.abspath(b) == absd and point == "before-rename":
        die()
    r = real_replace(a, b)
    if os.path.abspath(b) == absd and point == "after-rename":
        die()
    return r

def fsync(p, directory=False):
    if point == "written":
        die()
    return real_fsync(p, directory)

def r2(a, b, flags):
    if point == "no-exchange":
        return False    # as on a file system without renameat2's flags
    if os.path.abspath(b) == absd and point == "before-rename":
        die()
    r = real_r2(a, b, flags)
    if os.path.abspath(b) == absd and point == "after-rename":
        die()
    return r

def rename(a, b):
    r = real_rename(a, b)
    if point == "no-exchange" and os.path.abspath(a) == absd:
        die()       # the previous directory is aside, its replacement not yet in
    return r

os.replace, os.rename, efiles._fsync, efiles._renameat2 = replace, rename, fsync, r2
data = new_bytes()
if kind == "file":
    with efiles.atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            if point == "mid-write":
                die()
            f.write(data[len(data) // 2:])
elif kind == "dir":
    with efiles.atomic_dir(target) as tmp:
        with open(os.path.join(tmp, "a.bin"), "wb") as f:
            f.write(data)
        if point == "mid-write":
            die()
        with open(os.path.join(tmp, "b.bin"), "wb") as f:
            f.write(data)
elif kind == "jsonarray":
    w = efiles.JsonArrayWriter(target)
    for i in range(20000):
        w.append({"frame": i, "keypoints": [1.5] * 51})
    w.f.flush()
    if point == "mid-write":
        die()
    w.close()
else:
    w = eio.VideoWriter(target, 10.0, (64, 48))
    for i in range(20):
        w.write(np.full((48, 64, 3), i * 10, np.uint8))
    if point == "mid-write":
        die()
    w.close()
sys.exit(3)     # not killed: the point was never reached
''' % {"n": NEW_SIZE}

WINDOWS = [
    # point, file, dir: what the target holds after the kill ("previous"/"new")
    ("mid-write", "previous", "previous"),
    ("written", "previous", "previous"),
    ("before-rename", "previous", "previous"),
    ("after-rename", "new", "new"),
]


def _new_bytes():
    return (np.arange(NEW_SIZE, dtype=np.uint32) * 2654435761).astype(np.uint32).tobytes()[:NEW_SIZE]


def _kill_at(point, kind, target):
    r = subprocess.run([sys.executable, "-c", DRIVER, point, kind, target], env=_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert r.returncode == -signal.SIGKILL, "child did not die at %s (rc %s): %s" % (
        point, r.returncode, r.stdout.decode(errors="replace")[-2000:])


@pytest.mark.parametrize("previous", [True, False], ids=["previous", "none"])
@pytest.mark.parametrize("point,expect", [(p, f) for p, f, _ in WINDOWS])
def test_atomic_path_killed_at_each_step(tmp_path, point, expect, previous):
    target = str(tmp_path / "model.onnx")
    if previous:
        with open(target, "wb") as f:
            f.write(PREVIOUS)
    _kill_at(point, "file", target)
    if expect == "new":
        with open(target, "rb") as f:
            assert f.read() == _new_bytes()
    elif previous:
        with open(target, "rb") as f:
            assert f.read() == PREVIOUS
    else:
        assert not os.path.exists(target)
    left = _hidden(tmp_path)
    if point != "after-rename":
        assert len(left) == 1 and ".tmp.onnx" in left[0]      # the killed run's temporary
    # the next writer into the folder (another process) removes it
    assert efiles.clean_stale_temps(str(tmp_path)) == [("removed", n) for n in left]
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("previous", [True, False], ids=["previous", "none"])
@pytest.mark.parametrize("point,expect", [(p, d) for p, _, d in WINDOWS])
def test_atomic_dir_killed_at_each_step(tmp_path, point, expect, previous):
    target = str(tmp_path / "model.jetson-int8")
    if previous:
        os.mkdir(target)
        with open(os.path.join(target, "old.bin"), "wb") as f:
            f.write(PREVIOUS)
    before = _sha(target) if previous else None
    _kill_at(point, "dir", target)     # (exchange with a previous one, else a plain rename)
    _check_dir_outcome(target, expect, before)
    # after an exchange the killed run's temporary holds the previous directory: removed too
    efiles.clean_stale_temps(str(tmp_path))
    assert _hidden(tmp_path) == []
    _check_dir_outcome(target, expect, before)


def _check_dir_outcome(target, expect, before):
    if expect == "new":
        assert sorted(os.listdir(target)) == ["a.bin", "b.bin"]
        with open(os.path.join(target, "b.bin"), "rb") as f:
            assert f.read() == _new_bytes()
    elif before is not None:
        assert _sha(target) == before
    else:
        assert not os.path.exists(target)


def test_atomic_dir_without_exchange_restores_the_previous_one(tmp_path):
    """A file system without renameat2(RENAME_EXCHANGE): the previous bundle is moved aside,
    then the new one renamed in. Killed in between, the name is missing (previous or none,
    never partial) and the next writer into the folder puts the previous one back."""
    target = str(tmp_path / "model.jetson-int8")
    os.mkdir(target)
    with open(os.path.join(target, "old.bin"), "wb") as f:
        f.write(PREVIOUS)
    before = _sha(target)
    _kill_at("no-exchange", "dir", target)
    assert not os.path.exists(target)
    aside = [n for n in _hidden(tmp_path) if n.endswith(".old")]
    assert len(aside) == 1 and _sha(str(tmp_path / aside[0])) == before
    # the next process's first write into this folder, whatever it writes, puts it back
    efiles.write_json(str(tmp_path / "other.json"), {"x": 1})
    assert _sha(target) == before and _hidden(tmp_path) == []


@pytest.mark.parametrize("previous", [True, False], ids=["previous", "none"])
def test_video_writer_killed_before_close(tmp_path, previous):
    target = str(tmp_path / "clip.mp4")
    if previous:
        with open(target, "wb") as f:
            f.write(PREVIOUS)
    _kill_at("mid-write", "video", target)
    if previous:
        with open(target, "rb") as f:
            assert f.read() == PREVIOUS
    else:
        assert not os.path.exists(target)
    left = _hidden(tmp_path)
    assert len(left) == 1 and left[0].endswith(".tmp.mp4")
    # the next VideoWriter on this folder (another process) removes it; its own is unique
    r = subprocess.run([sys.executable, "-c", DRIVER, "none", "video", target], env=_env(), timeout=120)
    assert r.returncode == 3
    assert _hidden(tmp_path) == []
    assert eio.VideoReader(target).size == (64, 48)


@pytest.mark.parametrize("point", ["mid-write", "written", "before-rename", "after-rename"])
def test_json_array_writer_killed(tmp_path, point):
    """The streaming results writer (results.json of a long video without holding it in memory)."""
    target = str(tmp_path / "results.json")
    with open(target, "w") as f:
        json.dump(["previous"], f)
    _kill_at(point, "jsonarray", target)
    with open(target) as f:
        got = json.load(f)
    if point == "after-rename":
        assert len(got) == 20000 and got[-1] == {"frame": 19999, "keypoints": [1.5] * 51}
    else:
        assert got == ["previous"]
    efiles.clean_stale_temps(str(tmp_path))
    assert _hidden(tmp_path) == []


def test_json_array_writer(tmp_path):
    target = str(tmp_path / "r.json")
    with efiles.JsonArrayWriter(target) as w:
        assert not os.path.exists(target)
        w.extend([{"a": 1}, [2, 3.5]])
        w.append("x")
    with open(target) as f:
        assert json.load(f) == [{"a": 1}, [2, 3.5], "x"]
    with efiles.JsonArrayWriter(str(tmp_path / "empty.json")):
        pass
    with open(str(tmp_path / "empty.json")) as f:
        assert json.load(f) == []
    with pytest.raises(RuntimeError):
        with efiles.JsonArrayWriter(target) as w:
            w.append(1)
            raise RuntimeError("interrupted")
    w2 = efiles.JsonArrayWriter(target)
    w2.append(5)
    w2.abort()
    with open(target) as f:
        assert json.load(f) == [{"a": 1}, [2, 3.5], "x"]           # the previous one, whole
    assert _hidden(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# which temporaries are removed
# ----------------------------------------------------------------------------------------------
def _temp_name(target, pid, start, owner=None, kind="tmp", ext=""):
    return ".%s.ep%s-%d-%d.k2j3h4g5.%s%s" % (target, owner or efiles._owner(), pid, start, kind, ext)


def _touch(p, isdir=False, age=0.0):
    if isdir:
        os.mkdir(p)
        with open(os.path.join(p, "f"), "w") as f:
            f.write("x")
    else:
        with open(p, "w") as f:
            f.write("x")
    if age:
        t = time.time() - age
        os.utime(p, (t, t))


@pytest.fixture
def live_child():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield p.pid, efiles._proc_stat(p.pid)[1]
    finally:
        p.kill()
        p.wait()


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_clean_stale_temps_removes_dead_writers_only(tmp_path, live_child):
    live_pid, live_start = live_child
    me = efiles._proc_stat(os.getpid())[1]
    dead = _dead_pid()
    other = "0badc0de" if efiles._owner() != "0badc0de" else "0badc0df"
    old = 2 * efiles.STALE_AGE_S
    keep = [  # (name, is a directory, age in seconds)
        (_temp_name("a.onnx", os.getpid(), me, ext=".onnx"), False, 0),            # this process
        (_temp_name("a.onnx", live_pid, live_start, ext=".onnx"), False, old),     # a live process
        (_temp_name("b.jetson-int8", live_pid, live_start), True, 0),             # its directory
        (_temp_name("c.onnx", dead, 5, owner=other, ext=".onnx"), False, 0),       # other host, fresh
        (".gitignore", False, old), (".model.abc123.tmp.onnx", False, old),       # not edgepose's
        ("model.onnx", False, 0),
    ]
    gone = [
        (_temp_name("a.onnx", dead, 5, ext=".onnx"), False, 0),                    # dead writer
        (_temp_name("a.onnx", live_pid, live_start + 1, ext=".onnx"), False, 0),   # pid reused since
        (_temp_name("a.onnx", os.getpid(), me + 1, ext=".onnx"), False, 0),        # ... by this process
        (_temp_name("b.jetson-int8", dead, 5), True, 0),                          # its directory
        (_temp_name("c.onnx", dead, 5, owner=other, ext=".onnx").replace("k2j3h4g5", "zzzzzzzz"),
         False, old),                                                             # other host, old
        (_temp_name("d.jetson-int8", dead, 5, kind="old"), True, 0),              # aside; name present
    ]
    for n, isdir, age in keep + gone:
        _touch(str(tmp_path / n), isdir, age)
    os.mkdir(str(tmp_path / "d.jetson-int8"))
    done = efiles.clean_stale_temps(str(tmp_path))
    assert sorted(done) == sorted(("removed", n) for n, _, _ in gone)
    assert sorted(os.listdir(tmp_path)) == sorted([n for n, _, _ in keep] + ["d.jetson-int8"])


def test_clean_stale_temps_restores_a_missing_artifact(tmp_path):
    dead = _dead_pid()
    aside = str(tmp_path / _temp_name("m.jetson-fp16", dead, 5, kind="old"))
    _touch(aside, isdir=True)
    assert efiles.clean_stale_temps(str(tmp_path)) == [("restored", "m.jetson-fp16")]
    assert os.listdir(tmp_path) == ["m.jetson-fp16"]
    assert os.listdir(str(tmp_path / "m.jetson-fp16")) == ["f"]


def test_concurrent_writers_of_one_artifact_keep_their_temporaries(tmp_path):
    """Two atomic writes to one name at once (threads here; processes are the same case with
    a live pid): neither removes the other's temporary; the last rename wins, whole."""
    target = str(tmp_path / "r.json")
    with efiles.atomic_path(target) as t1:
        with efiles.atomic_path(target) as t2:
            assert t1 != t2
            assert efiles.clean_stale_temps(str(tmp_path)) == []
            with open(t2, "w") as f:
                f.write('"second"')
        with open(t1, "w") as f:
            f.write('"first"')
    with open(target) as f:
        assert json.load(f) == "first"
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("use_libc", [True, False], ids=["glibc", "syscall"])
def test_renameat2_exchange_and_noreplace(tmp_path, use_libc):
    """Both ways of calling renameat2 (glibc >= 2.28, and the system call for older glibc as
    on JetPack 4.6) exchange two names and refuse to replace with NOREPLACE."""
    fn = efiles._load_renameat2(use_libc)
    if fn is None:
        pytest.skip("no renameat2 here")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "x").write_text("A")
    b.mkdir()
    (b / "x").write_text("B")
    if fn(os.fsencode(str(a)), os.fsencode(str(b)), efiles._RENAME_EXCHANGE) != 0:
        import ctypes
        pytest.skip("this file system cannot exchange names (errno %d)" % ctypes.get_errno())
    assert (a / "x").read_text() == "B" and (b / "x").read_text() == "A"
    assert fn(os.fsencode(str(a)), os.fsencode(str(b)), efiles._RENAME_NOREPLACE) == -1
    assert (a / "x").read_text() == "B"


def test_long_names_and_permissions(tmp_path):
    name = "m" * 230 + ".onnx"
    target = str(tmp_path / name)
    with efiles.atomic_path(target) as tmp:
        assert len(os.path.basename(tmp)) < 255
        with open(tmp, "w") as f:
            f.write("x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask
    with efiles.atomic_dir(str(tmp_path / ("b" * 230))) as d:
        assert len(os.path.basename(d)) < 255
    assert os.stat(str(tmp_path / ("b" * 230))).st_mode & 0o777 == 0o777 & ~umask


def test_scratch_helpers_are_removed_and_reclaimed(tmp_path):
    with efiles.scratch_dir("edgepose-export", dir=str(tmp_path)) as d:
        assert os.path.isdir(d) and efiles._TEMP_RE.match(os.path.basename(d))
    with efiles.scratch_file(str(tmp_path / "m.tflite"), ".float.tflite") as f:
        assert f.endswith(".float.tflite") and os.path.basename(f).startswith(".m.tflite.ep")
    assert os.listdir(tmp_path) == []
    dead = _dead_pid()
    _touch(str(tmp_path / _temp_name("edgepose-export", dead, 5)), isdir=True)
    assert efiles.clean_stale_temps(str(tmp_path)) == [("removed", _temp_name("edgepose-export", dead, 5))]


# ----------------------------------------------------------------------------------------------
# real exports killed at random points
# ----------------------------------------------------------------------------------------------
TARGETS = ("onnx", "cpu-int8", "tflite-fp32", "jetson-int8")
# tflite-fp32 only on demand (EDGEPOSE_KILL_TRIALS): a run is 15-25 s here, mostly importing the
# converter; its artifact is written by the same atomic_path as cpu-int8's, tested step by step above
CI_TRIALS = {"onnx": 2, "cpu-int8": 3, "tflite-fp32": 0, "jetson-int8": 3}
SEED = 12


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import cv2

    from tiny_models import tiny_bottomup as _tiny_bottomup

    d = tmp_path_factory.mktemp("kill_src")
    out = {"dir": d}
    out["tiny"] = str(d / "tiny.onnx")
    _tiny_bottomup(out["tiny"])
    out["tiny1"] = str(d / "tiny1.onnx")
    _tiny_bottomup(out["tiny1"], seed=1)
    calib = d / "calib"
    calib.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        img = cv2.GaussianBlur(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), (7, 7), 2)
        cv2.circle(img, (40, 24), 10 + i, (255, 200, 50), -1)
        cv2.imwrite(str(calib / ("%02d.png" % i)), img)
    out["calib"] = str(calib)
    return out


def _export_cmd(target, src, out):
    args = [sys.executable, "-m", "edgepose", "-v", "export"]
    if target == "onnx":
        return args + [src["ckpt"]] + (["--input-size", "128x160"] if not src.get("real") else []) + ["-o", out]
    args += [src["onnx"], "--target", target, "-o", out]
    if "int8" in target:
        args += ["--calib", src["calib"], "--n-calib", "4", "--holdout", src.get("holdout", "0"), "--no-gate"]
    return args


def _alternative(target, src, out_dir):
    """A valid artifact of the target's kind that differs from what the export writes."""
    p = os.path.join(str(src["dir"]), "alt-" + target)
    if os.path.exists(p):
        return p
    if target in ("onnx", "cpu-int8"):
        shutil.copyfile(src["tiny1"], p)
    elif target == "jetson-int8":
        from edgepose.exporters.tensorrt import export_jetson_bundle
        export_jetson_bundle(src["tiny1"], p, mode="fp16", build_engine=False, log=lambda m: None)
    else:
        from edgepose.assets import assets_dir
        a = assets_dir()
        det = os.path.join(a, "detectors", "light_person_detector.tflite") if a else None
        if not det or not os.path.exists(det):
            return None
        shutil.copyfile(det, p)
    return p


def _valid(path):
    """Raise unless ``path`` is a complete artifact (by its kind)."""
    if os.path.isdir(path):
        from edgepose import trt_cache as tc
        b = tc.Bundle(path)
        b.verify_files()
        assert set(b.build["files"]) | {tc.BUILD_JSON, tc.README_MD} == set(os.listdir(path)) - {tc.ENGINES_DIR}
        return
    ext = os.path.splitext(path)[1]
    if ext == ".onnx":
        import onnx
        onnx.checker.check_model(onnx.load(path))
        from edgepose.metadata import read_onnx_meta
        assert read_onnx_meta(path) is not None
    elif ext == ".tflite":
        from edgepose.backends import load_backend
        load_backend(path)
    elif ext == ".json":
        with open(path) as f:
            json.load(f)
    elif ext in (".png", ".jpg"):
        import cv2
        assert cv2.imread(path) is not None
    else:
        raise AssertionError("unexpected file %s" % path)


def _remove(p):
    if os.path.isdir(p):
        shutil.rmtree(p)
    elif os.path.lexists(p):
        os.unlink(p)


def _copy(src, dst):
    _remove(dst)
    if os.path.isdir(src):
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)


def _lines(log_path):
    with open(log_path, "rb") as f:
        return [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]


def _run(cmd, env, log_path, delay=None, after_output=False):
    """Run ``cmd``; with ``delay``, SIGKILL it (its process group) that many seconds after its
    start, or ``after_output``: after its first line of output (the imports are done then).
    Returns (returncode, seconds to the first output or None, seconds, phase: the last line
    it printed before the kill)."""
    with open(log_path, "wb") as log:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        first = None
        while p.poll() is None and first is None and (delay is None or after_output):
            if os.path.getsize(log_path) > 0:
                first = time.monotonic() - t0
            else:
                time.sleep(0.005)
        try:
            if delay is None:
                p.wait(timeout=900)
            else:
                p.wait(timeout=max(0.0, delay - (time.monotonic() - t0)) if not after_output else delay)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        dt = time.monotonic() - t0
    lines = _lines(log_path)
    ours = [ln for ln in lines if ln.startswith(("edgepose:", "wrote"))]
    phase = (ours or lines or ["(importing: no output yet)"])[-1]
    return p.returncode, first, dt, phase[:100]


def _wanted_targets():
    v = os.environ.get("EDGEPOSE_KILL_TARGETS")
    return [t.strip() for t in v.split(",")] if v else list(TARGETS)


def _real_sources(sources):
    """EDGEPOSE_KILL_REAL=1: the real Lightweight OpenPose (checkpoint from the assets; its
    FP32 ONNX for the other targets) and real calibration images."""
    from edgepose.assets import assets_dir
    a = assets_dir()
    ckpt = os.path.join(a, "models", "lwop_hpe0001.pth") if a else ""
    if not os.path.exists(ckpt):
        pytest.skip("EDGEPOSE_KILL_REAL needs the assets' lwop_hpe0001.pth")
    onnx_path = str(sources["dir"] / "lwop_hpe0001.onnx")
    if not os.path.exists(onnx_path):
        r = subprocess.run([sys.executable, "-m", "edgepose", "-q", "export", ckpt, "-o", onnx_path], env=_env())
        assert r.returncode == 0
    return dict(sources, ckpt=ckpt, onnx=onnx_path, calib=os.path.join(a, "people"), holdout="4", real=True)


def test_exports_killed_at_random_points(sources, tmp_path):
    """Each target: one run to completion (its times), then trials killed at seeded random
    delays: every fourth one counted from the start (in the imports), the others from the run's
    first line of output (calibration, conversion, checks, writing), spread over what is left
    of the run and a little past its end; even trials start over a different valid artifact,
    odd ones over none."""
    n_env = os.environ.get("EDGEPOSE_KILL_TRIALS")
    targets = [t for t in _wanted_targets() if n_env or CI_TRIALS[t]]
    src = dict(sources, onnx=sources["tiny"])
    if os.environ.get("EDGEPOSE_KILL_REAL"):
        src = _real_sources(sources)
    if "onnx" in targets:
        pytest.importorskip("torch")
        if not src.get("real"):
            ckpt = str(sources["dir"] / "lwop.pth")
            if not os.path.exists(ckpt):
                from edgepose.exporters.models.synthetic import random_lightweight_openpose, save_upstream_checkpoint
                save_upstream_checkpoint(random_lightweight_openpose(1, seed=7), ckpt, "lwop-train")
            src["ckpt"] = ckpt
    if "tflite-fp32" in targets:
        import importlib.util
        if importlib.util.find_spec("litert_torch") is None:      # the tflite-fp32 converter
            targets.remove("tflite-fp32")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    env = _env(TMPDIR=str(sys_tmp), OMP_NUM_THREADS="1")
    log = str(tmp_path / "log.txt")
    rng = random.Random(SEED)
    names = {"onnx": "m.onnx", "cpu-int8": "m.int8.onnx", "tflite-fp32": "m.tflite", "jetson-int8": "m.jetson-int8"}
    report = {"seed": SEED, "model": "real lwop_hpe0001" if src.get("real") else "tiny", "targets": {}}
    bad = []
    for target in targets:
        out = str(out_dir / names[target])
        cmd = _export_cmd(target, src, out)
        rc, first, full, _ = _run(cmd, env, log)
        assert rc == 0, "\n".join(_lines(log)[-20:])
        _valid(out)
        first = first or 0.0
        alt = _alternative(target, sources, str(out_dir))
        n = int(n_env) if n_env else CI_TRIALS[target]
        trials = []
        for i in range(n):
            previous = alt if (i % 2 == 0 and alt) else None
            if previous:
                _copy(previous, out)
            else:
                _remove(out)
            before = _sha(out) if previous else None
            u = (i + rng.random()) / n              # stratified over [0, 1)
            if i % 4 == 0:
                anchor, delay = "start", u * first
            else:
                anchor, delay = "output", u * (full - first) * 1.1
            rc, _, dt, phase = _run(cmd, env, log, delay=delay, after_output=anchor == "output")
            if os.path.lexists(out):
                if before is not None and _sha(out) == before:
                    outcome = "previous"
                else:
                    try:
                        _valid(out)
                        outcome = "new"
                    except Exception as e:
                        outcome = "INVALID: %s" % str(e).splitlines()[0][:120]
            else:
                outcome = "none" if previous is None else "LOST the previous artifact"
            if rc == 0 and outcome != "new":
                outcome = "INVALID: finished but %s" % outcome
            trials.append({"trial": i, "previous": bool(previous), "anchor": anchor, "delay_s": round(delay, 2),
                           "killed_at_s": round(dt, 2), "killed": rc == -signal.SIGKILL, "rc": rc,
                           "phase": phase, "outcome": outcome, "temps_left": len(_hidden(str(out_dir)))})
            if outcome not in ("previous", "none", "new"):
                bad.append((target, trials[-1]))
        report["targets"][target] = {"full_run_s": round(full, 2), "first_output_s": round(first, 2),
                                     "trials": trials,
                                     "outcomes": {o: sum(t["outcome"] == o for t in trials)
                                                  for o in sorted({t["outcome"] for t in trials})}}
    # one successful export into the folder removes every temporary of the killed runs
    final_target = "cpu-int8" if "cpu-int8" in targets else targets[0]
    rc, _, _, _ = _run(_export_cmd(final_target, src, str(out_dir / names[final_target])), env, log)
    assert rc == 0, "\n".join(_lines(log)[-20:])
    report["left_after_final_run"] = _hidden(str(out_dir))
    report["system_temp_left"] = sorted(os.listdir(str(sys_tmp)))
    _print_report(report)
    if os.environ.get("EDGEPOSE_KILL_REPORT"):
        with open(os.environ["EDGEPOSE_KILL_REPORT"], "w") as f:
            json.dump(report, f, indent=1)
    assert not bad, bad
    assert report["left_after_final_run"] == []
    for n in os.listdir(str(out_dir)):
        _valid(str(out_dir / n))


def _print_report(report):
    print("\nkill trials (seed %d, %s model)" % (report["seed"], report["model"]))
    print("%-12s %5s %4s %-6s %7s %8s %-9s %s" % ("target", "trial", "prev", "from", "delay", "killed", "outcome",
                                                 "phase (last line printed)"))
    for target, r in report["targets"].items():
        print("%-12s full run %.2f s, first output at %.2f s" % (target, r["full_run_s"], r["first_output_s"]))
        for t in r["trials"]:
            print("%-12s %5d %4s %-6s %6.2fs %7.2fs %-9s %s" % (
                target, t["trial"], "yes" if t["previous"] else "no", t["anchor"], t["delay_s"], t["killed_at_s"],
                t["outcome"] if t["killed"] else t["outcome"] + "*", t["phase"][:70]))
        print("%-12s outcomes: %s" % (target, r["outcomes"]))
    print("(* finished before the kill)")
    print("temporaries left after the final successful run: %s" % (report["left_after_final_run"] or "none"))
    print("left in the system temp folder (TMPDIR) by killed runs: %d" % len(report["system_temp_left"]))
