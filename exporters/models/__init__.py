"""PyTorch pose models whose state dicts match the upstream checkpoints.

``ARCHS`` names the architectures ``--arch`` accepts. :func:`build_model` builds the model for a
(prefix-stripped) state dict, loads it strictly and returns it in eval mode together with its
deployment wrapper and the configuration read from the tensors.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from edgepose.errors import ModelError

ARCHS = ("lightweight-openpose", "hrnet")
_ALIASES = {
    "lightweight-openpose": "lightweight-openpose", "lightweight_openpose": "lightweight-openpose",
    "lw-openpose": "lightweight-openpose", "openpose": "lightweight-openpose",
    "hrnet": "hrnet", "pose_hrnet": "hrnet", "pose-hrnet": "hrnet",
    "hrnet-w32": "hrnet", "hrnet-w48": "hrnet", "hrnet_w32": "hrnet", "hrnet_w48": "hrnet",
}


def canonical_arch(arch: str) -> str:
    try:
        return _ALIASES[str(arch).strip().lower()]
    except KeyError:
        raise ModelError("unknown architecture %r (known: %s)" % (arch, ", ".join(ARCHS)))


def detect_arch(state: Dict) -> Optional[str]:
    """The architecture whose keys the state dict has, or None."""
    from . import hrnet, lightweight_openpose
    if lightweight_openpose.looks_like(state):
        return "lightweight-openpose"
    if hrnet.looks_like(state):
        return "hrnet"
    return None


def _load_strict(model, state: Dict, arch: str, source: str) -> None:
    """Strict key/shape match; BN ``num_batches_tracked`` buffers may be absent (old torch)."""
    import torch

    target = model.state_dict()
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    shape_bad = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or shape_bad:
        parts = []
        if missing:
            parts.append("%d missing (e.g. %s)" % (len(missing), missing[0]))
        if unexpected:
            parts.append("%d unexpected (e.g. %s)" % (len(unexpected), unexpected[0]))
        if shape_bad:
            k = shape_bad[0]
            parts.append("%d with wrong shape (e.g. %s: %s, expected %s)"
                         % (len(shape_bad), k, tuple(state[k].shape), tuple(target[k].shape)))
        raise ModelError("%s: weights do not fit %s: %s" % (source, arch, "; ".join(parts)))
    full = dict(state)
    for k in target:
        if k not in full:
            full[k] = torch.zeros_like(target[k])
    for k, v in full.items():
        if not v.is_floating_point() and target[k].is_floating_point():
            raise ModelError("%s: tensor %s has dtype %s, expected floating point" % (source, k, v.dtype))
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in full.items()}, strict=True)


def unwrap_state(state: Dict) -> Dict:
    """A state dict whose every key carries the same wrapper prefix (PyTorch Lightning's
    ``model.`` / ``net.``: the LightningModule's attribute) with that prefix removed, when the
    result is a known architecture and the original is not; else ``state`` unchanged."""
    cur = state
    for _ in range(2):
        if detect_arch(cur) is not None:
            return cur
        firsts = {k.split(".", 1)[0] for k in cur}
        if len(firsts) != 1 or not all("." in k for k in cur):
            return state
        p = next(iter(firsts)) + "."
        cur = {k[len(p):]: v for k, v in cur.items()}
    return cur if detect_arch(cur) is not None else state


def build_model(arch: Optional[str], state: Dict, source: str = "checkpoint") -> Tuple[object, object, Dict]:
    """(model, export_wrapper, config) for a state dict; ``arch`` None → detected from the keys.
    Keys under one wrapper prefix (Lightning's ``model.``) are unwrapped first."""
    state = unwrap_state(state)
    detected = detect_arch(state)
    if arch is None:
        if detected is None:
            raise ModelError("%s: cannot tell the architecture from its keys (e.g. %s); pass --arch %s"
                             % (source, next(iter(state), "(empty)"), "|".join(ARCHS)))
        arch = detected
    arch = canonical_arch(arch)
    if detected is not None and detected != arch:
        raise ModelError("%s holds %s weights, not %s" % (source, detected, arch))
    if arch == "lightweight-openpose":
        from .lightweight_openpose import LightweightOpenPoseExport, build_from_state_dict
        if detected is None:
            raise ModelError("%s: weights do not fit lightweight-openpose (no cpm/initial_stage weights; "
                             "keys look like %s)" % (source, next(iter(state), "(empty)")))
        model, cfg = build_from_state_dict(state)
        _load_strict(model, state, arch, source)
        wrapper = LightweightOpenPoseExport(model)
    else:
        from .hrnet import build_from_state_dict
        if detected is None:
            raise ModelError("%s: weights do not fit hrnet (no transition1/final_layer weights; "
                             "keys look like %s)" % (source, next(iter(state), "(empty)")))
        model, cfg = build_from_state_dict(state)
        _load_strict(model, state, arch, source)
        wrapper = model
    model.eval()
    wrapper.eval()
    cfg = dict(cfg)
    cfg["arch"] = arch
    return model, wrapper, cfg
