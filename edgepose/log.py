"""edgepose's log: one logger, ``logging.getLogger("edgepose")``.

Library code reports progress with ``logger.info`` (the Python default shows warnings only);
the command line shows INFO on stderr as ``edgepose: message`` (``-v``: DEBUG too, ``-q``:
warnings and errors only).
"""
import logging
import sys

logger = logging.getLogger("edgepose")

__all__ = ["logger", "configure", "quiet_root_warnings", "progress_bar"]


class quiet_root_warnings:
    """Within: warnings other libraries send through the *root* logger (onnxruntime's quantizer
    says "Please consider to run pre-processing" on every call) are dropped, and their
    ``logging.warning()`` finds a handler, so it does not ``basicConfig`` the root logger."""

    def __enter__(self):
        self.root = logging.getLogger()
        self.added = None
        if not self.root.handlers:
            self.added = logging.NullHandler()
            self.root.addHandler(self.added)
        return self

    def __exit__(self, *exc):
        if self.added is not None:
            self.root.removeHandler(self.added)
        return False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test capture swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure(verbosity: int = 0) -> None:
    """Show edgepose's log on stderr: INFO (0), DEBUG (> 0), WARNING (< 0)."""
    level = logging.DEBUG if verbosity > 0 else (logging.WARNING if verbosity < 0 else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("edgepose: %(message)s"))
        logger.addHandler(h)
    logger.setLevel(level)
    logger.propagate = False    # another library's logging.basicConfig must not print it twice


def progress_bar(iterable=None, total=None, desc: str = "", unit: str = "it", initial: int = 0,
                 enabled=None):
    """THE optional progress bar: a tqdm bar on stderr, or None when it is off (``enabled``
    False, or None and stderr is not a terminal) or tqdm is not installed (the runtime does not
    need it). Callers wrap ``iterable`` themselves when None comes back."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr)
