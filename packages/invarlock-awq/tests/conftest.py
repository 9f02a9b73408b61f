"""Checkpoints quantized by the real quantizer (gptqmodel's AWQ, torch backend, CPU) once per session."""
# ruff: noqa: F811

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before gptqmodel is imported: on a 2-core machine its default worker pool refuses to start.
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The base checkpoints are fixtures shared with the other packed family's tests; fixtures below
# take them as arguments by name, which ruff reads as redefinitions.
from invarlock_packed.testing import checkpoints, llama_base, opt_base, quantize_checkpoint  # noqa: F401


@pytest.fixture(scope="session")
def llama_awq(checkpoints: Path, llama_base: Path) -> Path:
    """AWQ GEMM (``version: gemm``), 4-bit, group 32, with zero points (as AutoAWQ wrote them)."""
    return quantize_checkpoint(llama_base, checkpoints / "llama-awq", "awq")


@pytest.fixture(scope="session")
def opt_awq(checkpoints: Path, opt_base: Path) -> Path:
    """A second architecture (OPT: biases, LayerNorm, fc1/fc2) and another shape, AWQ GEMM."""
    return quantize_checkpoint(opt_base, checkpoints / "opt-awq", "awq")
