"""Where the real test/demo assets live: ``EDGEPOSE_ASSETS`` (default ``../shared/assets``)."""
import os
from typing import Optional

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assets_dir() -> Optional[str]:
    """The assets folder, or None when it is absent."""
    env = os.environ.get("EDGEPOSE_ASSETS")
    candidates = [env] if env else [os.path.join(os.getcwd(), "..", "shared", "assets"),
                                    os.path.join(_REPO_ROOT, "..", "shared", "assets")]
    for c in candidates:
        if c and os.path.isdir(c):
            return os.path.abspath(c)
    return None


def asset(*parts: str) -> Optional[str]:
    d = assets_dir()
    if d is None:
        return None
    p = os.path.join(d, *parts)
    return p if os.path.exists(p) else None
