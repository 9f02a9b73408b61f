"""invarlock_logits: one forward pass, no gradients, float logits on the CPU."""

from __future__ import annotations

from typing import Any

import torch

from invarlock.adapters import get_adapter


def batch(vocab: int = 128, seq: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, vocab, (2, seq), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def test_causal_logits(checkpoints: Any) -> None:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(checkpoints.path("llama"), device="cpu")
    inputs = batch()
    logits = adapter.logits(model, inputs)
    assert logits.shape == (2, 6, 128)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert not logits.requires_grad
    with torch.no_grad():
        assert torch.equal(logits, model(**inputs).logits)
    logits[0, 0, 0] = 0.0  # an ordinary tensor: callers may edit it in place


def test_half_precision_model_gives_float32_logits(checkpoints: Any) -> None:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(checkpoints.path("gpt2"), device="cpu", dtype="bf16")
    logits = adapter.logits(model, batch())
    assert logits.dtype == torch.float32
    assert logits.shape == (2, 6, 128)


def test_masked_lm_logits(checkpoints: Any) -> None:
    adapter = get_adapter("hf_mlm")
    model = adapter.load_model(checkpoints.path("roberta"), device="cpu")
    assert adapter.logits(model, batch()).shape == (2, 6, 128)


def test_seq2seq_logits_follow_the_decoder_inputs(checkpoints: Any) -> None:
    adapter = get_adapter("hf_seq2seq")
    model = adapter.load_model(checkpoints.path("t5"), device="cpu")
    inputs = {**batch(), "decoder_input_ids": torch.tensor([[0, 5, 6], [0, 7, 8]])}
    assert adapter.logits(model, inputs).shape == (2, 3, 128)


def test_model_offloaded_by_accelerate(checkpoints: Any) -> None:
    """Weights kept on the meta device between forward passes: inputs go to the execution device."""
    from accelerate import cpu_offload

    adapter = get_adapter("hf_causal")
    inputs = batch()
    expected = adapter.logits(adapter.load_model(checkpoints.path("llama"), device="cpu"), inputs)
    model = adapter.load_model(checkpoints.path("llama"), device="cpu")
    cpu_offload(model, execution_device=torch.device("cpu"))
    assert model.get_input_embeddings().weight.device.type == "meta"
    assert adapter.describe(model)["device"] == "cpu"
    assert torch.equal(adapter.logits(model, inputs), expected)
