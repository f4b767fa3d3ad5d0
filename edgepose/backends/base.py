"""The backend interface: load a model file, describe its tensors, run named arrays."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..metadata import ModelMeta


class TensorSpec:
    """Name, shape (``None`` or a string for a dynamic dimension) and numpy dtype of a tensor."""

    def __init__(self, name: str, shape: Sequence, dtype):
        self.name = name
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    def __repr__(self) -> str:
        return "TensorSpec(%r, %s, %s)" % (self.name, self.shape, self.dtype)


class Backend:
    """A loaded model. Subclasses set ``name``, ``path``, ``meta``, ``inputs``, ``outputs``."""

    name = "base"

    def __init__(self) -> None:
        self.path: str = ""
        self.meta: Optional[ModelMeta] = None
        self.inputs: "List[TensorSpec]" = []
        self.outputs: "List[TensorSpec]" = []

    def run(self, feeds: Dict[str, np.ndarray],
            output_names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    @property
    def input_name(self) -> str:
        return self.inputs[0].name

    def describe(self) -> str:
        return "%s backend: %s" % (self.name, self.path)
