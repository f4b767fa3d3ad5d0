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
