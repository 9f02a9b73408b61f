"""Deterministic evaluation windows: fixed-length token spans chosen with a fixed seed.

The corpus is tokenized once (documents joined by the tokenizer's end-of-text token when it has
one) into a token stream. Candidate windows start every ``stride`` tokens; when there are more
candidates than wanted, a seeded sample is taken and kept in stream order. A window's id is its
start offset in the stream, so ids, seed and the corpus digest reproduce the exact tokens.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from invarlock.certification.datasets import Corpus
from invarlock.errors import DatasetError

DEFAULT_SEQ_LEN = 128
"""Tokens per window, framing included (``--seq-len``, ``dataset.seq_len``)."""
DEFAULT_WINDOWS = 64
"""Windows scored per side (``--windows``, ``dataset.windows``)."""
DEFAULT_SEED = 0
"""Seed for the window sample, the masked positions and the bootstrap (``--seed``, ``dataset.seed``)."""


@dataclass(frozen=True)
class Window:
    window_id: int
    """Start offset of the window in the token stream."""
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class WindowSet:
    windows: list[Window]
    length: int
    stride: int
    seed: int
    stream_tokens: int
    candidates: int

    def info(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for window in self.windows:
            h.update(",".join(map(str, window.tokens)).encode())
            h.update(b";")
        return {
            "window_tokens": self.length,
            "stride": self.stride,
            "seed": self.seed,
            "count": len(self.windows),
            "candidates": self.candidates,
            "stream_tokens": self.stream_tokens,
            "window_ids": [w.window_id for w in self.windows],
            "tokens_sha256": h.hexdigest(),
        }


def token_stream(tokenizer: Any, corpus: Corpus) -> list[int]:
    """The corpus as one list of token ids, documents separated by end-of-text when available."""
    encoded = tokenizer(corpus.documents, add_special_tokens=False, verbose=False)["input_ids"]
    separator = getattr(tokenizer, "eos_token_id", None)
    stream: list[int] = []
    for ids in encoded:
        stream.extend(ids)
        if separator is not None:
            stream.append(int(separator))
    return stream


def make_windows(
    stream: Sequence[int],
    *,
    length: int,
    stride: int | None = None,
    count: int,
    seed: int,
    source: str = "the dataset",
) -> WindowSet:
    """``count`` windows of ``length`` tokens (all of them when there are fewer candidates)."""
    if length < 2:
        raise DatasetError(f"windows need at least 2 tokens, got {length}; raise --seq-len")
    stride = stride or length
    if len(stream) < length:
        raise DatasetError(
            f"{source} has {len(stream)} tokens, too short for one window of {length}; "
            "use more text or a smaller --seq-len"
        )
    starts = list(range(0, len(stream) - length + 1, stride))
    if count < len(starts):
        starts = sorted(random.Random(seed).sample(starts, count))
    windows = [Window(start, tuple(stream[start : start + length])) for start in starts]
    return WindowSet(
        windows, length, stride, seed, len(stream), len(range(0, len(stream) - length + 1, stride))
    )
