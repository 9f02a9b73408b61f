"""Paired statistics on per-window log-loss: the subject/baseline perplexity ratio and its interval.

Pure Python (no numpy, no torch) so it runs, and is tested, with invarlock-core alone.

Both models are scored on the same windows, so each window gives a pair. The perplexity ratio is
``exp((sum of subject NLL - sum of baseline NLL) / tokens)``, i.e. the token-weighted mean of the
per-window log-loss differences. Its confidence interval comes from a paired percentile bootstrap
over windows: windows are resampled with replacement, keeping each window's two scores together.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowScore:
    """One model's score on one window: summed negative log-likelihood (nats) over ``tokens``."""

    window_id: int
    nll: float
    tokens: int

    @property
    def log_loss(self) -> float:
        return self.nll / self.tokens


@dataclass(frozen=True)
class PairedRatio:
    ratio: float
    """Subject perplexity / baseline perplexity over all windows."""
    ci_low: float
    ci_high: float
    confidence: float
    bootstrap: int
    seed: int
    baseline_ppl: float
    subject_ppl: float
    mean_delta_log_loss: float
    """Token-weighted mean of subject minus baseline log-loss (nats per token); log of the ratio."""
    windows: int
    tokens: int


def perplexity(scores: Sequence[WindowScore]) -> float:
    tokens = sum(s.tokens for s in scores)
    return math.exp(sum(s.nll for s in scores) / tokens)


def _check_pairs(baseline: Sequence[WindowScore], subject: Sequence[WindowScore]) -> None:
    if not baseline:
        raise ValueError("no windows were scored")
    if len(baseline) != len(subject):
        raise ValueError(f"{len(baseline)} baseline windows but {len(subject)} subject windows")
    for b, s in zip(baseline, subject, strict=True):
        if b.window_id != s.window_id or b.tokens != s.tokens:
            raise ValueError(f"window {b.window_id} was not scored on the same tokens for both models")
        if b.tokens <= 0:
            raise ValueError(f"window {b.window_id} has no scored tokens")


def paired_ratio(
    baseline: Sequence[WindowScore],
    subject: Sequence[WindowScore],
    *,
    confidence: float = 0.95,
    bootstrap: int = 2000,
    seed: int = 0,
) -> PairedRatio:
    """The subject/baseline perplexity ratio with a paired percentile-bootstrap interval."""
    _check_pairs(baseline, subject)
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")
    if bootstrap < 1:
        raise ValueError("bootstrap needs at least one resample")
    deltas = [s.nll - b.nll for b, s in zip(baseline, subject, strict=True)]
    tokens = [b.tokens for b in baseline]
    total_tokens = sum(tokens)
    mean_delta = sum(deltas) / total_tokens

    ((low, high),) = ratio_intervals(
        [(deltas, tokens)], confidence=confidence, bootstrap=bootstrap, seed=seed
    )
    return PairedRatio(
        ratio=math.exp(mean_delta),
        ci_low=math.exp(low),
        ci_high=math.exp(high),
        confidence=confidence,
        bootstrap=bootstrap,
        seed=seed,
        baseline_ppl=perplexity(baseline),
        subject_ppl=perplexity(subject),
        mean_delta_log_loss=mean_delta,
        windows=len(deltas),
        tokens=total_tokens,
    )


def ratio_intervals(
    series: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    confidence: float,
    bootstrap: int,
    seed: int,
) -> list[tuple[float, float]]:
    """Percentile-bootstrap intervals of ``sum(numerators) / sum(denominators)`` for each
    ``(numerators, denominators)`` pair of per-window values, all resampled with the same windows.

    Windows are drawn with replacement by a generator seeded with ``seed``, so every statistic
    computed on the same windows with the same seed (the ratio, the distribution metrics) sees the
    same resamples.
    """
    n = len(series[0][0])
    if any(len(num) != n or len(den) != n for num, den in series):
        raise ValueError("every series needs one numerator and one denominator per window")
    rng = random.Random(seed)
    indices = range(n)
    resampled: list[list[float]] = [[] for _ in series]
    for _ in range(bootstrap):
        picks = rng.choices(indices, k=n)
        for values, (num, den) in zip(resampled, series, strict=True):
            values.append(sum(num[i] for i in picks) / sum(den[i] for i in picks))
    tail = (1.0 - confidence) / 2.0
    intervals = []
    for values in resampled:
        values.sort()
        intervals.append((_quantile(values, tail), _quantile(values, 1.0 - tail)))
    return intervals


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (numpy's default method)."""
    position = q * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    fraction = position - below
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * fraction
