"""The model object the ``gguf`` adapter loads, and how hooks recognise it without importing llama.cpp.

A loaded GGUF checkpoint is a :class:`GGUFModel`: the llama.cpp context (``llama_cpp.Llama``
with per-token logits kept for every position), the file it was loaded from, and what its
metadata says. This module imports nothing heavy, so every model-keyed hook can ask
:func:`is_gguf_model` for any model cheaply.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ADAPTER = "gguf"


@dataclass(frozen=True)
class GGUFMetadata:
    """What a GGUF file's header says, read with the ``gguf`` package (no tensor data is read)."""

    path: Path
    architecture: str
    values: dict[str, Any]
    """Every scalar key-value pair, and arrays of numbers, by GGUF key (token lists are kept apart)."""
    tokens: tuple[str, ...]
    """``tokenizer.ggml.tokens``: token strings by id (empty when the file has no vocabulary)."""
    token_types: tuple[int, ...]
    """``tokenizer.ggml.token_type``: llama.cpp token types by id (``gguf.TokenType``)."""
    merges: int
    """How many BPE merges ``tokenizer.ggml.merges`` holds."""
    tensor_types: Counter[str] = field(default_factory=Counter)
    """Tensor count per ggml type name (``Q8_0``, ``F32``...)."""
    tensor_elements: Counter[str] = field(default_factory=Counter)
    """Weight elements per ggml type name."""
    tensor_names: frozenset[str] = frozenset()
    tensor_bytes: int = 0
    """Bytes of tensor data in the file (all tensors, as stored)."""

    def arch_value(self, key: str, default: Any = None) -> Any:
        """The architecture's own key (``llama.block_count`` for ``key="block_count"``)."""
        return self.values.get(f"{self.architecture}.{key}", default)


@dataclass(frozen=True)
class ContextLimit:
    """The positions one window may have: the context the llama.cpp context was created with.

    Exposed as ``GGUFModel.config`` so the window builder's ``max_position_embeddings`` check
    refuses windows longer than the context before scoring starts.
    """

    max_position_embeddings: int


@dataclass(eq=False)
class GGUFModel:
    """A GGUF checkpoint loaded by llama.cpp for scoring."""

    path: Path
    llama: Any
    """The ``llama_cpp.Llama`` context (``logits_all=True``)."""
    metadata: GGUFMetadata
    n_ctx: int
    device: str
    config: ContextLimit

    @property
    def n_vocab(self) -> int:
        return int(self.llama.n_vocab())

    def __repr__(self) -> str:
        return f"<GGUFModel {self.path.name} ({self.metadata.architecture}, n_ctx={self.n_ctx})>"


def is_gguf_model(model: Any) -> bool:
    """True for a model the ``gguf`` adapter loaded."""
    return isinstance(model, GGUFModel)
