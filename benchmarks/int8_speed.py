"""Where onnxruntime's INT8 speed-up goes: FP32 vs INT8 timed three ways in one run.

    python benchmarks/int8_speed.py FP32.onnx INT8.onnx [--runs 12] [--blocks 3]

1. ``interleaved, spinning on``: both sessions alive, runs alternated, onnxruntime's default
   thread-pool spinning (how ``relative_speed`` measured before);
2. ``interleaved, spinning off``: the same with ``session.intra_op.allow_spinning=0`` (how
   :func:`edgepose.exporters.int8.gate.relative_speed` measures now);
3. ``alone``: one session at a time, in alternating blocks, spinning on (how a deployment runs).

At 1 and 2 threads, medians of the per-run times; the ratio is FP32 / INT8 within each row, so
it is comparable across rows measured seconds apart on a shared machine. The input is a random
image at the models' input size (a dynamic dimension becomes 368 x 432).
"""
from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    import numpy as np
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fp32")
    ap.add_argument("int8")
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--blocks", type=int, default=3)
    args = ap.parse_args(argv)

    def sess(path, threads, spin):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    probe = sess(args.fp32, 1, False).get_inputs()[0]
    dims = [d if isinstance(d, int) else v for d, v in zip(probe.shape, (1, 368, 432, 3) if probe.shape[-1] == 3
                                                           else (1, 3, 368, 432))]
    x = (np.random.default_rng(0).random(dims, np.float32) * 255).astype(np.float32)

    def once(s):
        t = time.perf_counter()
        s.run(None, {s.get_inputs()[0].name: x})
        return time.perf_counter() - t

    print("| threads | how | FP32 ms | INT8 ms | FP32 / INT8 |")
    print("|---|---|---|---|---|")
    for threads in (1, 2):
        rows = []
        for how, spin in (("interleaved, spinning on", True), ("interleaved, spinning off", False)):
            sf, sq = sess(args.fp32, threads, spin), sess(args.int8, threads, spin)
            once(sf), once(sq)
            tf, tq = [], []
            for _ in range(args.runs):
                tf.append(once(sf))
                tq.append(once(sq))
            rows.append((how, np.median(tf), np.median(tq)))
            del sf, sq
        tf, tq = [], []
        for _ in range(args.blocks):
            for path, acc in ((args.fp32, tf), (args.int8, tq)):
                s = sess(path, threads, True)
                once(s), once(s)
                acc.extend(once(s) for _ in range(max(1, args.runs // args.blocks)))
                del s
        rows.append(("alone, in alternating blocks", np.median(tf), np.median(tq)))
        for how, f, q in rows:
            print("| %d | %s | %.1f | %.1f | %.2fx |" % (threads, how, 1e3 * f, 1e3 * q, f / q), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
