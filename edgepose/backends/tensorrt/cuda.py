"""Device memory and the GPU's identity: cuda-python (``cuda.bindings.runtime``, or
``cuda.cudart`` in older releases), pycuda as a fall-back."""
from typing import Any, Dict, Tuple

import numpy as np

from ...errors import ModelError, first_line
from .common import MISSING_CUDA


class Cuda:
    """Device buffers and one stream through cuda-python, or pycuda when that is missing."""

    def __init__(self, device: int = 0):
        self.device = int(device)
        rt = None
        try:
            from cuda.bindings import runtime as rt  # cuda-python >= 12.6 (cuda-bindings)
        except ImportError:
            try:
                from cuda import cudart as rt  # older cuda-python
            except ImportError:
                rt = None
        if rt is not None:
            self.kind = "cuda-python"
            self.rt = rt
            self._check(rt.cudaSetDevice(self.device), "cudaSetDevice")
            self.stream = self._check(rt.cudaStreamCreate(), "cudaStreamCreate")
            self.stream_handle = int(self.stream)
            return
        try:
            import pycuda.driver as drv
            drv.init()
        except ImportError:
            raise ModelError(MISSING_CUDA)
        except Exception as e:
            raise ModelError("pycuda could not initialise CUDA: %s" % first_line(e))
        self.kind = "pycuda"
        self.drv = drv
        self.ctx = drv.Device(self.device).retain_primary_context()
        self.ctx.push()
        self.stream = drv.Stream()
        self.stream_handle = int(self.stream.handle)
        self._pyc_allocs: Dict[int, Any] = {}

    # cuda-python returns (err, value...) tuples
    def _check(self, ret, what: str):
        if not isinstance(ret, tuple):
            ret = (ret,)
        err = ret[0]
        if int(err) != 0:
            try:
                msg = self.rt.cudaGetErrorString(err)[1]
                msg = msg.decode() if isinstance(msg, bytes) else str(msg)  # novermin (bytes.decode)
            except Exception:
                msg = str(err)
            raise ModelError("CUDA error in %s: %s" % (what, msg))
        if len(ret) == 1:
            return None
        return ret[1] if len(ret) == 2 else ret[1:]

    def gpu_identity(self) -> Tuple[str, str]:
        if self.kind == "cuda-python":
            prop = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
            name = prop.name
            if isinstance(name, (bytes, bytearray)):
                name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")  # novermin (bytes.decode)
            return str(name).strip(), "%d.%d" % (prop.major, prop.minor)
        dev = self.drv.Device(self.device)
        major, minor = dev.compute_capability()
        return str(dev.name()).strip(), "%d.%d" % (major, minor)

    def malloc(self, nbytes: int) -> int:
        nbytes = max(int(nbytes), 1)
        if self.kind == "cuda-python":
            return int(self._check(self.rt.cudaMalloc(nbytes), "cudaMalloc"))
        a = self.drv.mem_alloc(nbytes)
        self._pyc_allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        if self.kind == "cuda-python":
            self._check(self.rt.cudaFree(ptr), "cudaFree")
        else:
            a = self._pyc_allocs.pop(int(ptr), None)
            if a is not None:
                a.free()

    def htod(self, ptr: int, arr: np.ndarray) -> None:
        if self.kind == "cuda-python":
            self._check(self.rt.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes,
                                                self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                                self.stream), "cudaMemcpyAsync(host→device)")
        else:
            self.drv.memcpy_htod_async(ptr, arr, self.stream)

    def dtoh(self, arr: np.ndarray, ptr: int) -> None:
        if self.kind == "cuda-python":
            self._check(self.rt.cudaMemcpyAsync(arr.ctypes.data, ptr, arr.nbytes,
                                                self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                                self.stream), "cudaMemcpyAsync(device→host)")
        else:
            self.drv.memcpy_dtoh_async(arr, ptr, self.stream)

    def sync(self) -> None:
        if self.kind == "cuda-python":
            self._check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        else:
            self.stream.synchronize()

    def close(self) -> None:
        if self.kind == "cuda-python":
            try:
                self.rt.cudaStreamDestroy(self.stream)
            except Exception:
                pass
        else:
            try:
                self.ctx.pop()
            except Exception:
                pass


def _gpu_identity(device: int = 0) -> Tuple[str, str]:
    """(GPU name, compute capability) for the engine key."""
    try:
        c = Cuda(device)
    except ModelError:
        # no CUDA bindings: on a Jetson the board model still tells engines apart
        model = "unknown-gpu"
        for p in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
            try:
                with open(p, "rb") as f:
                    model = f.read().split(b"\0", 1)[0].decode(errors="replace").strip()  # novermin (bytes.decode)
                break
            except OSError:
                continue
        return model, "unknown"
    try:
        return c.gpu_identity()
    finally:
        c.close()
