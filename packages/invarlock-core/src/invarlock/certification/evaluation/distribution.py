"""Distribution metrics: how far the subject's predicted distributions moved from the baseline's.

Computed on the scored tokens of the windows the loss is computed on, in the same forward pass
(:func:`~invarlock.certification.evaluation.scoring.score_windows` hands each batch's
log-probabilities to a :class:`TokenObserver`):

- KL(baseline‖subject) per scored token, its mean and 99th percentile;
- top-1 agreement: the share of scored tokens where the baseline's most likely token is also (one
  of) the subject's most likely;
- Δp: the subject's probability of the observed token minus the baseline's, its RMS and its
  largest absolute value.

The baseline is scored first and freed before the subject loads, so its side is kept as
:class:`BaselineDistribution`: per scored token the top-K log-probabilities and their token ids,
the log of the probability outside them (the tail), and the observed token with its
log-probability. KL is then computed over K + 1 outcomes (the baseline's top K tokens and one bin
for everything else): the exact KL of both distributions coarsened that way. By the data
processing inequality it never exceeds the exact KL, and it falls short of it by
``p_tail × KL(baseline tail ‖ subject tail)`` (both tails renormalised); docs/certify.md gives the
measured gap. Top-1 agreement and Δp are exact.

numpy and torch are imported where they are used: invarlock-core alone imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from invarlock.certification.evaluation.stats import ratio_intervals

if TYPE_CHECKING:
    import torch
    from numpy.typing import NDArray

    from invarlock.certification.evaluation.windows import Window

DEFAULT_TOP_K = 16
"""Baseline tokens kept per scored token (``--top-k``, ``eval.top_k``); 0 turns the metrics off.
On the demo model (2048-token vocabulary, perplexity 26: broad distributions) the top-16 estimate
holds 73% of the exact mean KL for the 8-bit subject and 83% for the 2-bit one, and the stored data
is 1.3% of the full float32 logits (106 bytes a token); doubling K adds 6 to 8 points and doubles
the storage, past the 2% budget at 32 (``bench/bench_distribution.py``, docs/certify.md)."""
KL_UNIT = "nats/token"


class TokenObserver(Protocol):
    """Receives each batch's log-probabilities at the scored positions, in scoring order."""

    def observe(
        self,
        windows: Sequence[Window],
        counts: Sequence[int],
        log_probs: torch.Tensor,
        observed: torch.Tensor,
    ) -> None:
        """:param windows: the batch's windows. :param counts: scored tokens of each window.
        :param log_probs: ``(sum(counts), vocab)`` float32 log-probabilities, window by window.
        :param observed: the ``sum(counts)`` token ids that were scored."""


_ARRAYS = (
    "window_ids",
    "window_tokens",
    "top_ids",
    "top_logprobs",
    "tail_logprob",
    "observed_ids",
    "observed_logprob",
)


