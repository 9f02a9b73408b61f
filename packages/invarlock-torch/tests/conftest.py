"""Plain PyTorch models for the engine's tests: no transformers anywhere in this package's tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from invarlock import testing


class TinyNet(nn.Module):
    """A small causal-LM-shaped module: a tied embedding / head, norms, a persistent int buffer and a
    non-persistent float buffer (the kinds of state a snapshot must restore)."""

    def __init__(self, vocab: int = 64, hidden: int = 16, layers: int = 2, tied: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 2 * hidden), nn.Linear(2 * hidden, hidden))
            for _ in range(layers)
        )
        self.head = nn.Linear(hidden, vocab, bias=False)
        if tied:
            self.head.weight = self.embed.weight
        self.register_buffer("positions", torch.arange(8, dtype=torch.int64))
        self.register_buffer("inv_freq", torch.rand(hidden // 2), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = x + block(x)
        out: torch.Tensor = self.head(x)
        return out


@pytest.fixture
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def make_model() -> Any:
    def make(seed: int = 0, **kwargs: Any) -> TinyNet:
        torch.manual_seed(seed)
        return TinyNet(**kwargs).eval()

    return make


@pytest.fixture(scope="session")
def full_state() -> Any:
    """``full_state(model)``: every tensor under every name, copied to the CPU."""
    return testing.full_state


@pytest.fixture(scope="session")
def assert_restored() -> Any:
    """``assert_restored(before, model)``: fail unless the model holds ``before`` bit for bit."""
    return testing.assert_restored
