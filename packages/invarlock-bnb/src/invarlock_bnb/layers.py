"""The bitsandbytes layers of a model and the quantization state they keep outside parameters.

bitsandbytes keeps part of what a quantized layer computes with outside ``parameters()`` and
``buffers()``: the int8 row scales (``SCB``) of ``Linear8bitLt``, and the ``QuantState`` of
``Linear4bit`` (absmax, quantization map and, with double quantization, a nested absmax, map and
offset). :func:`quantization_state` names those live tensors the way bitsandbytes' own
``state_dict`` does, so the snapshot engine captures and restores them with the weights.

Non-tensor settings (quant type, block size, original dtype...) cannot be written back in place.
:func:`layer_layouts` reads them, for the engine's ``settings``: a restore then refuses a layer that
was re-quantized differently since the snapshot, in memory and on disk alike.
"""

from __future__ import annotations

import sys
from typing import Any

from invarlock.errors import UnsupportedOperationError
from invarlock_hf.models import is_transformers_model


def _bnb_nn() -> Any | None:
    """``bitsandbytes.nn`` if bitsandbytes is imported (a model cannot hold its layers otherwise)."""
    bitsandbytes = sys.modules.get("bitsandbytes")
    return None if bitsandbytes is None else bitsandbytes.nn


def bnb_layers(model: Any) -> dict[str, Any]:
    """The model's ``Linear8bitLt`` and ``Linear4bit`` modules by name, in module order."""
    nn = _bnb_nn()
    if nn is None or not hasattr(model, "named_modules"):
        return {}
    kinds = (nn.Linear8bitLt, nn.Linear4bit)
    return {name: module for name, module in model.named_modules() if isinstance(module, kinds)}


def is_bnb_model(model: Any) -> bool:
    """True for a transformers model with at least one bitsandbytes linear layer."""
    return is_transformers_model(model) and bool(bnb_layers(model))


def is_int8_layer(module: Any) -> bool:
    nn = _bnb_nn()
    return nn is not None and isinstance(module, nn.Linear8bitLt)


def quantized_4bit_state(module: Any) -> Any | None:
    """The ``QuantState`` a ``Linear4bit`` computes with, or None while its weight is not quantized."""
    state = getattr(module.weight, "quant_state", None)
    # bitsandbytes falls back to the module's copy when the parameter lost it (see its forward).
    return state if state is not None else getattr(module, "quant_state", None)


def int8_scales(module: Any) -> Any | None:
    """The live ``SCB`` of a ``Linear8bitLt``: on the weight until the first forward, then on its state."""
    return module.state.SCB if module.state.SCB is not None else getattr(module.weight, "SCB", None)


def _shares_storage(a: Any, b: Any) -> bool:
    return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())


def quantization_state(model: Any) -> dict[str, Any]:
    """Every live quantization-state tensor outside parameters and buffers, by state_dict name.

    :raises UnsupportedOperationError: a layer holds state this adapter cannot capture exactly.
    """
    _refuse_unsupported_modules(model)
    tensors: dict[str, Any] = {}
    for name, module in bnb_layers(model).items():
        if is_int8_layer(module):
            tensors.update(_int8_state(name, module))
        else:
            tensors.update(_4bit_state(name, module))
    return tensors


def _int8_state(name: str, module: Any) -> dict[str, Any]:
    if module.state.has_fp16_weights:
        return {}  # the weight is a float parameter; the int8 copy is a cache rebuilt from it
    scales = int8_scales(module)
    if scales is None:
        raise UnsupportedOperationError(
            f"{name} holds int8 weights without their scales (SCB), so it cannot be snapshotted; "
            "load the model through hf_bnb instead of assembling it by hand"
        )
    codes = module.state.CB if module.state.CB is not None else getattr(module.weight, "CB", None)
    if codes is not None and not _shares_storage(codes, module.weight):
        raise UnsupportedOperationError(
            f"{name}'s int8 weight was replaced rather than edited in place, so the layer computes "
            "with a copy that is no longer its parameter; edit weights in place (weight.data.copy_) "
            "or reload the model before taking a snapshot"
        )
    return {f"{name}.SCB": scales}


