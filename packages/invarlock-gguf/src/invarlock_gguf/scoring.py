"""Per-token logits of a GGUF model computed by llama.cpp, in the shape the one scoring path expects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock.errors import DatasetError, TokenizerMismatchError, UnsupportedOperationError
from invarlock_gguf.models import GGUFModel


def gguf_logits(model: GGUFModel, inputs: Mapping[str, Any]) -> Any:
    """Float32 logits ``(batch, seq, vocab)`` on the CPU, each row evaluated by llama.cpp afresh.

    Rows are evaluated one after another (llama.cpp keeps one sequence's logits for every
    position); the ids are checked first, because llama.cpp aborts the process on an id outside
    its vocabulary.
    """
    import torch

    input_ids = inputs["input_ids"]
    attention_mask = inputs.get("attention_mask")
    if attention_mask is not None and not bool(attention_mask.bool().all()):
        raise UnsupportedOperationError(
            "the gguf adapter scores whole windows only and got an attention_mask with padding; "
            "pass equal-length rows with every position attended"
        )
    batch, seq = input_ids.shape
    if seq > model.n_ctx:
        raise DatasetError(
            f"a row of {seq} tokens does not fit {model.path.name}'s context of {model.n_ctx}; load it with "
            f"n_ctx={seq} or more, or use shorter windows"
        )
    n_vocab = model.n_vocab
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= n_vocab):
        raise TokenizerMismatchError(
            f"token ids must lie in 0..{n_vocab - 1} for {model.path.name}, got {int(input_ids.min())}.."
            f"{int(input_ids.max())}; the windows come from another tokenizer"
        )
    llama = model.llama
    logits = torch.empty((batch, seq, n_vocab), dtype=torch.float32)
    for row, ids in enumerate(input_ids.tolist()):
        llama.reset()
        llama.eval(ids)
        logits[row] = torch.from_numpy(llama.scores[:seq])
    return logits
