"""``quant_rtn``: round-to-nearest weight quantization, applied in place (quantize, then dequantize).

Symmetric, per output channel and group: each group of ``group_size`` input weights gets the scale
``max|w| / (2**(bits-1) - 1)`` and its weights become ``round(w / scale) * scale``. Weights stay in
their dtype, so the edited model loads and runs like the original, with quantization error only.
Linear layers (``torch.nn.Linear`` and transformers' ``Conv1D``) with floating-point weights are
edited; weights tied to another tensor (an output head sharing the embedding) are left alone, since
quantizing them would quantize the embedding too.
"""

from __future__ import annotations

from typing import Any

from invarlock.certification.ranks import is_dtensor, local_part
from invarlock.errors import EditError

SCOPES = {
    "all": (),
    "attn": ("attn", "attention"),
    "ffn": ("mlp", "ffn", "feed_forward", "intermediate", "fc1", "fc2", "dense_h_to_4h", "dense_4h_to_h"),
}
MIN_BITS, MAX_BITS = 2, 8


def quantize_rtn_(weight: Any, bits: int, group_size: int | None, per_channel: bool = True) -> None:
    """Quantize a 2-D weight ``[out, in]`` in place along its input dimension.

    A group size that does not divide the input width falls back to one group per output channel;
    ``per_channel=False`` uses one scale for the whole tensor.
    """
    import torch

    qmax = 2 ** (bits - 1) - 1
    out_features, in_features = weight.shape
    group = group_size if group_size and in_features % group_size == 0 else in_features
    with torch.no_grad():
        w = weight.detach().float().reshape(out_features, in_features // group, group)
        if per_channel:
            scale = w.abs().amax(dim=-1, keepdim=True) / qmax
        else:
            scale = w.abs().amax().reshape(1, 1, 1) / qmax
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        q = torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
        weight.copy_(q.reshape(out_features, in_features).to(weight.dtype))


def _linear_weights(model: Any, scope: str) -> list[tuple[str, Any, bool]]:
    """(module name, weight, weight is stored transposed) of every editable linear layer in scope."""
    import torch

    keys = SCOPES[scope]
    storage_users: dict[int, int] = {}
    for _, tensor in model.named_parameters(remove_duplicate=False):
        key = _storage_key(tensor)
        storage_users[key] = storage_users.get(key, 0) + 1
    found = []
    for name, module in model.named_modules():
        transposed = type(module).__name__ == "Conv1D"
        if type(module) is not torch.nn.Linear and not transposed:
            continue
        weight = getattr(module, "weight", None)
        if (
            weight is None
            or weight.dim() != 2
            or not weight.is_floating_point()
            or weight.device.type == "meta"
        ):
            continue
        if keys and not any(k in name.lower() for k in keys):
            continue
        if storage_users.get(_storage_key(weight), 0) > 1:
            continue  # tied to another tensor
        found.append((name, weight, transposed))
    return found


def _storage_key(tensor: Any) -> int:
    if tensor.device.type == "meta":
        return id(tensor)
    if is_dtensor(tensor):  # a DTensor's own storage is not its data; its local shard's is
        tensor = tensor.to_local()
    return int(tensor.untyped_storage().data_ptr())


def _quantize_(weight: Any, transposed: bool, bits: int, group: int | None, per_channel: bool) -> None:
    """Quantize one weight in place; a tensor-parallel shard exactly as its whole tensor would be.

    Groups and channel scales span the whole tensor, not one rank's part of it: the shard's whole
    tensor is gathered (every rank edits the same weights in the same order), quantized, and this
    rank's part written back.
    """
    if not is_dtensor(weight):
        quantize_rtn_(weight.t() if transposed else weight, bits, group, per_channel)
        return
    import torch

    with torch.no_grad():
        whole = weight.full_tensor()
        quantize_rtn_(whole.t() if transposed else whole, bits, group, per_channel)
        weight.to_local().copy_(local_part(whole, weight))


def apply_quant_rtn(
    model: Any, bitwidth: int = 8, group_size: int | None = 128, per_channel: bool = True, scope: str = "all"
) -> dict[str, Any]:
    """Quantize every linear weight in ``scope`` to ``bitwidth`` bits (per channel, in groups)."""
    if not MIN_BITS <= bitwidth <= MAX_BITS:
        raise EditError(f"quant_rtn bitwidth must be between {MIN_BITS} and {MAX_BITS}, got {bitwidth}")
    if scope not in SCOPES:
        raise EditError(f"quant_rtn scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not hasattr(model, "named_modules"):
        raise EditError("quant_rtn edits PyTorch models only; load the model with a PyTorch adapter")
    group = group_size if per_channel else None
    targets = _linear_weights(model, scope)
    if not targets:
        raise EditError(f"quant_rtn found no floating-point linear weights in scope {scope!r} to quantize")
    for _, weight, transposed in targets:
        _quantize_(weight, transposed, bitwidth, group, per_channel)
    return {
        "bitwidth": bitwidth,
        "group_size": group,
        "scope": scope,
        "modules": len(targets),
        "parameters": int(sum(w.numel() for _, w, _ in targets)),
        "module_names": [name for name, _, _ in targets],
    }