def _4bit_state(name: str, module: Any) -> dict[str, Any]:
    state = quantized_4bit_state(module)
    if state is None:
        return {}  # not quantized yet: the weight is a plain float parameter
    tensors = {f"{name}.weight.absmax": state.absmax, f"{name}.weight.quant_map": state.code}
    if state.nested:
        tensors[f"{name}.weight.nested_absmax"] = state.state2.absmax
        tensors[f"{name}.weight.nested_quant_map"] = state.state2.code
        tensors[f"{name}.weight.nested_offset"] = state.offset
    return tensors


def _refuse_unsupported_modules(model: Any) -> None:
    """Refuse quantized parameters outside the two linear layers (``Embedding4bit``...): unknown state."""
    nn = _bnb_nn()
    if nn is None:
        return
    supported = (nn.Linear8bitLt, nn.Linear4bit)
    quantized_params = (nn.Int8Params, nn.Params4bit)
    for name, module in model.named_modules():
        if isinstance(module, supported):
            continue
        if any(isinstance(p, quantized_params) for p in module.parameters(recurse=False)):
            raise UnsupportedOperationError(
                f"{name} is a bitsandbytes {type(module).__name__}, whose quantization state hf_bnb "
                "cannot snapshot; keep that module in full precision (llm_int8_skip_modules) to "
                "snapshot this model"
            )


def layer_layouts(model: Any) -> dict[str, dict[str, Any]]:
    """Each bitsandbytes layer's non-tensor quantization settings, by module name."""
    return {name: _layout(module) for name, module in bnb_layers(model).items()}


def _layout(module: Any) -> dict[str, Any]:
    if is_int8_layer(module):
        return {
            "bits": 8,
            "int8_weights": not module.state.has_fp16_weights,
            "threshold": float(module.state.threshold),
        }
    state = quantized_4bit_state(module)
    if state is None:
        return {"bits": 4, "quantized": False}
    layout: dict[str, Any] = {
        "bits": 4,
        "quantized": True,
        "quant_type": state.quant_type,
        "blocksize": int(state.blocksize),
        "dtype": str(state.dtype).removeprefix("torch."),
        "shape": [int(n) for n in state.shape],
        "nested": bool(state.nested),
        # bitsandbytes' AVX512-BF16 CPU layout (see pin_4bit_layout) stores weights differently.
        "cpu_packed": bool(getattr(state, "packing_format_for_cpu", False)),
    }
    if state.nested:
        layout["nested_blocksize"] = int(state.state2.blocksize)
        layout["nested_dtype"] = str(state.state2.dtype).removeprefix("torch.")
    return layout


def pin_4bit_layout(model: Any) -> None:
    """Keep 4-bit weights in bitsandbytes' portable layout on CPUs with AVX512-BF16.

    On such CPUs bitsandbytes repacks a ``Linear4bit``'s weight and QuantState into a CPU-only
    layout at its first forward pass (absmax rounded to bfloat16, double quantization undone), and
    ``state_dict()`` converts them back, lossily, in place. A snapshot taken before that repacking
    could not be restored after it, and logits would depend on the CPU model, so the adapter keeps
    the portable layout. Layers already repacked stay as they are.
    """
    nn = _bnb_nn()
    if nn is None:
        return
    for module in model.modules():
        if isinstance(module, nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def clear_int8_caches(model: Any) -> None:
    """Drop the int8 copies that float-weight ``Linear8bitLt`` layers cache from their weights.

    With ``has_fp16_weights`` the layer quantizes its float weight on the first forward and, in
    eval mode, keeps using that copy; after a restore the copy would be stale.
    """
    for module in bnb_layers(model).values():
        if is_int8_layer(module) and module.state.has_fp16_weights:
            module.state.reset_grads()
