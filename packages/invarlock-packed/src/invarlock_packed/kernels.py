"""The gptqmodel layers of a loaded model: which they are, what the describe block says about them,
and the state their kernels derive from the packed tensors.

Nothing here imports gptqmodel: a model can only hold gptqmodel layers once gptqmodel is imported,
so a model seen before that has none.
"""

from __future__ import annotations

import sys
from typing import Any

from invarlock_hf.models import is_transformers_model
from invarlock_packed.family import PackedFamily

# Methods gptqmodel kernels provide to drop what they computed from their packed buffers:
# TorchLinear's dequantized-weight cache (keyed on dtype) and its streaming decode of qzeros (keyed on
# the buffer's address). Neither notices the buffers being rewritten in place, as a restore does.
_DERIVED_STATE_RESETS = ("clear_weight_cache", "_stream_reset_cache")


def quantized_modules(model: Any) -> dict[str, Any]:
    """Module name → gptqmodel quantized Linear, in model order (empty when there are none)."""
    if "gptqmodel" not in sys.modules:
        return {}
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    return {name: module for name, module in model.named_modules() if isinstance(module, BaseQuantLinear)}


def is_family_model(model: Any, family: PackedFamily) -> bool:
    """True for a transformers model quantized with ``family``'s method and run by gptqmodel layers."""
    if not is_transformers_model(model):
        return False
    from invarlock_hf.quantization import detect_quantization

    quantization = detect_quantization(model)
    return (
        quantization is not None
        and quantization["method"] == family.method
        and bool(quantized_modules(model))
    )


def quantization_block(model: Any, family: PackedFamily, detected: dict[str, Any]) -> dict[str, Any]:
    """The describe ``quantization`` block: the config's settings plus what the loaded layers show.

    :param detected: what ``detect_quantization`` read from the model's config.
    """
    modules = quantized_modules(model)
    return {
        "method": family.method,
        "bits": detected.get("bits"),
        "group_size": detected.get("group_size"),
        **{name: detected.get(name) for name in family.settings},
        "format": family.format_of(detected),
        "kernel": ", ".join(sorted({type(module).__name__ for module in modules.values()})),
        "kernel_backend": ", ".join(sorted({_backend_name(module) for module in modules.values()})),
        "quantized_modules": list(modules),
        "full_precision_modules": _full_precision_linears(model),
    }


def unpacked_parameter_count(model: Any) -> int:
    """Weights and biases of the quantized Linears as the full-precision model counts them: gptqmodel
    holds them in buffers (packed), which a parameter count does not see."""
    return sum(
        module.in_features * module.out_features + (module.out_features if module.bias is not None else 0)
        for module in quantized_modules(model).values()
    )


def reset_derived_state(model: Any) -> None:
    """Drop every kernel cache computed from the packed tensors, after those tensors were rewritten."""
    for module in quantized_modules(model).values():
        for method in _DERIVED_STATE_RESETS:
            reset = getattr(module, method, None)
            if callable(reset):
                reset()


def complete_description(family: PackedFamily, model: Any, description: dict[str, Any]) -> None:
    """Complete the Hugging Face description of a ``family`` model in place: the full
    ``quantization`` block, and ``n_params`` counting the packed weights as the full-precision
    model's parameters. Other models are left as they are."""
    if is_family_model(model, family):
        description["quantization"] = quantization_block(model, family, description.get("quantization") or {})
        description["n_params"] += unpacked_parameter_count(model)


def after_restore(family: PackedFamily, model: Any) -> None:
    """Once a ``family`` model's tensors were restored in place, drop what kernels derived from them."""
    if is_family_model(model, family):
        reset_derived_state(model)


def _full_precision_linears(model: Any) -> list[str]:
    """``torch.nn.Linear`` modules left unquantized (``lm_head``, modules the quantizer skipped)."""
    import torch

    return [name for name, module in model.named_modules() if type(module) is torch.nn.Linear]


def _backend_name(module: Any) -> str:
    backend = getattr(module, "backend", None)
    return str(getattr(backend, "value", backend))
