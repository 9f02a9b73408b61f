"""Checkpoints quantized by the real quantizer (gptqmodel, CPU) once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before gptqmodel is imported: on a 2-core machine its default worker pool refuses to start.
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from invarlock_packed.testing import quantize_checkpoint, save_base_checkpoint


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def llama_base(checkpoints: Path) -> Path:
    return save_base_checkpoint("llama", checkpoints / "llama")


@pytest.fixture(scope="session")
def opt_base(checkpoints: Path) -> Path:
    return save_base_checkpoint("opt", checkpoints / "opt", seed=1)


@pytest.fixture(scope="session")
def llama_gptq(checkpoints: Path, llama_base: Path) -> Path:
    """GPTQ v1 (``checkpoint_format: gptq``), 4-bit, group 32, symmetric: gptqmodel's native save."""
    return quantize_checkpoint(llama_base, checkpoints / "llama-gptq", "gptq")


@pytest.fixture(scope="session")
def llama_gptq_v2(checkpoints: Path, llama_base: Path) -> Path:
    """GPTQ v2 (``checkpoint_format: gptq_v2``), 4-bit, group 32, asymmetric."""
    return quantize_checkpoint(llama_base, checkpoints / "llama-gptq-v2", "gptq_v2")


@pytest.fixture(scope="session")
def llama_gptq_desc_act(checkpoints: Path, llama_base: Path) -> Path:
    """GPTQ v1 with act-order (``desc_act: true``): g_idx permutes the input channels' groups."""
    return quantize_checkpoint(
        llama_base, checkpoints / "llama-gptq-desc-act", "gptq", desc_act=True, act_group_aware=False
    )


@pytest.fixture(scope="session")
def opt_gptq(checkpoints: Path, opt_base: Path) -> Path:
    """A second architecture (OPT: biases, LayerNorm, fc1/fc2) and another shape, GPTQ v1."""
    return quantize_checkpoint(opt_base, checkpoints / "opt-gptq", "gptq")
