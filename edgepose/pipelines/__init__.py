"""Pipelines: ``load_estimator(path)`` builds the right one from the model's metadata
(``family``: bottom-up, top-down, one-stage, regression).

One shape for all of them (the estimators and the person detector):
``infer(img, ...)`` is preprocessing + inference (the raw maps or output, the transform back to
the image, and the two stage times), ``decode(...)`` turns those into image-space results, and
calling the object does both and records ``timings``.

The estimator protocol that the video pipeline, the runner, Ray and ``edgepose.load`` rely on
(no caller tests the family):

- ``meta``: the model's :class:`edgepose.metadata.ModelMeta`;
- ``__call__(img) -> PoseResult`` (top-down and regression also take ``boxes=``, ``box_scores=``);
- optionally ``stages() -> (infer, finish)``: two callables with ``finish(infer(img)) ==
  self(img)``, the first holding the backend, the second only CPU post-processing, so that the
  video pipeline overlaps them in two threads; an estimator without it runs whole in one stage."""
from typing import Optional, Sequence

from ..backends import companion_backend, load_backend
from ..errors import InputError
from .bottomup import BottomUpEstimator, require_meta

__all__ = ["BottomUpEstimator", "load_estimator"]


def load_estimator(model: str, detector: Optional[str] = None, threads: Optional[int] = None,
                   providers: Optional[Sequence[str]] = None, exact_int8: bool = False,
                   backend: Optional[str] = None, detector_backend: Optional[str] = None, **options):
    """A bottom-up or top-down estimator for ``model``, picked from its metadata.

    Top-down models need a person detector (``detector`` path) or boxes given per call.
    ``exact_int8``: run an INT8 Q/DQ ONNX model exactly as written (see
    :class:`edgepose.backends.onnxruntime.OrtBackend`), not with this CPU's int8 kernels.
    ``backend``: the pose model's runtime (None / "auto": by file type; "openvino" runs an .onnx
    model with OpenVINO). ``detector_backend``: the person detector's (None: ``backend`` where it
    reads the detector's file type, else by file type; see
    :func:`edgepose.backends.companion_backend`).
    """
    detector_backend = companion_backend(detector, backend, detector_backend)
    backend = load_backend(model, threads=threads, providers=providers, exact_int8=exact_int8,
                           backend=backend)
    meta = require_meta(backend)
    if meta.family == "bottomup":
        if detector is not None or detector_backend is not None:
            raise InputError("a bottom-up model finds the people itself: --detector does not apply")
        return BottomUpEstimator(backend, **options)
    if meta.family == "onestage":
        from .onestage import OneStageEstimator

        if detector is not None or detector_backend is not None:
            raise InputError("a one-stage model finds the people itself: --detector does not apply")
        options.pop("detector_spec", None)
        return OneStageEstimator(backend, **options)
    if meta.family == "regression":
        from .regression import RegressionEstimator

        return RegressionEstimator(backend, detector=detector, threads=threads, providers=providers,
                                   detector_backend=detector_backend, **options)
    from .topdown import TopDownEstimator

    return TopDownEstimator(backend, detector=detector, threads=threads, providers=providers,
                            detector_backend=detector_backend, **options)
