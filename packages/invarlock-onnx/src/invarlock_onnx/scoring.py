"""Logits of an ORTModelForCausalLM in the shape and place the one scoring path expects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def ort_logits(model: Any, inputs: Mapping[str, Any]) -> Any:
    """One forward pass of the ONNX session: float logits ``(batch, seq, vocab)`` on the CPU."""
    import torch

    # With the CUDA provider Optimum binds inputs on the GPU; on the CPU these are no-ops.
    input_ids = inputs["input_ids"].to(model.device)
    attention_mask = inputs.get("attention_mask")
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(model.device)
    # use_cache=False: scoring needs no past key/values back, so Optimum does not return them.
    output = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return output.logits.float().cpu()
