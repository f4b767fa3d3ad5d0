"""PyTorch checkpoint → self-describing, verified ONNX model.

``export_checkpoint_onnx(ckpt, out, arch=None, input_size=None, dynamic=False, opset=13)``:

1. load the checkpoint safely (:mod:`edgepose.exporters.checkpoint`), build the model whose keys
   and shapes match it exactly (:mod:`edgepose.exporters.models`);
2. export with torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``):
   it writes opset 13 (the default: TensorRT 8.2 on Jetson Nano parses it) and 17; the dynamo
   exporter cannot produce opset 13;
3. simplify with onnxsim (kept unsimplified, and said so, if onnxsim fails);
4. embed :class:`edgepose.metadata.ModelMeta` (everything the runtime needs);
5. verify: onnxruntime against PyTorch on sample inputs made by THE preprocessing
   (:func:`edgepose.preprocess.normalize`) from seeded random images: batch 1 and a second
   case (batch 8 for top-down models, another size and batch 2 for dynamic bottom-up models).
   The max abs error is printed; above ``tolerance`` (1e-3) the export fails;
6. write to a temporary file beside ``out`` and rename: nothing is left behind on failure.

Model I/O: input ``image`` NCHW float32. Bottom-up (Lightweight OpenPose): outputs
``heatmaps`` ``[N,18,H/8,W/8]`` (background channel dropped) and ``pafs`` ``[N,38,H/8,W/8]`` of
the final stage; static ``1x3xHxW`` unless ``dynamic`` (batch, H and W symbolic). Top-down
(HRNet): output ``heatmaps`` ``[N,17,H/4,W/4]``, batch always dynamic.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import time
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from edgepose.errors import ExportError, first_line
from edgepose.metadata import ModelMeta, embed_onnx
from edgepose.schema import get_schema

DEFAULT_OPSET = 13
SUPPORTED_OPSETS = tuple(range(11, 21))
TOLERANCE = 1e-3

# Lightweight OpenPose: height 368 is upstream's evaluation scale (val.py base_height=368);
# width 496 = 368 * 4/3 rounded up to the stride: 4:3 frames (COCO, 640x480 cameras) fill the
# input without padding, 16:9 frames are letterboxed. With --dynamic the runtime resizes to
# height 368 and pads the width to the stride instead.
LWOP_DEFAULT_SIZE = (368, 496)
HRNET_DEFAULT_SIZE = (256, 192)
LWOP_MEAN, LWOP_STD = [128.0, 128.0, 128.0], [256.0, 256.0, 256.0]
IMAGENET_MEAN_RGB = [123.675, 116.28, 103.53]
IMAGENET_STD_RGB = [58.395, 57.12, 57.375]


def _log(progress: bool, msg: str) -> None:
    from edgepose.log import logger
    logger.log(20 if progress else 10, "export: " + msg)




# ----------------------------------------------------------------------------------------------
# atomic output
# ----------------------------------------------------------------------------------------------
def check_output_path(out: str) -> str:
    out = os.fspath(out)
    if not out:
        raise ExportError("no output path given")
    d = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(d, exist_ok=True)  # like `-o out/model.onnx` in a fresh checkout
    except OSError as e:
        raise ExportError("cannot create output directory %s: %s" % (d, e.strerror))
    if os.path.isdir(out):
        raise ExportError("output path is a directory: %s" % out)
    return out


@contextlib.contextmanager
def atomic_output(out: str) -> Iterator[str]:
    """Yield a temporary path beside ``out``; renamed to ``out`` on success, removed on failure
    (:func:`edgepose.io.atomic_path`, after the output path's checks)."""
    from edgepose.files import atomic_path

    with atomic_path(check_output_path(out)) as tmp:
        yield tmp


# ----------------------------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------------------------
def parse_input_size(value: Union[None, str, int, Sequence[int]]) -> Optional[Tuple[int, int]]:
    """``"368x496"`` / ``"368,496"`` / ``(368, 496)`` / ``368`` → ``(H, W)``."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            parts = [p for p in re.split(r"[xX,* ]+", value.strip()) if p]
            vals = [int(p) for p in parts]
        elif isinstance(value, (int, np.integer)):
            vals = [int(value)]
        else:
            vals = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ExportError("input size must be HxW (e.g. 256x192), got %r" % (value,))
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) <= 0:
        raise ExportError("input size must be HxW with positive numbers, got %r" % (value,))
    return vals[0], vals[1]


def _size_from_filename(path: str) -> Optional[Tuple[int, int]]:
    """HRNet checkpoints carry their training size in the name: ``pose_hrnet_w32_384x288.pth``."""
    m = re.search(r"(?<!\d)(\d{3})x(\d{3})(?!\d)", os.path.basename(path))
    if m:
        h, w = int(m.group(1)), int(m.group(2))
        if h % 32 == 0 and w % 32 == 0:
            return h, w
    return None


def _check_opset(opset: int) -> int:
    try:
        opset = int(opset)
    except (TypeError, ValueError):
        raise ExportError("opset must be an integer, got %r" % (opset,))
    if opset not in SUPPORTED_OPSETS:
        raise ExportError("opset %d not supported (use %d-%d; 13 for TensorRT 8.x on Jetson)"
                          % (opset, SUPPORTED_OPSETS[0], SUPPORTED_OPSETS[-1]))
    return opset


# ----------------------------------------------------------------------------------------------
# metadata
# ----------------------------------------------------------------------------------------------
def _schema_fields(name: str) -> Dict[str, Any]:
    s = get_schema(name)
    return {
        "schema": name,
        "keypoints": list(s["keypoints"]),
        "skeleton": [list(p) for p in s["skeleton"]],
        "limbs": [list(p) for p in s["limbs"]],
        "flip_pairs": [list(p) for p in s["flip_pairs"]],
        "to_coco17": list(s["to_coco17"]),
    }


def _version() -> str:
    from edgepose import __version__
    return __version__


def make_meta(arch: str, cfg: Dict[str, Any], size: Tuple[int, int], dynamic: bool,
              source_sha256: Optional[str], extra: Optional[Dict[str, Any]] = None) -> ModelMeta:
    """Metadata of a model exported from a supported PyTorch architecture."""
    h, w = size
    if arch == "lightweight-openpose":
        data: Dict[str, Any] = {
            "family": "bottomup",
            "arch": arch,
            "input": {"name": "image", "layout": "NCHW", "height": h, "width": w, "channel_order": "BGR",
                      "mean": list(LWOP_MEAN), "std": list(LWOP_STD),
                      "dynamic_hw": bool(dynamic), "dynamic_batch": bool(dynamic)},
            "outputs": {"heatmaps": {"name": "heatmaps", "layout": "NCHW"},
                        "pafs": {"name": "pafs", "layout": "NCHW"}},
            "stride": 8,
            "heatmap_offset": 0.5,
        }
        data.update(_schema_fields("cmu18"))
    elif arch == "hrnet":
        data = {
            "family": "topdown",
            "arch": arch,
            "input": {"name": "image", "layout": "NCHW", "height": h, "width": w, "channel_order": "RGB",
                      "mean": list(IMAGENET_MEAN_RGB), "std": list(IMAGENET_STD_RGB),
                      "dynamic_hw": False, "dynamic_batch": True},
            "outputs": {"heatmaps": {"name": "heatmaps", "layout": "NCHW"}},
            "stride": 4,
            "heatmap_offset": 0.0,
            "crop": {"padding": 1.25},
        }
        data.update(_schema_fields("coco17"))
    else:  # pragma: no cover - guarded by canonical_arch
        raise ExportError("no metadata recipe for architecture %r" % arch)
    data["model_config"] = {k: v for k, v in cfg.items() if k != "arch"}
    data["source_sha256"] = source_sha256
    data["edgepose_version"] = _version()
    data["precision"] = "fp32"
    if extra:
        data.update(extra)
    return ModelMeta(data)


# ----------------------------------------------------------------------------------------------
# ONNX helpers shared with onnx_import
# ----------------------------------------------------------------------------------------------
def simplify(model, progress: bool = True):
    """(model, simplified?) - onnxsim when it works, else the model unchanged (and said so)."""
    try:
        import onnxsim
    except ImportError:
        _log(progress, "onnxsim not installed: model left unsimplified")
        return model, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simp, ok = onnxsim.simplify(model)
    except Exception as e:  # onnxsim raises many kinds (RuntimeError, onnx errors, ...)
        _log(progress, "onnxsim failed (%s): model left unsimplified" % first_line(e))
        return model, False
    if not ok:
        _log(progress, "onnxsim could not validate the simplified model: left unsimplified")
        return model, False
    strip_onnxsim_metadata(simp)
    return simp, True


def strip_onnxsim_metadata(model) -> int:
    """Remove the ``onnxsim.*`` entries onnxsim writes into ``metadata_props`` (about twenty:
    its options and lists of the nodes it changed), in place; returns how many."""
    keep = [p for p in model.metadata_props if not p.key.startswith("onnxsim.")]
    n = len(model.metadata_props) - len(keep)
    if n:
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
    return n


def ort_session(path_or_bytes, threads: Optional[int] = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    # no busy-wait spinning: verification shares the machine with other work
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(path_or_bytes, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError("onnxruntime cannot load the exported model: %s" % first_line(e))


def sample_images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """Seeded BGR uint8 test images ``[n,h,w,3]``: smooth gradients plus noise (not just noise,
    so that the networks see some spatial structure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    imgs = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        base = np.stack([128 + 100 * np.sin(xx / (7.0 + i) + c) * np.cos(yy / (11.0 + 2 * c)) for c in range(3)], -1)
        noise = rng.normal(0, 30, size=(h, w, 3))
        imgs[i] = np.clip(base + noise, 0, 255).astype(np.uint8)
    return imgs


def compare_outputs(ref: Dict[str, np.ndarray], got: Dict[str, np.ndarray]) -> Dict[str, float]:
    errs = {}
    for name, r in ref.items():
        g = got[name]
        if tuple(g.shape) != tuple(r.shape):
            raise ExportError("verification: output %s has shape %s, expected %s" % (name, g.shape, r.shape))
        if not np.all(np.isfinite(g)) or not np.all(np.isfinite(r)):
            raise ExportError("verification: output %s contains NaN or Inf" % name)
        errs[name] = float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))) if r.size else 0.0
    return errs


