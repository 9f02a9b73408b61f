"""Fixtures: tiny checkpoints of every family, built once per session, and a few special checkpoints."""

from __future__ import annotations

import os

# Before transformers or huggingface_hub is imported: an accidental hub call fails fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from invarlock_hf.testing import save_tiny_checkpoint, save_tiny_tokenizer

VARIANT_VOCAB = 136
"""The "other shape" checkpoints differ from the main ones in vocabulary size only."""


class Checkpoints:
    """Tiny checkpoints under one session directory, each written on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, family: str, *, variant: bool = False, **overrides: Any) -> str:
        """The checkpoint of ``family``, or its "other shape" variant, with config ``overrides``."""
        parts = [
            family,
            *(["variant"] if variant else []),
            *(f"{k}={v}" for k, v in sorted(overrides.items())),
        ]
        directory = self.root / "-".join(parts)
        if not directory.exists():
            shape = {"vocab_size": VARIANT_VOCAB} if variant else {}
            save_tiny_checkpoint(family, directory, seed=1 if variant else 0, **shape, **overrides)
        return str(directory)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Checkpoints:
    return Checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="session")
def checkpoint(checkpoints: Checkpoints) -> Callable[..., str]:
    """``checkpoint(family, **config_overrides)``: a tiny checkpoint's path, written on first use."""
    return checkpoints.path


@pytest.fixture(scope="session")
def gpt2_with_tokenizer(checkpoints: Checkpoints, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A GPT-2 checkpoint with a locally trained tokenizer beside it."""
    directory = tmp_path_factory.mktemp("gpt2-tokenizer")
    shutil.copytree(checkpoints.path("gpt2"), directory, dirs_exist_ok=True)
    save_tiny_tokenizer(directory)
    return str(directory)


_REMOTE_CONFIG = """
from transformers import PretrainedConfig


class TinyConfig(PretrainedConfig):
    model_type = "invarlock_tiny"

    def __init__(self, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, vocab_size=32, **kwargs):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.vocab_size = vocab_size
        super().__init__(**kwargs)
"""

_REMOTE_MODEL = """
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_tiny import TinyConfig


class TinyForCausalLM(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(config.hidden_size, config.hidden_size) for _ in range(config.num_hidden_layers)
        )
        self.lm_head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, attention_mask=None, **kwargs):
        hidden = self.embed(input_ids)
        for layer in self.layers:
            hidden = torch.tanh(layer(hidden))
        return CausalLMOutput(logits=self.lm_head(hidden))
"""


@pytest.fixture(scope="session")
def remote_code_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A checkpoint of an architecture transformers does not know, whose code ships with it
    (``auto_map``): it loads only with ``trust_remote_code=True``. Its config states layers and
    heads but no MLP width and no KV heads."""
    import json

    import torch
    from safetensors.torch import save_file

    directory = tmp_path_factory.mktemp("remote-code")
    (directory / "configuration_tiny.py").write_text(textwrap.dedent(_REMOTE_CONFIG))
    (directory / "modeling_tiny.py").write_text(textwrap.dedent(_REMOTE_MODEL))
    config = {
        "architectures": ["TinyForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_tiny.TinyConfig",
            "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM",
        },
        "model_type": "invarlock_tiny",
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "vocab_size": 32,
        "tie_word_embeddings": False,
    }
    (directory / "config.json").write_text(json.dumps(config))
    generator = torch.Generator().manual_seed(0)
    weights = {"embed.weight": torch.randn(32, 16, generator=generator)}
    for layer in range(2):
        weights[f"layers.{layer}.weight"] = torch.randn(16, 16, generator=generator)
        weights[f"layers.{layer}.bias"] = torch.randn(16, generator=generator)
    weights["lm_head.weight"] = torch.randn(32, 16, generator=generator)
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return str(directory)


def put_in_hub_cache(checkpoint: str, cache_dir: Path, repo_id: str) -> Path:
    """Lay ``checkpoint`` out as the Hugging Face cache holds a downloaded repository."""
    commit = "0" * 40
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(checkpoint, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A function that puts a checkpoint into a fresh hub cache and returns the cache directory."""

    def make(checkpoint: str, repo_id: str) -> Path:
        cache_dir = tmp_path / "hub-cache"
        put_in_hub_cache(checkpoint, cache_dir, repo_id)
        return cache_dir

    return make
