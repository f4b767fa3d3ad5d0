"""What several benchmark scripts share: the checkout on ``sys.path`` (they run as scripts, from
any folder), the assets folder or a one-line exit, and the foreign TFLite models imported with
their example specs.

    from common import REPO, assets_or_exit, import_foreign   # in benchmarks/NAME.py
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def assets_or_exit() -> str:
    """The assets folder (``EDGEPOSE_ASSETS``, default ``../shared/assets``), or exit saying so."""
    from edgepose.assets import assets_dir

    d = assets_dir()
    if d is None:
        sys.exit("assets not found (EDGEPOSE_ASSETS)")
    return d


def import_foreign(tmp: str, assets: str, model: str, spec: str) -> str:
    """``assets/models/foreign/MODEL.tflite`` imported with ``examples/SPEC.spec.json`` into
    ``tmp/MODEL.tflite`` (once: an existing one is reused); returns its path."""
    from edgepose.exporters import export

    out = os.path.join(tmp, model + ".tflite")
    if not os.path.exists(out):
        export(os.path.join(assets, "models", "foreign", model + ".tflite"), target="tflite", out=out,
               spec=os.path.join(REPO, "examples", spec + ".spec.json"), progress=False)
    return out
