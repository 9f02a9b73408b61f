"""The description of an ORTModelForCausalLM: structure from its config.json, sizes from its ONNX graph.

The structural keys come from invarlock_hf's ``config_structure``, the same function that serves the
PyTorch adapters, so the ONNX model and the checkpoint it was exported from are described alike.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Operators that ONNX Runtime's quantization tools (quantize_dynamic / quantize_static, MatMulNBits
# weight-only quantization) put into a graph; a full-precision export contains none of them.
QUANTIZED_OPERATORS = frozenset(
    {
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "DynamicQuantizeMatMul",
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "MatMulNBits",
        "QAttention",
        "QGemm",
        "QLinearMatMul",
        "QuantizeLinear",
    }
)
_DTYPE_NAMES = {"float": "float32", "double": "float64"}


@dataclass(frozen=True)
class GraphSummary:
    """What describe needs from an ONNX file, read without loading external weight data."""

    n_params: int
    dtype: str
    """The element type of most weights (``float32``, ``float16``, ``int8``...)."""
    opset: int
    files: dict[str, int]
    """The ONNX file and the external data files it points to, with their sizes in bytes."""
    quantized_operators: tuple[str, ...]


def describe_ort_model(model: Any) -> dict[str, Any]:
    """The full describe contract for an ``ORTModelForCausalLM``, plus an ``onnx`` block."""
    from invarlock_hf.structure import config_structure

    # A fresh copy of the config: ORT sets its live one's attention implementation to
    # "onnxruntime", which transformers refuses to build the meta-device model for tying from.
    config = type(model.config).from_dict(model.config.to_dict())
    structure = config_structure(config, role="causal")
    graph = read_graph(Path(model.path))
    quantization = (
        {"method": "onnx", "operators": list(graph.quantized_operators)}
        if graph.quantized_operators
        else None
    )
    return {
        **structure,
        "model_class": type(model).__name__,
        "n_params": graph.n_params,
        "dtype": graph.dtype,
        "device": str(model.device),
        "device_map": None,
        "tying": tied_weights(config) if structure["architecture_known"] else {},
        "quantization": quantization,
        "onnx": {
            "file": Path(model.path).name,
            "files": graph.files,
            "opset": graph.opset,
            "providers": list(model.providers),
            "past_key_values": bool(model.key_value_input_names),
            "dtype": str(model.dtype).removeprefix("torch."),
        },
    }


def read_graph(path: Path) -> GraphSummary:
    """Parameter count, weight dtype, opset, files and quantization operators of one ONNX file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    elements: Counter[str] = Counter()
    data_files: set[str] = set()
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            data_files.update(entry.value for entry in tensor.external_data if entry.key == "location")
        # Weights are never int64; int64 initializers are shapes and indices the exporter folded in.
        if tensor.data_type != onnx.TensorProto.INT64:
            elements[_dtype_name(tensor.data_type)] += math.prod(tensor.dims)
    opset = next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    files = {path.name: path.stat().st_size}
    files.update({name: (path.parent / name).stat().st_size for name in sorted(data_files)})
    return GraphSummary(
        n_params=sum(elements.values()),
        dtype=elements.most_common(1)[0][0] if elements else "float32",
        opset=opset,
        files=files,
        quantized_operators=tuple(sorted(_operators(proto.graph) & QUANTIZED_OPERATORS)),
    )


def tied_weights(config: Any) -> dict[str, str]:
    """Tied tensor names as the PyTorch model names them, from a weightless (meta device) build of config."""
    import torch
    from transformers import AutoModelForCausalLM

    from invarlock_hf.describe import tied_pairs

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    return tied_pairs(skeleton)


def _operators(graph: Any) -> set[str]:
    """Every operator type in ``graph`` and its subgraphs (the branches of a merged decoder's If)."""
    found: set[str] = set()
    for node in graph.node:
        found.add(node.op_type)
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.HasField("g") else []
            for subgraph in [*subgraphs, *attribute.graphs]:
                found |= _operators(subgraph)
    return found


def _dtype_name(data_type: int) -> str:
    import onnx

    name = str(onnx.TensorProto.DataType.Name(data_type)).lower()
    return _DTYPE_NAMES.get(name, name)
