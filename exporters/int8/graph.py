"""ONNX graph helpers of the INT8 machinery: loading, saving and running a model, and the
node/tensor queries every rewrite uses (consumers, producers, use counts, attributes, the
topological order)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

from edgepose.errors import ExportError, first_line

__all__ = ["load_model", "save_atomic", "cpu_session", "input_name", "float_tensors", "quantizable_nodes",
           "augment_outputs", "consumers", "use_counts", "copy_model", "producers", "conv_group", "node_attr",
           "toposort"]


def load_model(model) :
    import onnx
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(model):
            raise ExportError("model file not found: %s" % model)
        try:
            return onnx.load(os.fspath(model))
        except Exception as e:
            raise ExportError("%s is not a readable ONNX model: %s" % (model, first_line(e)))
    return model


def save_atomic(model, out: str) -> None:
    import onnx

    from edgepose.files import atomic_path

    with atomic_path(out) as tmp:
        onnx.save(model, tmp)


def cpu_session(model_bytes_or_path, threads: Optional[int] = None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        so.intra_op_num_threads = int(threads)
    return ort.InferenceSession(model_bytes_or_path, sess_options=so, providers=["CPUExecutionProvider"])


def input_name(model) -> str:
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if len(names) != 1:
        raise ExportError("quantization supports models with one input, this one has %d" % len(names))
    return names[0]


def float_tensors(model) -> List[str]:
    """Activation tensors (non-initializer node inputs/outputs) that are float32."""
    import onnx
    from onnx import shape_inference
    inits = {i.name for i in model.graph.initializer}
    try:
        inferred = shape_inference.infer_shapes(model)
        vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.input)
              + list(inferred.graph.output)}
    except Exception:
        vi = {}
    names: List[str] = []
    seen = set()
    consts = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    for n in model.graph.node:
        for t in list(n.input) + list(n.output):
            if not t or t in inits or t in consts or t in seen:
                continue
            v = vi.get(t)
            if v is not None and v.type.tensor_type.elem_type not in (0, onnx.TensorProto.FLOAT):
                continue
            seen.add(t)
            names.append(t)
    return names


def quantizable_nodes(model, op_types: Sequence[str] = ("Conv",)) -> List[str]:
    model = load_model(model)
    return [n.name for n in model.graph.node if n.op_type in op_types]


def augment_outputs(model, tensors: Sequence[str]):
    import onnx
    from onnx import helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(t))
    return m


def consumers(model) -> Dict[str, List[Any]]:
    cons: Dict[str, List[Any]] = {}
    for n in model.graph.node:
        for t in n.input:
            cons.setdefault(t, []).append(n)
    return cons


def use_counts(model) -> Dict[str, int]:
    """How many node inputs read each tensor."""
    uses: Dict[str, int] = {}
    for n in model.graph.node:
        for t in n.input:
            uses[t] = uses.get(t, 0) + 1
    return uses


def copy_model(model):
    """A deep copy of a ModelProto (or of the model at a path) to rewrite."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(load_model(model))
    return m


def producers(model) -> Dict[str, Any]:
    return {t: n for n in model.graph.node for t in n.output}


def conv_group(node) -> int:
    for a in node.attribute:
        if a.name == "group":
            return int(a.i)
    return 1


def node_attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            from onnx import helper
            return helper.get_attribute_value(a)
    return default


def toposort(m) -> None:
    produced = {i.name for i in m.graph.input} | {i.name for i in m.graph.initializer}
    pending = list(m.graph.node)
    order = []
    while pending:
        rest = []
        for n in pending:
            if all((not t) or t in produced for t in n.input):
                order.append(n)
                produced.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            order.extend(rest)
            break
        pending = rest
    nodes = [type(order[0])() for _ in order] if order else []
    for dst, src in zip(nodes, order):
        dst.CopyFrom(src)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
