"""What hf_bnb adds to the Hugging Face description: the bitsandbytes quantization, read from the layers.

``method`` and ``bits`` come from :func:`invarlock_hf.quantization.detect_quantization` through
the description invarlock-hf builds; the settings below are read from the quantized layers
themselves, so they say what the model computes with, not only what its config asked for.
"""

from __future__ import annotations

from typing import Any

from invarlock_bnb.layers import bnb_layers, is_int8_layer, layer_layouts, quantized_4bit_state

# Config fields detect_quantization copies that the layer-read keys below restate.
_RESTATED_CONFIG_FIELDS = (
    "bnb_4bit_quant_type",
    "bnb_4bit_use_double_quant",
    "bnb_4bit_compute_dtype",
    "llm_int8_threshold",
)


def complete_description(model: Any, description: dict[str, Any]) -> dict[str, Any]:
    """``description`` with its ``quantization`` block completed and 4-bit weights counted unpacked."""
    block = dict(description.get("quantization") or {"method": "bitsandbytes"})
    for field in _RESTATED_CONFIG_FIELDS:
        block.pop(field, None)
    block.update(quantization_details(model))
    return {
        **description,
        "quantization": block,
        "n_params": description["n_params"] + _packed_4bit_shortfall(model),
    }


def quantization_details(model: Any) -> dict[str, Any]:
    """Bits, quant type, double quantization, compute dtype, block size, outlier threshold and
    which linear modules are quantized or were left in full precision.

    A setting that differs between layers is reported as the sorted list of its values.
    """
    layers = bnb_layers(model)
    details: dict[str, Any] = {
        "quantized_modules": list(layers),
        "full_precision_modules": _full_precision_linears(model),
    }
    if not layers:
        return details
    layouts = layer_layouts(model)
    per_layer: dict[str, list[Any]] = {
        key: []
        for key in ("bits", "quant_type", "double_quant", "compute_dtype", "blocksize", "outlier_threshold")
    }
    for name, module in layers.items():
        layout = layouts[name]
        int8 = is_int8_layer(module)
        per_layer["bits"].append(layout["bits"])
        per_layer["quant_type"].append("int8" if int8 else layout.get("quant_type"))
        per_layer["double_quant"].append(False if int8 else layout.get("nested", False))
        per_layer["compute_dtype"].append(None if int8 else _dtype_name(module.compute_dtype))
        per_layer["blocksize"].append(None if int8 else layout.get("blocksize"))
        per_layer["outlier_threshold"].append(layout["threshold"] if int8 else None)
    return {key: _one_or_all(values) for key, values in per_layer.items()} | details


def _one_or_all(values: list[Any]) -> Any:
    distinct = sorted(set(values), key=repr)
    return distinct[0] if len(distinct) == 1 else distinct


def _dtype_name(dtype: Any) -> str | None:
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _full_precision_linears(model: Any) -> list[str]:
    """Linear modules bitsandbytes could have quantized but did not (skipped modules, ``lm_head``)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    quantized = set(bnb_layers(model))
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, Conv1D)) and name not in quantized
    ]


def _packed_4bit_shortfall(model: Any) -> int:
    """How many parameters the packed 4-bit weights (two per byte) hide from ``numel()``."""
    shortfall = 0
    for module in bnb_layers(model).values():
        state = None if is_int8_layer(module) else quantized_4bit_state(module)
        if state is not None:
            logical = 1
            for size in state.shape:
                logical *= int(size)
            shortfall += logical - module.weight.numel()
    return shortfall
