"""Checkpoints quantized by the real quantizer (gptqmodel's AWQ, torch backend, CPU) once per session."""

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
def llama_awq(checkpoints: Path, llama_base: Path) -> Path:
    """AWQ GEMM (``version: gemm``), 4-bit, group 32, with zero points (as AutoAWQ wrote them)."""
    return quantize_checkpoint(llama_base, checkpoints / "llama-awq", "awq")


@pytest.fixture(scope="session")
def opt_awq(checkpoints: Path, opt_base: Path) -> Path:
    """A second architecture (OPT: biases, LayerNorm, fc1/fc2) and another shape, AWQ GEMM."""
    return quantize_checkpoint(opt_base, checkpoints / "opt-awq", "awq")
