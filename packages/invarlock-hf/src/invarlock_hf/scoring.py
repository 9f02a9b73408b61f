"""The one forward pass evaluation uses: logits without gradients, returned on the CPU as float."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock_hf.models import input_device


def logits(model: Any, inputs: Mapping[str, Any]) -> Any:
    """``model(**inputs).logits`` under ``torch.inference_mode``, as a float32 CPU tensor.

    Inputs go to the device of the input embeddings (accelerate's hooks move them on from there
    for a model dispatched over several devices). Under tensor parallelism the logits are the
    whole vocabulary's on every rank: transformers' plans gather the head's output, and logits
    left as a ``DTensor`` (a plan that does not) are gathered here (every rank calls this alike).
    """
    import torch

    device = input_device(model)
    batch = {name: torch.as_tensor(value).to(device) for name, value in inputs.items()}
    with torch.inference_mode():
        output = model(**batch)
    result = output.logits
    if _is_dtensor(result):
        with torch.inference_mode():
            result = result.full_tensor()
    # Copied outside inference mode: callers get an ordinary tensor they may edit in place.
    return result.to(device="cpu", dtype=torch.float32, copy=True)


def _is_dtensor(tensor: Any) -> bool:
    import sys

    if "torch.distributed.tensor" not in sys.modules:  # no DTensor exists before it is imported
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)
