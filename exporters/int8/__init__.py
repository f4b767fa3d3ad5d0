"""INT8 machinery shared by the INT8 targets (cpu-int8, jetson-int8, rpi-int8), by concern.

Modules, each importing only those listed before it:

- :mod:`.graph`: ONNX graph helpers (load/save/run a model; consumers, producers, use counts,
  attributes, topological order).
- :mod:`.stats`: range statistics (:class:`~.stats.QuantStats`, :func:`~.stats.collect_stats`),
  range methods, onnxruntime's calibrators.
- :mod:`.rewrites`: exact float rewrites (1x1 depthwise folding, cross-layer and concat-aware
  equalization).
- :mod:`.bias`: sequential empirical bias correction.
- :mod:`.qdq`: writing the Q/DQ model (:func:`~.qdq.quantize_qdq`, :func:`~.qdq.prepare_model`).
- :mod:`.units`: mixed-precision units, their MACs and sensitivity.
- :mod:`.kernels`: this host's int8 kernel class and the cpu-int8 format choice.
- :mod:`.gate`: the accuracy measurement, the gate's verdict and final line, the speed on this host.
- :mod:`.report`: the report as text, JSON and the comparison PNG.
- :mod:`.search`: :func:`~.search.gated_quantize`, the quantize-gate-search road of every target.
- :mod:`.options`: :class:`~.options.ExportOptions`, the one options object of every target.

Nothing is imported here: ``import edgepose.exporters.int8.options`` stays cheap.
"""
