"""Tiny bases and PEFT adapters, built locally with peft itself; nothing comes from the hub.

Every adapter is created with ``init_lora_weights=False`` (random, non-zero LoRA weights) so its
outputs differ from its base's, and saved with ``save_pretrained`` next to a base saved the same way.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from invarlock_hf.testing import TINY_VOCAB, save_tiny_checkpoint, save_tiny_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

ADDED_TOKENS = ("<tool>", "<end_tool>")


def make_adapter(base: Any, target: Path, base_path: Path, **lora: Any) -> Path:
    """Wrap ``base`` (a loaded model) in a new random LoRA adapter and save it to ``target``."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    settings = {"r": 4, "lora_alpha": 8, "init_lora_weights": False, **lora}
    peft_model = get_peft_model(base, LoraConfig(**settings))
    peft_model.save_pretrained(target)
    _set_base(target, base_path)
    return target


def _set_base(target: Path, base_path: Path) -> None:
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(base_path)
    config_path.write_text(json.dumps(config))


def load_plain(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


@pytest.fixture(scope="session")
def llama_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = save_tiny_checkpoint("llama", tmp_path_factory.mktemp("llama-base"))
    save_tiny_tokenizer(path)
    return path


@pytest.fixture(scope="session")
def gpt2_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = save_tiny_checkpoint("gpt2", tmp_path_factory.mktemp("gpt2-base"))
    save_tiny_tokenizer(path)
    return path


@pytest.fixture(scope="session")
def llama_lora(llama_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoRA r=4 on q_proj and v_proj of the llama base."""
    target = tmp_path_factory.mktemp("llama-lora")
    return make_adapter(load_plain(llama_base), target, llama_base, target_modules=["q_proj", "v_proj"])


@pytest.fixture(scope="session")
def gpt2_lora(gpt2_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoRA r=2 on GPT-2's fused c_attn (a Conv1D): another base, other shapes."""
    target = tmp_path_factory.mktemp("gpt2-lora")
    return make_adapter(
        load_plain(gpt2_base), target, gpt2_base, r=2, target_modules=["c_attn"], fan_in_fan_out=True
    )


@pytest.fixture(scope="session")
def llama_lora_added_tokens(llama_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter that added two tokens: tokenizer and resized embedding and head saved with it."""
    from transformers import AutoTokenizer

    target = tmp_path_factory.mktemp("llama-lora-tokens")
    tokenizer = AutoTokenizer.from_pretrained(llama_base)
    tokenizer.add_tokens(list(ADDED_TOKENS))
    base = load_plain(llama_base)
    torch.manual_seed(2)
    base.resize_token_embeddings(len(tokenizer))
    make_adapter(
        base,
        target,
        llama_base,
        target_modules=["q_proj", "v_proj"],
        modules_to_save=["embed_tokens", "lm_head"],
    )
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def llama_nf4_base(llama_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The llama base saved after nf4 quantization (config.json holds its quantization_config)."""
    from invarlock.adapters import get_adapter

    target = tmp_path_factory.mktemp("llama-nf4")
    model = get_adapter("hf_bnb").load_model(
        llama_base, device="cpu", load_in_4bit=True, bnb_4bit_quant_type="nf4"
    )
    model.save_pretrained(target)
    save_tiny_tokenizer(target)
    return target


@pytest.fixture(scope="session")
def qlora(llama_nf4_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA trained over the 4-bit base: the QLoRA case."""
    from invarlock.adapters import get_adapter

    target = tmp_path_factory.mktemp("qlora")
    base = get_adapter("hf_bnb").load_model(llama_nf4_base, device="cpu")
    return make_adapter(base, target, llama_nf4_base, target_modules=["q_proj", "v_proj", "down_proj"])


@pytest.fixture(scope="session")
def added_tokens() -> tuple[str, ...]:
    return ADDED_TOKENS


@pytest.fixture(scope="session", name="make_adapter")
def make_adapter_fixture() -> Any:
    """:func:`make_adapter`, for tests that build an adapter of their own."""
    return make_adapter


@pytest.fixture(scope="session")
def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, TINY_VOCAB, (2, 12), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