@dataclass(frozen=True, eq=False)
class BaselineDistribution:
    """The baseline's contribution to the distribution metrics, per scored token in scoring order.

    :meth:`arrays` and :meth:`from_arrays` let a store keep and reload it without knowing its fields.
    """

    window_ids: NDArray[Any]
    """``(windows,)`` int64: the id of each scored window."""
    window_tokens: NDArray[Any]
    """``(windows,)`` int64: scored tokens of each window; the rows below are grouped by window."""
    top_ids: NDArray[Any]
    """``(tokens, K)``: the baseline's K most likely token ids, most likely first (uint16 for
    vocabularies up to 65536 tokens, else int32)."""
    top_logprobs: NDArray[Any]
    """``(tokens, K)`` float32: their log-probabilities."""
    tail_logprob: NDArray[Any]
    """``(tokens,)`` float32: log of the probability outside the top K, ``log(1 - sum top-K probs)``
    (:func:`tail_logprob`; ``-inf`` when K covers the vocabulary)."""
    observed_ids: NDArray[Any]
    """``(tokens,)``, the dtype of ``top_ids``: the token each position scores."""
    observed_logprob: NDArray[Any]
    """``(tokens,)`` float32: the baseline's log-probability of it."""

    @property
    def top_k(self) -> int:
        return int(self.top_ids.shape[1])

    @property
    def tokens(self) -> int:
        return int(self.top_ids.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(int(array.nbytes) for array in self.arrays().values())

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {name: getattr(self, name) for name in _ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> BaselineDistribution:
        """Rebuild from :meth:`arrays`; ``ValueError`` when they do not fit together."""
        import numpy

        missing = [name for name in _ARRAYS if name not in arrays]
        if missing:
            raise ValueError(f"baseline distribution arrays lack {', '.join(missing)}")
        data = {name: numpy.asarray(arrays[name]) for name in _ARRAYS}
        windows, tokens = data["window_ids"], data["window_tokens"]
        rows = int(tokens.sum()) if tokens.ndim == 1 else -1
        ids_kind = data["top_ids"].dtype
        expected = {
            "window_ids": ((windows.shape[0],), "i"),
            "window_tokens": ((windows.shape[0],), "i"),
            "top_ids": ((rows, data["top_ids"].shape[-1]), ids_kind.kind),
            "top_logprobs": ((rows, data["top_ids"].shape[-1]), "f"),
            "tail_logprob": ((rows,), "f"),
            "observed_ids": ((rows,), ids_kind.kind),
            "observed_logprob": ((rows,), "f"),
        }
        for name, (shape, kind) in expected.items():
            array = data[name]
            if (
                array.shape != shape
                or array.dtype.kind != kind
                or (name.endswith("ids") and kind not in "iu")
            ):
                raise ValueError(
                    f"baseline distribution array {name} has shape {array.shape} and dtype {array.dtype}, "
                    f"expected shape {shape}"
                )
        return cls(**data)

    def require_same_windows(self, windows: Sequence[Window], counts: Sequence[int], start: int) -> None:
        """The subject's batch must be the baseline's windows, at the same place, with as many scored
        tokens (``ValueError`` otherwise: the two sides were not scored on the same evaluation)."""
        ids = [int(i) for i in self.window_ids[start : start + len(windows)]]
        tokens = [int(t) for t in self.window_tokens[start : start + len(windows)]]
        if ids != [w.window_id for w in windows] or tokens != list(counts):
            raise ValueError("the subject was not scored on the windows the baseline distribution holds")


TAIL_EXACT_BELOW = 1e-3
"""Below this tail mass, ``1 - sum of top-K probabilities`` loses too many digits and the tail is
summed over the other tokens instead."""


def tail_logprob(log_probs: torch.Tensor, ids: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Log of the probability outside ``ids`` per row (float32, as stored), from ``chosen`` (the
    log-probabilities at ``ids``): ``log1p(-sum)``, and an exact log-sum-exp over the other tokens
    for the rows whose tail is below :data:`TAIL_EXACT_BELOW`, where the subtraction would lose
    digits. One pass over K values a row, not over the vocabulary, for all other rows."""
    import torch

    mass = chosen.double().exp().sum(dim=1)
    tail = torch.log1p(-mass.clamp(max=1.0))
    rows = (1.0 - mass < TAIL_EXACT_BELOW).nonzero().squeeze(1)
    if rows.numel():
        others = log_probs[rows].scatter(1, ids[rows], -math.inf)
        tail[rows] = torch.logsumexp(others, dim=-1).double()
    return tail.float()


def id_dtype(vocab_size: int) -> Any:
    import numpy

    return numpy.uint16 if vocab_size <= 2**16 else numpy.int32


class BaselineRecorder:
    """A :class:`TokenObserver` that keeps the baseline's top ``top_k`` per scored token."""

    def __init__(self, top_k: int) -> None:
        if top_k < 1:
            raise ValueError("the baseline distribution needs top_k of at least 1")
        self.top_k = top_k
        self._parts: dict[str, list[Any]] = {name: [] for name in _ARRAYS}

    def observe(
        self,
        windows: Sequence[Window],
        counts: Sequence[int],
        log_probs: torch.Tensor,
        observed: torch.Tensor,
    ) -> None:
        import numpy

        vocab = log_probs.shape[-1]
        top_logprobs, top_ids = log_probs.topk(min(self.top_k, vocab), dim=-1)
        tail = tail_logprob(log_probs, top_ids, top_logprobs)
        ids = id_dtype(vocab)
        parts = self._parts
        parts["window_ids"].append(numpy.array([w.window_id for w in windows], dtype=numpy.int64))
        parts["window_tokens"].append(numpy.array(counts, dtype=numpy.int64))
        parts["top_ids"].append(top_ids.cpu().numpy().astype(ids))
        parts["top_logprobs"].append(top_logprobs.cpu().numpy().astype(numpy.float32))
        parts["tail_logprob"].append(tail.cpu().numpy().astype(numpy.float32))
        parts["observed_ids"].append(observed.cpu().numpy().astype(ids))
        parts["observed_logprob"].append(
            log_probs.gather(1, observed[:, None]).squeeze(1).cpu().numpy().astype(numpy.float32)
        )

    def result(self) -> BaselineDistribution:
        import numpy

        if not self._parts["window_ids"]:
            raise ValueError("no windows were scored")
        return BaselineDistribution(**{name: numpy.concatenate(parts) for name, parts in self._parts.items()})


@dataclass(frozen=True, eq=False)
class TokenComparison:
    """The subject against :class:`BaselineDistribution`, token by token."""

    window_ids: list[int]
    window_tokens: list[int]
    kl: NDArray[Any]
    """``(tokens,)`` float64: KL(baseline‖subject) over the baseline's top K and the tail, in nats."""
    top1_agrees: NDArray[Any]
    """``(tokens,)`` bool: the baseline's most likely token is one of the subject's most likely."""
    delta_p: NDArray[Any]
    """``(tokens,)`` float64: subject minus baseline probability of the observed token."""
    top_k: int


class SubjectComparer:
    """A :class:`TokenObserver` that compares the subject's log-probabilities with the baseline's,
    batch by batch, keeping three numbers per token (the subject's logits are not kept)."""

    def __init__(self, baseline: BaselineDistribution) -> None:
        self.baseline = baseline
        self._row = 0
        self._window = 0
        self._parts: dict[str, list[Any]] = {"kl": [], "top1_agrees": [], "delta_p": []}

    def observe(
        self,
        windows: Sequence[Window],
        counts: Sequence[int],
        log_probs: torch.Tensor,
        observed: torch.Tensor,
    ) -> None:
        import torch

        base = self.baseline
        base.require_same_windows(windows, counts, self._window)
        rows = slice(self._row, self._row + int(log_probs.shape[0]))
        device = log_probs.device
        if not numpy_equal(base.observed_ids[rows], observed):
            raise ValueError("the subject was scored on other tokens than the baseline distribution holds")
        top_ids = torch.from_numpy(base.top_ids[rows].astype("int64")).to(device)
        p_logs = torch.from_numpy(base.top_logprobs[rows]).to(device, torch.float64)
        p_tail_log = torch.from_numpy(base.tail_logprob[rows]).to(device, torch.float64)
        q_logs = log_probs.gather(1, top_ids)
        q_tail_log = tail_logprob(log_probs, top_ids, q_logs).double()
        q_logs = q_logs.double()
        kl = (p_logs.exp() * (p_logs - q_logs)).sum(dim=1)
        p_tail = p_tail_log.exp()
        kl += torch.where(p_tail > 0, p_tail * (p_tail_log - q_tail_log), torch.zeros_like(p_tail))
        agrees = q_logs[:, 0] >= log_probs.max(dim=-1).values.double()
        q_observed = log_probs.gather(1, observed[:, None]).squeeze(1).double().exp()
        p_observed = torch.from_numpy(base.observed_logprob[rows]).to(device, torch.float64).exp()
        self._parts["kl"].append(kl.cpu().numpy())
        self._parts["top1_agrees"].append(agrees.cpu().numpy())
        self._parts["delta_p"].append((q_observed - p_observed).cpu().numpy())
        self._row = rows.stop
        self._window += len(windows)

    def result(self) -> TokenComparison:
        import numpy

        base = self.baseline
        if self._row != base.tokens:
            raise ValueError(
                f"the subject was scored on {self._row} tokens "
                f"but the baseline distribution holds {base.tokens}"
            )
        return TokenComparison(
            [int(i) for i in base.window_ids],
            [int(t) for t in base.window_tokens],
            top_k=base.top_k,
            **{name: numpy.concatenate(parts) for name, parts in self._parts.items()},
        )


def numpy_equal(stored: NDArray[Any], observed: torch.Tensor) -> bool:
    import numpy

    return bool(numpy.array_equal(stored.astype(numpy.int64), observed.cpu().numpy()))


@dataclass(frozen=True)
class DistributionMetrics:
    """The summary the certificate shows; intervals are paired bootstraps over windows."""

    top_k: int
    tokens: int
    kl_mean: float
    kl_ci: tuple[float, float]
    kl_p99: float
    top1_rate: float
    top1_ci: tuple[float, float]
    delta_p_rms: float
    delta_p_rms_ci: tuple[float, float]
    delta_p_max: float
    """The largest absolute change in the observed token's probability."""

    def block(self) -> dict[str, Any]:
        """The certificate's ``distribution`` block (non-finite numbers written as null)."""
        return {
            "top_k": self.top_k,
            "tokens": self.tokens,
            "kl": {
                "mean": _finite(self.kl_mean),
                "ci": [_finite(v) for v in self.kl_ci],
                "p99": _finite(self.kl_p99),
                "unit": KL_UNIT,
            },
            "top1_agreement": {"rate": _finite(self.top1_rate), "ci": [_finite(v) for v in self.top1_ci]},
            "delta_p": {
                "rms": _finite(self.delta_p_rms),
                "rms_ci": [_finite(v) for v in self.delta_p_rms_ci],
                "max": _finite(self.delta_p_max),
            },
            "approximation": approximation_sentence(self.top_k),
        }


def approximation_sentence(top_k: int) -> str:
    return (
        f"KL over the baseline's top {top_k} tokens and one bin for the rest of its probability, a lower "
        "bound of the exact KL short of it by the baseline's tail mass times the KL between the two tails "
        "(73-83% of the exact KL on the demo model at top 16, docs/certify.md); "
        "top-1 agreement and Δp are exact"
    )


def distribution_metrics(
    comparison: TokenComparison, *, confidence: float, bootstrap: int, seed: int
) -> DistributionMetrics:
    """Means over all scored tokens, with paired percentile-bootstrap intervals over windows drawn as
    the ratio's are (same seed, same resamples); RMS Δp's interval is the square root of the mean
    squared Δp's."""
    import numpy

    bounds = numpy.cumsum([0, *comparison.window_tokens])
    tokens = [float(t) for t in comparison.window_tokens]

    def per_window(values: NDArray[Any]) -> list[float]:
        sums = numpy.add.reduceat(values.astype(numpy.float64), bounds[:-1])
        return [float(v) for v in sums]

    kl, agrees, delta_p = comparison.kl, comparison.top1_agrees, comparison.delta_p
    squares = delta_p * delta_p
    intervals = ratio_intervals(
        [(per_window(kl), tokens), (per_window(agrees), tokens), (per_window(squares), tokens)],
        confidence=confidence,
        bootstrap=bootstrap,
        seed=seed,
    )
    (kl_low, kl_high), (top1_low, top1_high), (sq_low, sq_high) = intervals
    return DistributionMetrics(
        top_k=comparison.top_k,
        tokens=int(kl.shape[0]),
        kl_mean=float(kl.mean()),
        kl_ci=(kl_low, kl_high),
        kl_p99=float(numpy.quantile(kl, 0.99)),
        top1_rate=float(agrees.mean()),
        top1_ci=(top1_low, top1_high),
        delta_p_rms=math.sqrt(float(squares.mean())),
        delta_p_rms_ci=(_sqrt(sq_low), _sqrt(sq_high)),
        delta_p_max=float(numpy.abs(delta_p).max()),
    )


def _sqrt(value: float) -> float:
    return math.sqrt(value) if value >= 0 else math.nan


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
