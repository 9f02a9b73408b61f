"""Scoring windows through an adapter: per-window summed negative log-likelihood.

Every model is scored through ``adapter.logits`` (the ``invarlock_logits`` hook), so PyTorch,
ONNX and quantized models take one path. The primary metric depends on the model's role:

- causal: next-token perplexity over each window;
- masked_lm: masked-token perplexity; 15% of each window's positions (at least one) are replaced
  by the mask token, chosen by a generator seeded with ``seed`` and the window id, so both models
  see the same masks;
- seq2seq: target-token perplexity; the first half of each window is the source, the second half
  the target the decoder must predict.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from invarlock.certification.evaluation.distribution import TokenObserver
from invarlock.certification.evaluation.stats import WindowScore
from invarlock.certification.evaluation.windows import Window
from invarlock.errors import AdapterContractError, DatasetError

DEFAULT_BATCH_SIZE = 8
"""Windows per forward pass (``--batch-size``, ``eval.batch_size``)."""
IGNORE = -100
MASK_FRACTION = 0.15
METRIC_BY_ROLE = {"causal": "ppl_causal", "masked_lm": "ppl_mlm", "seq2seq": "ppl_seq2seq"}


@dataclass(frozen=True)
class Framing:
    """How windows of body tokens become model inputs and labels for one role."""

    role: str
    seed: int = 0
    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    mask_token_id: int | None = None
    decoder_start_token_id: int | None = None

    @property
    def special_tokens(self) -> int:
        """Tokens the framing adds to each window; the body is that much shorter than the sequence."""
        if self.role == "seq2seq":
            return 2 * len(self.suffix)
        return len(self.prefix) + len(self.suffix)

    def scored_tokens(self, body: int) -> int:
        """Tokens scored in a window of ``body`` tokens (what :meth:`batch` labels), known before scoring."""
        if self.role == "causal":
            return body - 1
        if self.role == "masked_lm":
            return max(1, round(MASK_FRACTION * body))
        return body - body // 2 + len(self.suffix)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"kind": METRIC_BY_ROLE[self.role], "role": self.role}
        if self.role == "masked_lm":
            info.update(mask_fraction=MASK_FRACTION, mask_seed=self.seed)
        if self.role == "seq2seq":
            info["split"] = "first half of each window is the source, second half the target"
        return info

    def masked_positions(self, window: Window) -> list[int]:
        body = len(window.tokens)
        k = max(1, round(MASK_FRACTION * body))
        rng = random.Random(f"{self.seed}:{window.window_id}")
        return sorted(rng.sample(range(body), k))

    def batch(self, windows: Sequence[Window]) -> tuple[dict[str, Any], Any]:
        """Model inputs (``torch.LongTensor``s) and labels aligned with the logits' positions."""
        import torch

        if self.role == "causal":
            ids = torch.tensor([w.tokens for w in windows], dtype=torch.long)
            labels = torch.full_like(ids, IGNORE)
            labels[:, :-1] = ids[:, 1:]
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, labels
        if self.role == "masked_lm":
            assert self.mask_token_id is not None, "framing_for sets the mask token for masked LMs"
            mask = self.mask_token_id
            rows, label_rows = [], []
            offset = len(self.prefix)
            for w in windows:
                row = [*self.prefix, *w.tokens, *self.suffix]
                label_row = [IGNORE] * len(row)
                for position in self.masked_positions(w):
                    label_row[offset + position] = row[offset + position]
                    row[offset + position] = mask
                rows.append(row)
                label_rows.append(label_row)
            ids = torch.tensor(rows, dtype=torch.long)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.tensor(label_rows)
        half = len(windows[0].tokens) // 2
        sources = [[*w.tokens[:half], *self.suffix] for w in windows]
        targets = [[*w.tokens[half:], *self.suffix] for w in windows]
        ids = torch.tensor(sources, dtype=torch.long)
        labels = torch.tensor(targets, dtype=torch.long)
        decoder = torch.cat(
            [torch.full((len(windows), 1), self.decoder_start_token_id or 0), labels[:, :-1]], 1
        )
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "decoder_input_ids": decoder}
        return inputs, labels


def framing_for(role: str, tokenizer: Any, model: Any, seed: int) -> Framing:
    """The framing for ``role`` using the tokenizer's special tokens."""
    if role not in METRIC_BY_ROLE:
        raise AdapterContractError(
            f"cannot evaluate a model with role {role!r}; roles are causal, masked_lm, seq2seq"
        )
    if role == "causal":
        return Framing("causal", seed)
    if role == "masked_lm":
        mask = getattr(tokenizer, "mask_token_id", None)
        if mask is None:
            raise DatasetError(
                "the masked LM's tokenizer has no mask token, so masked-token perplexity is undefined"
            )
        cls = getattr(tokenizer, "cls_token_id", None)
        sep = getattr(tokenizer, "sep_token_id", None)
        prefix = (cls,) if cls is not None else ()
        suffix = (sep,) if sep is not None else ()
        return Framing("masked_lm", seed, prefix, suffix, mask_token_id=int(mask))
    eos = getattr(tokenizer, "eos_token_id", None)
    config = getattr(model, "config", None)
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(tokenizer, "pad_token_id", None)
    return Framing("seq2seq", seed, suffix=(eos,) if eos is not None else (), decoder_start_token_id=start)


def score_windows(
    adapter: Any,
    model: Any,
    windows: Sequence[Window],
    framing: Framing,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    observer: TokenObserver | None = None,
) -> list[WindowScore]:
    """Summed NLL per window, computed from ``adapter.logits`` (one forward pass per batch).

    The log-softmax is taken in float32 at the scored positions only (the labels that are not
    ``IGNORE``), one batch at a time; ``observer`` (the distribution metrics) sees those
    log-probabilities before they are discarded, so it costs no second pass.
    """
    import torch
    import torch.nn.functional as F

    scores: list[WindowScore] = []
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        inputs, labels = framing.batch(chunk)
        logits = adapter.logits(model, inputs)
        if logits.shape[:2] != labels.shape:
            raise AdapterContractError(
                f"adapter {adapter.name} returned logits of shape {tuple(logits.shape)} for inputs of shape "
                f"{tuple(labels.shape)}; its invarlock_logits hook must return (batch, seq, vocab)"
            )
        labels = labels.to(logits.device)
        scored = labels != IGNORE
        observed = labels[scored]
        log_probs = F.log_softmax(logits[scored].float(), dim=-1)
        del logits
        losses = torch.zeros(labels.shape, dtype=log_probs.dtype, device=log_probs.device)
        losses[scored] = -log_probs.gather(1, observed[:, None]).squeeze(1)
        nll = losses.sum(dim=1, dtype=torch.float64).tolist()
        counts = scored.sum(dim=1).tolist()
        if observer is not None:
            observer.observe(chunk, counts, log_probs, observed)
        del log_probs
        scores += [WindowScore(w.window_id, n, c) for w, n, c in zip(chunk, nll, counts, strict=True)]
        if on_batch is not None:
            on_batch(len(chunk))
    return scores
