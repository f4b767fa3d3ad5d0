"""The INT8 report in words, JSON and a picture: :func:`format_report` (the lines printed at the
end of an export), :func:`report_json`, :func:`comparison_png` (float and INT8 poses side by side
on the held-out frames where they differ most) and :func:`save_report` (the JSON and, beside it,
the PNG)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from edgepose.errors import ExportError

from .gate import gate_word

__all__ = ["format_report", "comparison_png", "report_json", "save_report"]


def format_report(rep: Dict[str, Any]) -> str:
    lines = ["accuracy (float vs int8, %s, %d held-out frames): label-free AP drop %s, OKS agreement %.3f, "
             "people %d -> %d" % (rep.get("evaluation", "?"), rep.get("holdout_frames", 0),
                                  ("%.1f [%.1f, %.1f]" % ((rep["label_free_drop"],) + tuple(rep["label_free_drop_ci95"])))
                                  if "label_free_drop" in rep else "n/a",
                                  rep.get("oks_agreement", 0.0), rep.get("people_float", 0), rep.get("people_quant", 0))]
    if "ap_float" in rep:
        lines.append("COCO AP: float %.3f, int8 %.3f (drop %.2f points, 95%% interval [%.1f, %.1f])"
                     % (rep["ap_float"], rep["ap_quant"], rep["ap_drop"], rep["ap_drop_ci95"][0], rep["ap_drop_ci95"][1]))
    if rep.get("host"):
        h = rep["host"]
        lines.append("on this host's int8 kernels (%s): label-free AP drop %s%s" % (
            h.get("kernels", {}).get("name", "?"), h.get("label_free_drop", "n/a"),
            (", AP %.3f" % h["ap_quant"]) if "ap_quant" in h else ""))
    verdict = gate_word(rep)
    lines.append("gate: %s -> %s" % (rep.get("gate"), verdict))
    if rep.get("resolution_note"):
        lines.append("note: " + rep["resolution_note"])
    if rep.get("keep_float"):
        lines.append("mixed precision: %d layers kept in float: %s"
                     % (len(rep["keep_float"]), ", ".join(rep["keep_float"])))
    if rep.get("int8_mac_fraction") is not None:
        lines.append("compute in int8: %.1f%% of conv MACs" % (100 * rep["int8_mac_fraction"]))
    if rep.get("speed"):
        for s in (rep["speed"] if isinstance(rep["speed"], list) else [rep["speed"]]):
            line = ("speed (onnxruntime, %s thread(s), %s runs, back to back): float %.1f ms, int8 %.1f ms, %.2fx wall"
                    % (s.get("threads", "?"), s.get("runs", "?"), s.get("float_ms", float("nan")),
                       s.get("int8_ms", float("nan")), s.get("speedup", float("nan"))))
            if "cpu_speedup" in s:
                line += "; CPU time %.1f -> %.1f ms, %.2fx" % (s["float_cpu_ms"], s["int8_cpu_ms"], s["cpu_speedup"])
            lines.append(line)
    if rep.get("warning"):
        lines.append("WARNING: " + rep["warning"])
    return "\n".join(lines)


def comparison_png(rep: Dict[str, Any], path: str, cell: Tuple[int, int] = (420, 300)) -> Optional[str]:
    """Float (left) and INT8 (right) poses on the held-out frames where they differ most (lowest
    per-frame OKS agreement), each frame letterboxed into a ``cell`` (width, height)."""
    import cv2
    from edgepose.draw import draw_poses
    from edgepose.files import atomic_path
    ex = rep.get("_examples") or []
    if not ex:
        return None
    cw, ch = cell
    bar = 20
    rows = []
    for img, rf, rq, agree, name in ex:
        s = min(cw / float(img.shape[1]), ch / float(img.shape[0]))
        w, h = max(1, int(round(img.shape[1] * s))), max(1, int(round(img.shape[0] * s)))
        cells = []
        for res, label in ((rf, "float"), (rq, "int8")):
            c = np.zeros((ch + bar, cw, 3), np.uint8)
            drawn = cv2.resize(draw_poses(img, res), (w, h), interpolation=cv2.INTER_AREA)
            y0, x0 = bar + (ch - h) // 2, (cw - w) // 2
            c[y0:y0 + h, x0:x0 + w] = drawn
            text = "%s: %d people | %s | OKS agr. %.2f" % (label, len(res), str(name).split(":")[-1][:30], agree)
            cv2.putText(c, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            cells.append(c)
        rows.append(np.hstack([cells[0], np.full((ch + bar, 4, 3), 255, np.uint8), cells[1]]))
    with atomic_path(path) as tmp:     # the temporary name keeps the .png extension
        if not cv2.imwrite(tmp, np.vstack(rows)):
            raise ExportError("cannot write %s" % path)
    return path


def _strip_private(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_private(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, list):
        return [_strip_private(v) for v in x]
    return x


def report_json(rep: Dict[str, Any]) -> str:
    return json.dumps(_strip_private(rep), indent=1, sort_keys=True, default=_json_default)


def save_report(rep: Dict[str, Any], path: str, accuracy: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """Write the report JSON at ``path`` and the comparison PNG beside it (``.png`` for
    ``.json``); ``accuracy``: the part holding the held-out examples (default ``rep``)."""
    from edgepose.files import write_atomic
    acc = rep if accuracy is None else accuracy
    png = (path[:-5] if path.endswith(".json") else path) + ".png"
    written = {}
    if comparison_png(acc, png):
        acc["comparison_png"] = os.path.basename(png)
        written["png"] = png
    write_atomic(path, report_json(rep))
    written["json"] = path
    acc.pop("_examples", None)      # images: drawn, not kept in the returned report
    return written


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
