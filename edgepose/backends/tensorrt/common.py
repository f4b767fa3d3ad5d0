"""What every part of the TensorRT layer shares: the tensorrt import (overridable in tests
through ``sys.modules``), the logger, messages."""
from typing import Any, Dict

from ...errors import ModelError
TRTEXEC_ENGINE = "model.engine"   # where the bundle README's trtexec lines save the engine
MISSING_TRT = (
    "TensorRT's Python bindings are not importable (import tensorrt failed): run this on the Jetson, "
    "where JetPack ships them (sudo apt install python3-libnvinfer; a virtualenv needs "
    "--system-site-packages), or build the engine there with 'edgepose build-engine BUNDLE' "
    "or the trtexec line in BUNDLE/README.md")
MISSING_CUDA = (
    "no CUDA Python bindings: pip install pycuda (built against the device's CUDA; the only choice on "
    "JetPack 4.6, whose CUDA 10.2 predates cuda-python) or cuda-python matching JetPack's CUDA "
    "('cuda-python==11.*' on JetPack 5, '12.*' on JetPack 6)")


def _say(msg: str) -> None:
    from ...log import logger
    logger.info(msg)




# ----------------------------------------------------------------------------------------------
# imports (overridable in tests through sys.modules)
# ----------------------------------------------------------------------------------------------
def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise ModelError(MISSING_TRT)
    return trt


_LOGGERS: Dict[int, Any] = {}


def _logger(trt):
    # TensorRT wants one logger per process; keyed by module so that tests may swap modules
    lg = _LOGGERS.get(id(trt))
    if lg is None:
        lg = trt.Logger(trt.Logger.WARNING)
        _LOGGERS[id(trt)] = lg
    return lg


def trt_version(trt) -> str:
    return str(getattr(trt, "__version__", "0.0.0"))
