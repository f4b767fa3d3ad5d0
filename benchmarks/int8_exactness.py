"""The same Q/DQ graph on this CPU's int8 kernels and evaluated exactly (the issue's first row).

    python benchmarks/int8_exactness.py

The 4-layer test model of ``tests/test_int8.py`` is quantized with uint8 and with symmetric int8
activations (16 calibration inputs); the relative L2 error of its output against float on 3
held-out inputs is printed for onnxruntime's optimised session (this CPU's fused int8
convolutions, whose class is printed: on x86 without VNNI they saturate 16-bit sums) and for
edgepose's exact evaluation (graph optimisations off: the integer arithmetic of an
int32-accumulating device).
"""
from __future__ import annotations

import os
import sys
import tempfile


def main() -> int:
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    import test_int8 as T
    from edgepose.exporters.int8.kernels import int8_kernel_class
    from edgepose.exporters.int8.qdq import quantize_qdq

    print("this CPU's int8 kernels: %s" % int8_kernel_class())
    d = tempfile.mkdtemp(prefix="int8-exactness-")
    tiny = T._tiny_model(os.path.join(d, "tiny.onnx"))
    print("| activations | host kernels | exact Q/DQ |")
    print("|---|---|---|")
    for sym in (False, True):
        out = os.path.join(d, "q%d.onnx" % sym)
        quantize_qdq(tiny, out, T._inputs(16, 1), symmetric_activations=sym)
        held = T._inputs(3, 7)
        host = np.mean([T._rel(T._run(tiny, x, exact=False), T._run(out, x, exact=False)) for x in held])
        exact = np.mean([T._rel(T._run(tiny, x, exact=False), T._run(out, x, exact=True)) for x in held])
        print("| %s | %.2f %% | %.2f %% |" % ("int8 (symmetric)" if sym else "uint8", 100 * host, 100 * exact))
    return 0


if __name__ == "__main__":
    sys.exit(main())
