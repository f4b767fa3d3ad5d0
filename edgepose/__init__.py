"""edgepose: trained 2D human-pose networks from PyTorch to fast, correct edge deployment."""
from ._version import __version__
from .errors import EdgeposeError, ExportError, InputError, ModelError

__all__ = ["__version__", "EdgeposeError", "ExportError", "InputError", "ModelError"]
