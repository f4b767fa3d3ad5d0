"""Exceptions edgepose raises for bad input.

Every user-facing failure is an :class:`EdgeposeError` whose message is one line naming the
problem; the CLI prints it and exits non-zero without a traceback.
"""


class EdgeposeError(Exception):
    """A problem with the user's input (file, model, image, option) that edgepose can name."""


class ModelError(EdgeposeError):
    """A model file is missing, corrupt, or lacks what edgepose needs (metadata, outputs)."""


class InputError(EdgeposeError):
    """An input image, video, annotation file or array is missing, unreadable or malformed."""


class ExportError(EdgeposeError):
    """An export or conversion failed (verification, accuracy gate, unsupported option)."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """THE one-line form of an exception for a message: the first line of its text (at most
    ``limit`` characters), or its type's name when it has no text."""
    s = str(e).strip()
    return s.splitlines()[0][:limit] if s else type(e).__name__
