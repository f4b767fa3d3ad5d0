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
