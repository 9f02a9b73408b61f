"""The evaluate-and-judge step ``certify`` and ``run`` share.

score (each side on the same windows; the baseline's top-K distribution kept, the subject's
compared with it in its own pass) → compare (paired ratio, distribution metrics, their intervals) →
invariants → judge (the gate policy) → evidence (the ``verdict``, ``reasons``, ``stats``,
``distribution``, ``gate`` and ``invariants`` blocks of a certificate or report). Only *how the
two models are obtained* differs between the commands: two checkpoints for ``certify``, one model
before and after an
edit for ``run``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from invarlock.certification.datasets import Corpus
from invarlock.certification.evaluation.distribution import (
    DEFAULT_TOP_K,
    BaselineDistribution,
    BaselineRecorder,
    DistributionMetrics,
    SubjectComparer,
    TokenComparison,
    TokenObserver,
    distribution_metrics,
)
from invarlock.certification.evaluation.gate import (
    ALLOW_FLAG,
    GatePolicy,
    GateResult,
    InvariantCheck,
    judge,
    policy_dict,
)
from invarlock.certification.evaluation.invariants import (
    finite_scores_check,
    finite_weights_check,
    nonfinite_weights,
    structure_check,
    structure_delta,
    tying_check,
)
from invarlock.certification.evaluation.scoring import DEFAULT_BATCH_SIZE, Framing, framing_for, score_windows
from invarlock.certification.evaluation.stats import PairedRatio, WindowScore, paired_ratio
from invarlock.certification.evaluation.windows import (
    DEFAULT_SEED,
    DEFAULT_SEQ_LEN,
    DEFAULT_WINDOWS,
    WindowSet,
    make_windows,
)
from invarlock.certification.progress import Progress
from invarlock.certification.structure_change import StructureChange
from invarlock.errors import DatasetError, InsufficientEvidenceError

HOW_TO_GET_MORE = "use more text, more windows (--windows) or longer ones (--seq-len)"


@dataclass(frozen=True)
class WindowSettings:
    """How many windows of how many tokens, and the seed behind every random choice."""

    seq_len: int = DEFAULT_SEQ_LEN
    stride: int | None = None
    windows: int = DEFAULT_WINDOWS
    seed: int = DEFAULT_SEED
    batch_size: int = DEFAULT_BATCH_SIZE
    top_k: int = DEFAULT_TOP_K
    """Baseline tokens kept per scored token for the distribution metrics; 0: no distribution metrics."""

    def require_enough_windows(
        self, policy: GatePolicy, flag: str = "--windows", allow: str = ALLOW_FLAG
    ) -> None:
        """Refuse, before anything is loaded, a window count below the gate's minimum."""
        if self.windows < policy.min_windows and not policy.allow_inconclusive:
            raise InsufficientEvidenceError(
                f"{flag} {self.windows} asks for fewer windows than the {policy.min_windows} the gate needs "
                f"for a verdict; ask for {policy.min_windows} or more, or {allow} for an INCONCLUSIVE verdict"
            )


def max_positions(model: Any) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class Evaluation:
    """The windows both sides are scored on, and how they are framed for the model's role."""

    windows: WindowSet
    framing: Framing
    batch_size: int
    top_k: int = DEFAULT_TOP_K

    @property
    def scored_tokens(self) -> int:
        return sum(self.framing.scored_tokens(len(w.tokens)) for w in self.windows.windows)

    def require_enough_evidence(
        self, policy: GatePolicy, how_to_fix: str = HOW_TO_GET_MORE, allow: str = ALLOW_FLAG
    ) -> None:
        """Refuse before scoring when these windows are too little evidence for the gate."""
        policy.require_enough_evidence(len(self.windows.windows), self.scored_tokens, how_to_fix, allow)

    def score(
        self,
        adapter: Any,
        model: Any,
        description: Mapping[str, Any],
        progress: Progress,
        label: str,
        baseline: ScoredModel | None = None,
    ) -> ScoredModel:
        """Score ``model`` on every window, and look for non-finite weights while it is loaded.

        Without ``baseline`` this is the baseline: its top-``top_k`` distribution is kept. With it,
        ``model`` is the subject, compared token by token with the baseline's distribution."""
        observer: TokenObserver | None = None
        recorder: BaselineRecorder | None = None
        comparer: SubjectComparer | None = None
        if baseline is None and self.top_k > 0:
            observer = recorder = BaselineRecorder(self.top_k)
        elif baseline is not None and baseline.distribution is not None:
            observer = comparer = SubjectComparer(baseline.distribution)
        progress.start(label, len(self.windows.windows))
        scores = score_windows(
            adapter,
            model,
            self.windows.windows,
            self.framing,
            batch_size=self.batch_size,
            on_batch=progress.advance,
            observer=observer,
        )
        return ScoredModel(
            dict(description),
            scores,
            nonfinite_weights(model),
            distribution=recorder.result() if recorder is not None else None,
            comparison=comparer.result() if comparer is not None else None,
        )


def plan_evaluation(
    tokenizer: Any, corpus: Corpus, stream: Sequence[int], role: str, model: Any, settings: WindowSettings
) -> Evaluation:
    """Frame and cut the windows for ``role``; refused when a window would not fit the model."""
    framing = framing_for(role, tokenizer, model, settings.seed)
    return plan_windows(corpus, stream, framing, max_positions(model), settings)


