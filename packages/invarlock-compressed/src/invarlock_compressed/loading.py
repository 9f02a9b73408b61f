"""Loading compressed-tensors checkpoints so that they stay compressed in memory.

transformers loads a compressed-tensors checkpoint in its compressed form (packed int4 words,
int8 or fp8 weights next to their scales) and then registers a hook that decompresses the whole
model, in place, at its first forward pass: compressed-tensors 0.20 runs no compressed kernel on
the CPU. That hook would change the model's tensors (names, dtypes, sizes) under a snapshot taken
before the first pass. ``hf_compressed`` removes it and gives each compressed linear layer a
forward that decompresses its weight into a temporary tensor for that call only, with
compressed-tensors' own decompressor, then runs compressed-tensors' own quantized forward
(activation quantization included). The stored state stays the checkpoint's, bit for bit, and the
outputs are the ones the decompressed model computes.

Where that is not possible (a compressed module that is not a linear layer, a format without a
per-module decompressor) or not wanted (``keep_compressed=False``), the model is decompressed once
at load with compressed-tensors' own ``decompress_model`` and describe says so and why.
"""

from __future__ import annotations

import weakref
from typing import Any

from invarlock.errors import ModelLoadError
from invarlock_compressed.modules import ADAPTER, METHOD, is_compressed, module_format, quantized_modules
from invarlock_hf.loading import load_pretrained, pin_placement, placement_device
from invarlock_hf.quantization import QUANTIZED_ADAPTERS, detect_quantization

AUTO_CLASS = "AutoModelForCausalLM"
KEEP_COMPRESSED = "keep_compressed"
"""Load option: False decompresses the weights at load instead of keeping them compressed."""

_decompressed_because: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

_MOVING_BREAKS_COMPRESSION = (
    "its compressed weights and their scales were placed while loading, and a cast would change "
    "the stored scales"
)


def load_compressed_model(model_id: str, device: str, options: dict[str, Any]) -> Any:
    """Load a compressed-tensors checkpoint on ``device``, kept compressed unless impossible or
    ``keep_compressed=False``."""
    kwargs = dict(options)
    keep = kwargs.pop(KEEP_COMPRESSED, True)
    if not isinstance(keep, bool):
        raise ModelLoadError(f"{KEEP_COMPRESSED} must be true or false, got {keep!r}")
    requested = detect_quantization(kwargs)
    if requested is not None and requested["method"] != METHOD:
        _refuse_other_method(requested["method"])
    if kwargs.get("device_map") is None:
        kwargs["device_map"] = placement_device(device)
    model = load_pretrained(AUTO_CLASS, model_id, device, kwargs, move_to_device=False)
    stated = detect_quantization(model)
    if stated is None or stated["method"] != METHOD:
        method = "full precision" if stated is None else stated["method"]
        raise ModelLoadError(
            f"{model_id} is not a compressed-tensors checkpoint ({method}); load it with hf_auto, "
            "which picks the adapter from its config.json"
        )
    compressed = {name: module for name, module in quantized_modules(model).items() if is_compressed(module)}
    reason = None if keep else f"asked for at load ({KEEP_COMPRESSED}=False)"
    if reason is None:
        reason = _why_not_runnable_compressed(compressed)
    if reason is None:
        _run_compressed(model, compressed)
    elif compressed:
        _decompress(model, reason)
    pin_placement(model, ADAPTER, _MOVING_BREAKS_COMPRESSION)
    return model


def decompressed_because(model: Any) -> str | None:
    """Why :func:`load_compressed_model` decompressed this model at load, or None if it did not."""
    return _decompressed_because.get(model)


def _refuse_other_method(method: str) -> None:
    other = QUANTIZED_ADAPTERS.get(method)
    hint = f"use the {other} adapter" if other else "drop the quantization options"
    raise ModelLoadError(f"hf_compressed loads compressed-tensors checkpoints, not {method}; {hint}")


def _why_not_runnable_compressed(compressed: dict[str, Any]) -> str | None:
    import torch
    from compressed_tensors.compressors import BaseCompressor

    for name, module in compressed.items():
        if type(module) is not torch.nn.Linear:
            return f"{name} is a compressed {type(module).__name__}, which only runs decompressed"
        format_name = module_format(module)
        try:
            compressor = BaseCompressor.get_value_from_registry(format_name)
        except Exception:
            compressor = None
        per_module = getattr(getattr(compressor, "decompress", None), "__func__", None)
        if per_module is None or per_module is BaseCompressor.decompress.__func__:
            return f"{name} has format {format_name}, which compressed-tensors decompresses only whole"
    return None


def _decompress(model: Any, reason: str) -> None:
    model.hf_quantizer.compressor.decompress_model(model)
    _decompressed_because[model] = reason


class _CompressedForward:
    """A compressed linear layer's forward: decompress its weight for this call, run the layer.

    compressed-tensors' quantized forward (kept as ``quantized_forward``) quantizes activations
    and, for a module in status ``compressed``, uses the weight as given; here it is given the
    decompressed weight. A plain object (not a closure) keeps the model deep-copyable.
    """

    def __init__(self, module: Any, quantized_forward: Any) -> None:
        from compressed_tensors.compressors import BaseCompressor

        self.module = module
        self.quantized_forward = quantized_forward
        self.compressor = BaseCompressor.get_value_from_registry(module_format(module))

    def __call__(self, input: Any) -> Any:
        from compressed_tensors.utils import get_direct_state_dict

        module = self.module
        dense = self.compressor.decompress(get_direct_state_dict(module), module.quantization_scheme)
        return _with_weight(module, dense["weight"], self.quantized_forward, input)


def _with_weight(module: Any, weight: Any, forward: Any, input: Any) -> Any:
    """Run ``forward(input)`` with ``module.weight`` standing for ``weight``, then put things back."""
    stored = module._parameters.get("weight")
    if stored is not None:  # int- and float-quantized: the stored weight is the int8 / fp8 tensor
        original = stored.data
        stored.data = weight
        try:
            return forward(input)
        finally:
            stored.data = original
    object.__setattr__(module, "weight", weight)  # pack-quantized: there is no weight parameter
    try:
        return forward(input)
    finally:
        object.__delattr__(module, "weight")


def _run_compressed(model: Any, compressed: dict[str, Any]) -> None:
    # compressed-tensors' hook decompresses the whole model at its first forward pass.
    model.hf_quantizer.compressor.remove_decompression_hook(model)
    for module in compressed.values():
        module.forward = _CompressedForward(module, module.forward)
