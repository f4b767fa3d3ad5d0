"""The public runtime API: ``edgepose.load(path)`` gives one callable for any exported model.

    import edgepose
    pose = edgepose.load("model.onnx")           # .onnx, .tflite, TensorRT bundle/engine
    result = pose("people.jpg")                  # a path or a BGR uint8 array
    cv2.imwrite("drawn.jpg", result.draw())      # result.people, result.to_coco(), ...

``load`` picks the pipeline from the model's own metadata (bottom-up, top-down with a person
detector or boxes, and the other families :func:`edgepose.pipelines.load_estimator` knows), so
the caller never names the family. Everything the pipeline has (``meta``, ``timings``, ``infer``,
``decode``, ...) stays reachable on the returned object.
"""
import os
from typing import Optional, Sequence, Union

import numpy as np

from .errors import InputError
from .results import PoseResult

__all__ = ["Pose", "load"]


def _as_image(image) -> "tuple":
    """(BGR uint8 HxWx3 array, source path or None) from a path or an array, or InputError."""
    if isinstance(image, (str, bytes, os.PathLike)):
        from .io import read_image

        path = os.fsdecode(image)
        return read_image(path), path
    if not isinstance(image, np.ndarray):
        raise InputError("expected an image path or a numpy array, got %s" % type(image).__name__)
    if image.ndim == 2:
        import cv2

        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError("expected an HxWx3 BGR image array, got shape %s" % (image.shape,))
    if image.dtype != np.uint8:
        raise InputError("expected a uint8 image array, got %s" % image.dtype)
    if image.shape[2] == 4:
        image = np.ascontiguousarray(image[:, :, :3])
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError("image is too small (%dx%d)" % (image.shape[1], image.shape[0]))
    return image, None


class Pose:
    """What :func:`load` returns: call it with an image (path or BGR array) to get a
    :class:`edgepose.results.PoseResult` that remembers its image (``.draw()``)."""

    def __init__(self, estimator):
        self.estimator = estimator

    def __call__(self, image, **kw) -> PoseResult:
        img, path = _as_image(image)
        result = self.estimator(img, **kw)
        result.image = img
        result.source = path
        return result

    @property
    def family(self) -> str:
        return self.estimator.meta.family

    def __getattr__(self, name):
        # only called for names Pose itself lacks: the pipeline's meta, timings, infer, decode...
        if name == "estimator":
            raise AttributeError(name)
        return getattr(self.estimator, name)

    def __repr__(self) -> str:
        path = getattr(getattr(self.estimator, "backend", None), "path", "?")
        return "Pose(%s, family=%s)" % (path, self.family)


def load(model: Union[str, "os.PathLike"], detector: Optional[str] = None,
         threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
         exact_int8: bool = False, backend: Optional[str] = None, **options) -> Pose:
    """Load an exported model (its metadata says how to run it) as a :class:`Pose`.

    ``detector``: a person detector for top-down models (or pass ``boxes=`` per call);
    ``threads``/``providers``: the backend's; ``exact_int8``: run a Q/DQ ONNX model with the
    device's exact integer arithmetic instead of this CPU's int8 kernels; ``backend``: None /
    "auto" (by file type), "onnxruntime", "openvino" (an .onnx model, ``pip install
    'edgepose[openvino]'``), "tflite" or "tensorrt"; ``detector_backend``: the detector's (default:
    ``backend`` where it reads the detector's file type, else by file type); other keywords are the pipeline's decode
    options (e.g. ``refine="dark"``)."""
    from .pipelines import load_estimator

    return Pose(load_estimator(os.fspath(model), detector=detector, threads=threads,
                               providers=providers, exact_int8=exact_int8, backend=backend,
                               **options))
