"""Bottom-up pipeline: one inference per frame, peaks + PAF grouping in the C++ core."""
import time
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..backends import Backend, load_backend
from ..errors import InputError, ModelError
from ..metadata import DECODE_DEFAULTS, ModelMeta, check_against_model
from ..preprocess import preprocess_bottomup
from ..results import PoseResult


def require_meta(backend: Backend, family: Optional[str] = None) -> ModelMeta:
    meta = backend.meta
    if meta is None:
        raise ModelError(
            "%s has no edgepose metadata: import it first with "
            "`edgepose export MODEL.onnx --spec SPEC.json --target onnx -o OUT.onnx`" % backend.path)
    if family is not None and meta.family != family:
        raise ModelError("%s is a %s model, expected %s" % (backend.path, meta.family, family))
    return meta


def first_item(arr: np.ndarray, what: str) -> np.ndarray:
    """Batch item 0 of a 4-D network output, as it is (a view: the decode reads NCHW and NHWC
    maps in place); float32, C-contiguous (a no-op for what the backends return)."""
    if arr.ndim != 4:
        raise ModelError("%s output must be 4-D, got shape %s" % (what, arr.shape))
    return np.ascontiguousarray(arr[0], dtype=np.float32)


class BottomUpEstimator:
    """Estimate poses of everybody in an image with a bottom-up (heatmaps + PAFs) model.

    ``model``: a path (``.onnx``, ``.tflite``, TensorRT bundle/engine) or a loaded Backend.
    ``height``: model input height for dynamic-size models (default: the metadata's).
    Decode options (``refine``, ``peak_threshold``, ... see ``metadata.DECODE_DEFAULTS``)
    override the model's defaults.
    """

    def __init__(self, model: Union[str, Backend], threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, height: Optional[int] = None,
                 **decode_overrides):
        self.backend = model if isinstance(model, Backend) else load_backend(
            model, threads=threads, providers=providers)
        self.meta = require_meta(self.backend, "bottomup")
        check_against_model(self.meta, self.backend.inputs, self.backend.outputs,
                            getattr(self.backend, "path", "model"))
        unknown = set(decode_overrides) - set(DECODE_DEFAULTS["bottomup"])
        if unknown:
            raise InputError("unknown bottom-up decode option(s): %s" % ", ".join(sorted(unknown)))
        opts = {k: self.meta.decode[k] for k in DECODE_DEFAULTS["bottomup"] if k in self.meta.decode}
        opts.update({k: v for k, v in decode_overrides.items() if v is not None})
        self.decode_options = opts
        if height is not None:
            stride = int(self.meta.stride)
            if not self.meta.input.get("dynamic_hw", False):
                raise InputError("height=%s: %s has a fixed input size %dx%d (export with --dynamic "
                                 "to choose the size at run time)" % (height, getattr(self.backend, "path", "the model"),
                                                                       self.meta.input["height"], self.meta.input["width"]))
            if int(height) != height or height < stride or int(height) % stride:
                raise InputError("height=%s must be a positive multiple of the model's stride %d"
                                 % (height, stride))
        self.height = height
        self.limbs = np.asarray(self.meta.get("limbs"), np.int64).reshape(-1, 4)
        outs = self.meta.outputs
        self._hm = outs["heatmaps"]
        self._paf = outs["pafs"]
        names = {o.name for o in self.backend.outputs}
        for o in (self._hm, self._paf):
            if o["name"] not in names:
                raise ModelError("model output %r named in its metadata is missing (outputs: %s)"
                                 % (o["name"], ", ".join(sorted(names))))
        self._out_names = [self._hm["name"], self._paf["name"]]
        lay = lambda o: "HWC" if o.get("layout", "NCHW") == "NHWC" else "CHW"  # noqa: E731
        self._hm_layout, self._paf_layout = lay(self._hm), lay(self._paf)
        self.map_layouts = (self._hm_layout, self._paf_layout)
        self._offset = float(self.meta.get("heatmap_offset", 0.5))

    def infer(self, img: np.ndarray) -> Tuple[np.ndarray, np.ndarray, object, float, float]:
        """Preprocess + inference: (heatmaps, pafs, transform, pre_ms, inf_ms); the maps are batch
        item 0 of the outputs in the model's layout (``self.map_layouts``: ``[K,H,W]`` / ``[2L,H,W]``
        for CHW, ``[H,W,K]`` / ``[H,W,2L]`` for HWC), not copied."""
        t0 = time.perf_counter()
        x, tr = preprocess_bottomup(img, self.meta, self.height)
        t1 = time.perf_counter()
        outs = self.backend.run({self.backend.input_name: x}, self._out_names)
        t2 = time.perf_counter()
        hm = first_item(outs[self._hm["name"]], "heatmaps")
        paf = first_item(outs[self._paf["name"]], "pafs")
        return hm, paf, tr, (t1 - t0) * 1e3, (t2 - t1) * 1e3

    def decode(self, hm: np.ndarray, paf: np.ndarray, tr) -> Tuple[np.ndarray, np.ndarray]:
        """Heatmaps + PAFs (as :meth:`infer` returns them) → people ``[P,K,3]`` in image pixels
        (missing keypoints ``(-1, -1, 0)``) and person scores: one call into the C++ decode,
        which reads the maps in their layout and maps heatmap pixels to image pixels itself."""
        from .. import decode

        # heatmap -> input pixels: x_in = (x + o) * stride - o; input -> image: (x_in + 0.5) / k - 0.5
        s, o, k = float(self.meta.stride), self._offset, float(tr.scale)
        b = (o * (s - 1.0) + 0.5) / k - 0.5
        if self._paf_layout != self._hm_layout:   # mixed layouts (no known model): one transpose
            paf = np.ascontiguousarray(paf.transpose((1, 2, 0) if self._hm_layout == "HWC" else (2, 0, 1)))
        return decode.decode_bottomup(hm, paf, self.limbs, layout=self._hm_layout,
                                      affine=(s / k, b, s / k, b), **self.decode_options)

    def finish(self, inferred) -> PoseResult:
        """The people of :meth:`infer`'s output (decode + the result; the video pipeline runs
        this stage in its own thread)."""
        hm, paf, tr, pre_ms, inf_ms = inferred
        t0 = time.perf_counter()
        people, scores = self.decode(hm, paf, tr)
        m = self.meta
        return PoseResult(people, scores, m.keypoints, m.get("skeleton", []), m.get("to_coco17"),
                          timings={"preprocess_ms": pre_ms, "inference_ms": inf_ms,
                                   "postprocess_ms": (time.perf_counter() - t0) * 1e3})

    def __call__(self, img: np.ndarray) -> PoseResult:
        return self.finish(self.infer(img))

    def stages(self):
        """(infer, finish): the video pipeline overlaps inference and decode (see
        :mod:`edgepose.pipelines`)."""
        return self.infer, self.finish
