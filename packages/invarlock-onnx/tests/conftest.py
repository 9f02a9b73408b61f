"""Tiny causal checkpoints, exported to ONNX by Optimum inside this test session, offline.

The fixtures are built here rather than stored: a tokenizer saved by transformers 5 does not load
under the transformers 4.57 that optimum-onnx requires, and a stored export would not show that
export works with the installed versions.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAMILIES = ("gpt2", "llama")
WITH_PAST = "text-generation-with-past"
WITHOUT_PAST = "text-generation"


@dataclass(frozen=True)
class Exported:
    family: str
    checkpoint: Path
    """The PyTorch checkpoint (save_pretrained) with its tokenizer."""
    onnx: Path
    """Its Optimum export with past key/values: model.onnx, config.json, tokenizer files."""


def export(checkpoint: Path, output: Path, task: str = WITH_PAST) -> Path:
    from optimum.exporters.onnx import main_export

    main_export(str(checkpoint), output=output, task=task, do_validation=False, local_files_only=True)
    return output


def save_checkpoint(family: str, directory: Path) -> Path:
    """A tiny random checkpoint whose every weight is distinct from its default initialisation.

    The exporter stores equal initializers once; all-ones norms and zero biases would otherwise
    make the ONNX parameter count smaller than the PyTorch one.
    """
    import torch

    from invarlock_hf.testing import save_tiny_tokenizer, tiny_model

    model = tiny_model(family, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(directory)
    save_tiny_tokenizer(directory)
    return directory


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    result = {}
    for family in FAMILIES:
        root = tmp_path_factory.mktemp(family)
        checkpoint = save_checkpoint(family, root / "pytorch")
        result[family] = Exported(family, checkpoint, export(checkpoint, root / "onnx"))
    return result


@pytest.fixture(scope="session")
def gpt2_without_past(exported: dict[str, Exported], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gpt2 exported without past key/values inputs and outputs."""
    return export(exported["gpt2"].checkpoint, tmp_path_factory.mktemp("gpt2-no-past"), WITHOUT_PAST)


@pytest.fixture(scope="session")
def gpt2_legacy_layout(
    exported: dict[str, Exported], gpt2_without_past: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The layout older Optimum releases wrote: decoder_model.onnx and decoder_with_past_model.onnx."""
    directory = tmp_path_factory.mktemp("gpt2-legacy")
    shutil.copy(gpt2_without_past / "model.onnx", directory / "decoder_model.onnx")
    shutil.copy(exported["gpt2"].onnx / "model.onnx", directory / "decoder_with_past_model.onnx")
    shutil.copy(exported["gpt2"].onnx / "config.json", directory / "config.json")
    return directory


@pytest.fixture(scope="session")
def pytorch_models(exported: dict[str, Exported]) -> dict[str, Any]:
    """The PyTorch models the exports were made from, loaded by plain transformers: the reference."""
    from transformers import AutoModelForCausalLM

    return {
        family: AutoModelForCausalLM.from_pretrained(e.checkpoint).eval() for family, e in exported.items()
    }


def token_batch(seq_len: int, *, batch: int = 2, seed: int = 0) -> dict[str, Any]:
    """Random token ids of the tiny vocabulary, all attended, as the scoring path passes them."""
    import torch

    from invarlock_hf.testing import TINY_VOCAB

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, TINY_VOCAB, (batch, seq_len), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


@pytest.fixture(name="token_batch")
def token_batch_fixture() -> Callable[..., dict[str, Any]]:
    return token_batch
