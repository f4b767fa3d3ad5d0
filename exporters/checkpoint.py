"""Safe loading of PyTorch checkpoints (untrusted files).

Every checkpoint goes through ``torch.load(path, map_location="cpu", weights_only=True)``: the
weights-only unpickler builds tensors, containers and primitive values and refuses any other
Python global. On top of torch's own allow-list we allow exactly what real training checkpoints
of the supported projects contain:

- ``collections.Counter``: ``torch.optim.lr_scheduler.MultiStepLR.state_dict()["milestones"]``
  (Lightweight OpenPose's ``checkpoint_iter_*.pth`` hold the scheduler state);
- ``collections.OrderedDict``: state dicts;
- numpy scalars (``numpy.core.multiarray.scalar`` + numeric dtypes): HRNet's training
  ``checkpoint.pth`` stores its validation AP (``perf``) as a ``numpy.float64``.

Anything else (``os.system``, arbitrary classes, ...) is refused with a one-line
:class:`~edgepose.errors.ModelError` naming the global. The state dict is then found inside the
file (bare, ``state_dict``, ``model_state_dict``, ``model``, ``net``), ``module.`` /
``_orig_mod.`` prefixes (DataParallel, torch.compile) are stripped.
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Any, Dict, List

from edgepose.errors import ModelError, first_line
from edgepose.files import sha256_file as file_sha256  # noqa: F401 (public name kept)

_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "best_state_dict")
_STRIP_PREFIXES = ("module.", "_orig_mod.")


def _allowed_globals() -> List[Any]:
    """The extra globals real checkpoints need (see module docstring); nothing callable-arbitrary."""
    import collections

    allowed: List[Any] = [collections.Counter, collections.OrderedDict]
    try:
        import numpy as np
        try:
            from numpy._core.multiarray import scalar  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.multiarray import scalar  # type: ignore
        allowed += [scalar, np.dtype]
        # pickles written under numpy 1.x name the function numpy.core.multiarray.scalar
        allowed.append((scalar, "numpy.core.multiarray.scalar"))
        allowed.append((scalar, "numpy._core.multiarray.scalar"))
        dtypes = getattr(np, "dtypes", None)
        if dtypes is not None:
            for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType",
                         "Int16DType", "Int8DType", "UInt8DType", "BoolDType"):
                if hasattr(dtypes, name):
                    allowed.append(getattr(dtypes, name))
    except ImportError:  # pragma: no cover
        pass
    return allowed


def _safe_globals_ctx():
    """A context allowing ``_allowed_globals()`` for the duration of one load (torch >= 2.5)."""
    import contextlib

    import torch

    ctx = getattr(torch.serialization, "safe_globals", None)
    if ctx is None:  # pragma: no cover - old torch: its default allow-list applies
        return contextlib.nullcontext()
    allowed = _allowed_globals()
    try:
        return ctx(allowed)
    except TypeError:  # pragma: no cover - torch without (obj, name) tuples
        return ctx([a for a in allowed if not isinstance(a, tuple)])




def _refused_global(msg: str) -> str:
    m = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", msg)
    if m:
        return m.group(1)
    m = re.search(r"GLOBAL ([\w.]+)", msg)
    return m.group(1) if m else ""


def _weights_only_reason(msg: str) -> str:
    """torch's specific reason inside its long weights-only error text."""
    m = re.search(r"WeightsUnpickler error:\s*(.+)", msg)
    if m and m.group(1).strip():
        return m.group(1).strip().splitlines()[0]
    boiler = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)",
              "In PyTorch 2.6", "WeightsUnpickler error")
    for ln in msg.splitlines():
        ln = ln.strip()
        if ln and not ln.startswith(boiler):
            return ln
    return "unsupported content"


def load_raw(path: str) -> Any:
    """``torch.load`` of an untrusted file, weights-only, with our small allow-list."""
    import pickle

    import torch

    if not os.path.exists(path):
        raise ModelError("checkpoint not found: %s" % path)
    if not os.path.isfile(path):
        raise ModelError("checkpoint is not a file: %s" % path)
    if os.path.getsize(path) == 0:
        raise ModelError("checkpoint is empty: %s" % path)
    name = os.path.basename(path)
    try:
        with _safe_globals_ctx(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, OSError, UnicodeDecodeError, ImportError) as e:
        msg = str(e)
        if "GLOBAL" in msg or "Weights only load failed" in msg:
            g = _refused_global(msg)
            if g:
                raise ModelError("%s: refused to load: the file references the Python object %s, which a "
                                 "weights-only checkpoint may not contain (untrusted pickle)" % (name, g))
            reason = _weights_only_reason(msg)
            if reason.startswith("Unsupported operand"):
                raise ModelError("%s is not a PyTorch checkpoint (weights-only unpickler: %s; plain pickle "
                                 "files and corrupt data are refused)" % (name, reason.lower()))
            raise ModelError("%s: refused to load as a weights-only checkpoint: %s" % (name, reason))
        if isinstance(e, (KeyError, EOFError, UnicodeDecodeError, IndexError)):
            detail = "neither a torch.save zip archive nor a legacy torch pickle"
        else:
            detail = first_line(e)
        raise ModelError("%s is not a PyTorch checkpoint (%s)" % (name, detail))


def _is_state_dict(obj: Any) -> bool:
    import torch

    return (isinstance(obj, dict) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def strip_prefixes(state: Dict[str, Any]) -> Dict[str, Any]:
    """Remove ``module.`` / ``_orig_mod.`` prefixes (repeatedly) from every key that has one."""
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in _STRIP_PREFIXES:
                if k.startswith(p):
                    k = k[len(p):]
                    changed = True
        if k in out:
            raise ModelError("state dict has key %r both with and without a module. prefix" % k)
        out[k] = v
    return out


def extract_state_dict(obj: Any, source: str = "checkpoint") -> Dict[str, Any]:
    """The model's state dict inside a loaded checkpoint object."""
    if _is_state_dict(obj):
        return strip_prefixes(dict(obj))
    if isinstance(obj, dict):
        for key in _STATE_KEYS:
            if _is_state_dict(obj.get(key)):
                return strip_prefixes(dict(obj[key]))
        keys = ", ".join(sorted(str(k) for k in obj)[:8])
        raise ModelError("%s holds no model state dict (a dict with keys: %s)" % (source, keys or "none"))
    raise ModelError("%s holds no model state dict (it contains a %s)" % (source, type(obj).__name__))


def load_checkpoint(path: str) -> Dict[str, Any]:
    """The (prefix-stripped) state dict of a checkpoint file: ``{name: Tensor}``."""
    obj = load_raw(path)
    return extract_state_dict(obj, os.path.basename(path))