# ----------------------------------------------------------------------------------------------
# the export
# ----------------------------------------------------------------------------------------------
def _torch_export(wrapper, size: Tuple[int, int], dynamic_hw: bool, dynamic_batch: bool,
                  output_names: Sequence[str], opset: int) -> bytes:
    import torch

    h, w = size
    dummy = torch.zeros(1, 3, h, w, dtype=torch.float32)
    axes: Dict[str, Dict[int, str]] = {}
    if dynamic_batch or dynamic_hw:
        in_axes: Dict[int, str] = {}
        out_axes: Dict[int, str] = {}
        if dynamic_batch:
            in_axes[0] = out_axes[0] = "batch"
        if dynamic_hw:
            in_axes.update({2: "height", 3: "width"})
            out_axes.update({2: "out_height", 3: "out_width"})
        axes["image"] = in_axes
        for n in output_names:
            axes[n] = dict(out_axes)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (dummy,), buf, dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=list(output_names),
                              dynamic_axes=axes or None, do_constant_folding=True)
    except Exception as e:
        raise ExportError("torch.onnx.export failed at opset %d: %s" % (opset, first_line(e)))
    return buf.getvalue()


def _verify_cases(arch: str, size: Tuple[int, int], dynamic: bool) -> List[Tuple[int, int, int]]:
    h, w = size
    if arch == "hrnet":
        return [(1, h, w), (8, h, w)]
    if dynamic:
        h2 = max(8, (h * 3 // 4) // 8 * 8)
        w2 = max(8, (w * 5 // 4 + 7) // 8 * 8)
        return [(1, h, w), (2, h2, w2)]
    return [(1, h, w)]


def verify_against_torch(onnx_path: str, wrapper, meta: ModelMeta, cases: Sequence[Tuple[int, int, int]],
                         output_names: Sequence[str], tolerance: float = TOLERANCE,
                         progress: bool = True, seed: int = 0) -> Dict[str, Any]:
    """Run ONNX (onnxruntime) and PyTorch on the same inputs; ExportError above ``tolerance``."""
    import torch

    from edgepose.preprocess import normalize

    sess = ort_session(onnx_path)
    results = []
    worst = 0.0
    for i, (n, h, w) in enumerate(cases):
        x = normalize(sample_images(n, h, w, seed + i), meta)
        with torch.no_grad():
            ref = wrapper(torch.from_numpy(x))
        if not isinstance(ref, (tuple, list)):
            ref = (ref,)
        ref_d = {name: t.detach().cpu().numpy() for name, t in zip(output_names, ref)}
        try:
            got = dict(zip(output_names, sess.run(list(output_names), {meta.input["name"]: x})))
        except Exception as e:
            raise ExportError("verification: onnxruntime failed on input %dx3x%dx%d: %s" % (n, h, w, first_line(e)))
        errs = compare_outputs(ref_d, got)
        err = max(errs.values())
        worst = max(worst, err)
        scale = max(float(np.max(np.abs(r))) for r in ref_d.values())
        results.append({"input_shape": [n, 3, h, w], "max_abs_error": errs, "max_abs_reference": scale})
        _log(progress, "verify batch %d %dx%d: max |onnx - torch| = %.3g (%s; outputs up to %.3g)"
             % (n, h, w, err, ", ".join("%s %.3g" % kv for kv in errs.items()), scale))
    if worst > tolerance:
        raise ExportError("verification failed: ONNX differs from PyTorch by %.3g (> %.0e)" % (worst, tolerance))
    return {"max_abs_error": worst, "tolerance": tolerance, "cases": results, "reference": "pytorch"}


def prepare_torch_model(checkpoint: str, arch: Optional[str] = None):
    """(model, deployment wrapper, config) for a checkpoint file."""
    from .checkpoint import load_checkpoint
    from .models import build_model

    state = load_checkpoint(checkpoint)
    return build_model(arch, state, os.path.basename(checkpoint))


def export_checkpoint_onnx(checkpoint: str, out: str, arch: Optional[str] = None,
                           input_size: Union[None, str, Sequence[int]] = None, dynamic: bool = False,
                           opset: int = DEFAULT_OPSET, progress: bool = True,
                           tolerance: float = TOLERANCE, return_model: bool = False):
    """Export a checkpoint to a verified ONNX model with metadata at ``out``; returns a report
    dict (``(report, torch_wrapper)`` with ``return_model``)."""
    import onnx

    from .checkpoint import file_sha256

    t0 = time.time()
    checkpoint = os.fspath(checkpoint)
    out = check_output_path(out)
    opset = _check_opset(opset)
    size = parse_input_size(input_size)
    _model, wrapper, cfg = prepare_torch_model(checkpoint, arch)
    arch = cfg["arch"]
    if arch == "hrnet":
        if size is None:
            size = _size_from_filename(checkpoint) or HRNET_DEFAULT_SIZE
        mult = 32
        output_names: Tuple[str, ...] = ("heatmaps",)
        dyn_hw, dyn_batch = False, True
        if dynamic:
            _log(progress, "hrnet: --dynamic ignored for H/W (top-down crops have a fixed size); batch is dynamic")
    else:
        size = size or LWOP_DEFAULT_SIZE
        mult = 8
        output_names = ("heatmaps", "pafs")
        dyn_hw = dyn_batch = bool(dynamic)
    if size[0] % mult or size[1] % mult:
        raise ExportError("%s input size %dx%d must be a multiple of %d" % (arch, size[0], size[1], mult))
    _log(progress, "%s %s, input %dx%d%s, opset %d" % (
        arch, ", ".join("%s=%s" % kv for kv in cfg.items() if kv[0] != "arch"), size[0], size[1],
        " (dynamic H/W and batch)" if dyn_hw else (" (dynamic batch)" if dyn_batch else ""), opset))

    meta = make_meta(arch, cfg, size, dyn_hw, file_sha256(checkpoint),
                     extra={"export": {"opset": opset, "exporter": "torch.onnx (TorchScript, dynamo=False)",
                                       "torch_version": _torch_version()}})
    raw = _torch_export(wrapper, size, dyn_hw, dyn_batch, output_names, opset)
    model = onnx.load_from_string(raw)
    model, simplified = simplify(model, progress)
    embed_onnx(model, meta)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ExportError("exported ONNX model is invalid: %s" % first_line(e))
    with atomic_output(out) as tmp:
        onnx.save(model, tmp)
        verify = verify_against_torch(tmp, wrapper, meta, _verify_cases(arch, size, dyn_hw), output_names,
                                      tolerance, progress)
    from .api import is_intermediate
    _log(progress, ("FP32 ONNX made for the target (%.1f MB) in %.1fs" % (os.path.getsize(out) / 1e6, time.time() - t0))
         if is_intermediate(out) else
         ("wrote %s (%.1f MB) in %.1fs" % (out, os.path.getsize(out) / 1e6, time.time() - t0)))
    report = {
        "target": "onnx",
        "output": out,
        "source": checkpoint,
        "source_kind": "checkpoint",
        "arch": arch,
        "config": {k: v for k, v in cfg.items() if k != "arch"},
        "input_size": list(size),
        "dynamic": dyn_hw,
        "opset": opset,
        "simplified": simplified,
        "verify": verify,
        "max_abs_error": verify["max_abs_error"],
        "metadata": meta.data,
        "seconds": round(time.time() - t0, 2),
    }
    return (report, wrapper) if return_model else report


def _torch_version() -> str:
    import torch
    return str(torch.__version__)


__all__ = ["export_checkpoint_onnx", "prepare_torch_model", "make_meta", "verify_against_torch",
           "atomic_output", "parse_input_size", "simplify", "DEFAULT_OPSET", "TOLERANCE"]
