"""What hf_compressed adds to the Hugging Face description: the compressed-tensors schemes.

``method`` and ``format`` come from :func:`invarlock_hf.quantization.detect_quantization`
through the description invarlock-hf builds. The rest is read from the modules themselves (the
scheme compressed-tensors attached to each) and from the config for what only it states (its
``ignore`` patterns, sparsity, the KV-cache scheme), so the block says what the model computes
with, one entry per scheme.
"""

from __future__ import annotations

from typing import Any

from invarlock_compressed.loading import decompressed_because
from invarlock_compressed.modules import is_compressed, module_format, quantized_modules

_DECOMPRESS_HOOK = "ct_decompress_hook"  # the attribute compressed-tensors keeps its hook handle in
# Per-module tensors compressed-tensors adds next to (or instead of) a weight.
_QUANTIZATION_TENSORS = ("_scale", "_zero_point", "_global_scale", "_g_idx", "_packed", "_shape")


def complete_description(model: Any, description: dict[str, Any]) -> dict[str, Any]:
    """``description`` with its ``quantization`` block completed and weights counted unpacked."""
    block = dict(description.get("quantization") or {"method": "compressed-tensors"})
    block.update(quantization_details(model))
    return {
        **description,
        "quantization": block,
        "n_params": description["n_params"] + _parameter_count_correction(model),
        "dtype": _compute_dtype(model, description["dtype"]),
    }


def quantization_details(model: Any) -> dict[str, Any]:
    """Schemes (format, bits, group size, symmetry, activations, modules), ignored modules,
    sparsity and whether the weights are held compressed."""
    modules = quantized_modules(model)
    settings = _config_settings(model)
    schemes: dict[str, dict[str, Any]] = {}
    for name, module in modules.items():
        scheme = module.quantization_scheme
        key = repr(scheme.model_dump(mode="json", exclude={"targets"}))
        if key not in schemes:
            schemes[key] = _scheme_entry(scheme, module_format(module), settings)
        schemes[key]["modules"].append(name)
    compressed = [name for name, module in modules.items() if is_compressed(module)]
    why = decompressed_because(model)
    entries = list(schemes.values())
    bits = sorted({entry["bits"] for entry in entries if entry["bits"] is not None})
    return {
        "bits": bits[0] if len(bits) == 1 else (bits or None),
        "schemes": entries,
        "ignore": list(settings.get("ignore") or []),
        "ignored_modules": _unquantized_linears(model, modules),
        "sparsity": settings.get("sparsity_config") or None,
        "kv_cache_scheme": settings.get("kv_cache_scheme"),
        "compressed_in_memory": bool(compressed) and len(compressed) == len(modules),
        # Loaded without hf_compressed: compressed-tensors' hook is still there.
        "decompresses_at_first_pass": hasattr(model, _DECOMPRESS_HOOK),
        "decompressed": why if why is not None else _decompressed_since_load(modules, compressed),
    }


def _scheme_entry(scheme: Any, format_name: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    weights = scheme.weights
    return {
        "name": _group_name(scheme, settings),
        "format": format_name,
        "bits": None if weights is None else weights.num_bits,
        "type": None if weights is None else _plain(weights.type),
        "strategy": None if weights is None else _plain(weights.strategy),
        "group_size": None if weights is None else weights.group_size,
        "symmetric": None if weights is None else weights.symmetric,
        "input_activations": _activation(scheme.input_activations),
        "output_activations": _activation(scheme.output_activations),
        "targets": list(scheme.targets),
        "modules": [],
    }


def _activation(args: Any) -> dict[str, Any] | None:
    if args is None:
        return None
    return {
        "bits": args.num_bits,
        "type": _plain(args.type),
        "strategy": _plain(args.strategy),
        "dynamic": _plain(args.dynamic),
        "symmetric": args.symmetric,
    }


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def _config_settings(model: Any) -> dict[str, Any]:
    config = model.config.quantization_config
    to_dict = getattr(config, "to_dict", None)
    settings = dict(to_dict()) if callable(to_dict) else dict(config)
    nested = settings.get("quantization_config")  # CompressedTensorsConfig keeps the CT config inside
    if isinstance(nested, dict):
        settings = {**nested, **{k: v for k, v in settings.items() if k not in nested and v is not None}}
    return settings


def _group_name(scheme: Any, settings: dict[str, Any]) -> str | None:
    """The config group (``group_0``...) this scheme came from, matched on everything but targets."""
    mine = scheme.model_dump(mode="json", exclude={"targets", "format"})
    for name, group in (settings.get("config_groups") or {}).items():
        theirs = {k: v for k, v in dict(group).items() if k not in ("targets", "format")}
        if all(mine.get(k) == v for k, v in theirs.items()) and sorted(group.get("targets", [])) == sorted(
            scheme.targets
        ):
            return str(name)
    return None


def _decompressed_since_load(modules: dict[str, Any], compressed: list[str]) -> str | None:
    if not modules or len(compressed) == len(modules):
        return None
    decompressed = len(modules) - len(compressed)
    return f"{decompressed} of {len(modules)} quantized modules were decompressed after loading"


def _unquantized_linears(model: Any, quantized: dict[str, Any]) -> list[str]:
    """Linear modules compressed-tensors left in full precision (its ``ignore`` list, ``lm_head``...)."""
    import torch

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name not in quantized
    ]


def _parameter_count_correction(model: Any) -> int:
    """Weights counted as the full-precision original has them: scales, zero points and packing
    words out, each compressed weight's logical size in."""
    correction = 0
    for module in quantized_modules(model).values():
        for name, parameter in module.named_parameters(recurse=False):
            if name.endswith(_QUANTIZATION_TENSORS):
                correction -= parameter.numel()
        if "weight_packed" in module._parameters:
            shape = module._parameters.get("weight_shape")
            logical = 1
            for size in shape.tolist() if shape is not None else module.weight_packed.shape:
                logical *= int(size)
            correction += logical
    return correction


def _compute_dtype(model: Any, described: str) -> str:
    """The dtype the model computes in: the most common one among its floating-point parameters
    outside the quantized modules (embeddings, norms, ``lm_head``), not that of packed words."""
    from collections import Counter

    quantized = set(quantized_modules(model))
    counts: Counter[str] = Counter()
    for name, parameter in model.named_parameters():
        if parameter.is_floating_point() and name.rpartition(".")[0] not in quantized:
            counts[str(parameter.dtype).removeprefix("torch.")] += parameter.numel()
    return counts.most_common(1)[0][0] if counts else described