def plan_windows(
    corpus: Corpus, stream: Sequence[int], framing: Framing, limit: int | None, settings: WindowSettings
) -> Evaluation:
    """Cut the windows for ``framing``, refused when longer than ``limit`` positions: what
    :func:`plan_evaluation` does once the model has told it its framing and its limit (a cached
    baseline holds both, so the model need not be loaded)."""
    if limit is not None and settings.seq_len > limit:
        raise DatasetError(
            f"windows of {settings.seq_len} tokens are longer than the model's {limit} positions; "
            f"pass --seq-len {limit} or less"
        )
    windows = make_windows(
        stream,
        length=settings.seq_len - framing.special_tokens,
        stride=settings.stride,
        count=settings.windows,
        seed=settings.seed,
        source=f"dataset {corpus.source}",
    )
    return Evaluation(windows, framing, settings.batch_size, settings.top_k)


@dataclass(frozen=True)
class ScoredModel:
    """One side after scoring: its description, its per-window scores, its non-finite weights."""

    description: dict[str, Any]
    scores: list[WindowScore]
    nonfinite_weights: list[str] | None
    """Names of weights holding NaN or Inf; None when the model exposes no PyTorch weights."""
    distribution: BaselineDistribution | None = None
    """The baseline side's top-K distribution (None for the subject, or with ``top_k`` 0)."""
    comparison: TokenComparison | None = None
    """The subject side compared with the baseline's distribution (None for the baseline)."""


@dataclass(frozen=True)
class Judgement:
    policy: GatePolicy
    paired: PairedRatio
    checks: list[InvariantCheck]
    result: GateResult
    baseline: ScoredModel
    subject: ScoredModel
    declared: StructureChange | None = None
    """The structure change declared for the subject (the subject's own vocab_growth aside)."""
    distribution: DistributionMetrics | None = None

    @property
    def passed(self) -> bool:
        return self.result.passed

    def evidence(self) -> dict[str, Any]:
        """The judged blocks of a certificate or report."""
        return {
            "verdict": self.result.verdict,
            "exit_code": 0 if self.result.passed else 1,
            "reasons": self.result.reasons,
            "stats": stats_block(self.paired, self.baseline.scores, self.subject.scores),
            **({"distribution": self.distribution.block()} if self.distribution is not None else {}),
            "gate": {
                **policy_dict(self.policy),
                "passed": self.result.passed,
                "ratio_passed": self.result.ratio_passed,
                "distribution_passed": self.result.distribution_passed,
            },
            "invariants": {
                "passed": all(c.passed for c in self.checks),
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
            },
            "structure_delta": self.structure_delta(),
        }

    def structure_delta(self) -> dict[str, Any]:
        """The declaration in force and every structural difference, per layer, judged against it."""
        change, found, one_sided = structure_delta(
            self.baseline.description, self.subject.description, self.declared
        )
        return {
            "declared": change.to_dict() if change else None,
            "passed": all(d.status == "declared" for d in found),
            "changes": [d.info() for d in found],
            "not_compared": sorted(one_sided),
        }


def judge_pair(
    policy: GatePolicy,
    baseline: ScoredModel,
    subject: ScoredModel,
    *,
    seed: int,
    extra_checks: Sequence[InvariantCheck] = (),
    declared: StructureChange | None = None,
) -> Judgement:
    """Compare the two sides window by window, check the invariants and apply the gate.

    :param declared: the structure change declared for the subject, which the structure invariant
        holds it to exactly."""
    paired = paired_ratio(
        baseline.scores, subject.scores, confidence=policy.confidence, bootstrap=policy.bootstrap, seed=seed
    )
    checks = [
        structure_check(baseline.description, subject.description, declared),
        tying_check(baseline.description, subject.description),
        finite_weights_check("baseline", baseline.nonfinite_weights),
        finite_weights_check("subject", subject.nonfinite_weights),
        finite_scores_check("baseline", baseline.scores),
        finite_scores_check("subject", subject.scores),
        *extra_checks,
    ]
    metrics = None
    if subject.comparison is not None:
        metrics = distribution_metrics(
            subject.comparison, confidence=policy.confidence, bootstrap=policy.bootstrap, seed=seed
        )
    result = judge(policy, paired, checks, metrics)
    return Judgement(policy, paired, checks, result, baseline, subject, declared, metrics)


def finite(value: float) -> float | None:
    """JSON has no NaN or Inf: non-finite numbers are written as null."""
    return value if math.isfinite(value) else None


def stats_block(
    paired: PairedRatio, baseline: Sequence[WindowScore], subject: Sequence[WindowScore]
) -> dict[str, Any]:
    return {
        "ratio": finite(paired.ratio),
        "ci": [finite(paired.ci_low), finite(paired.ci_high)],
        "confidence": paired.confidence,
        "method": "paired percentile bootstrap over windows",
        "bootstrap": paired.bootstrap,
        "seed": paired.seed,
        "baseline_ppl": finite(paired.baseline_ppl),
        "subject_ppl": finite(paired.subject_ppl),
        "mean_delta_log_loss": finite(paired.mean_delta_log_loss),
        "windows": paired.windows,
        "tokens": paired.tokens,
        "per_window": [
            {
                "id": b.window_id,
                "tokens": b.tokens,
                "baseline": finite(b.log_loss),
                "subject": finite(s.log_loss),
            }
            for b, s in zip(baseline, subject, strict=True)
        ],
    }
