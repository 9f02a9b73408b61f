"""The conformance kit on hf_peft: adapter-only snapshots (an adapter edit), full snapshots (any edit),
and a QLoRA model over a bitsandbytes 4-bit base."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from invarlock.testing import AdapterConformance
from invarlock_peft.adapters import adapter_tensors


def mutate_adapter(model: Any) -> None:
    """An adapter edit: every adapter tensor changes, the base does not."""
    with torch.no_grad():
        for _, tensor in adapter_tensors(model):
            tensor.add_(0.5)


class PeftConformance(AdapterConformance):
    adapter_name = "hf_peft"

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, gpt2_lora: Path) -> str:
        return str(gpt2_lora)

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls, llama_lora_added_tokens: Path) -> str:
        return str(llama_lora_added_tokens)


class TestAdapterOnlySnapshots(PeftConformance):
    def mutate(self, model: Any) -> None:
        mutate_adapter(model)

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, llama_lora_added_tokens: Path) -> str:
        return str(llama_lora_added_tokens)


class TestFullSnapshots(PeftConformance):
    load_kwargs: ClassVar[dict[str, Any]] = {"snapshot": "full"}

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, llama_lora: Path) -> str:
        return str(llama_lora)


class TestQLoRA(PeftConformance):
    def mutate(self, model: Any) -> None:
        mutate_adapter(model)

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, qlora: Path) -> str:
        return str(qlora)
