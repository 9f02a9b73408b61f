"""The evaluate-and-judge step ``certify`` and ``run`` share.

score (each side on the same windows) → compare (paired ratio and its interval) → invariants →
judge (the gate policy) → evidence (the ``verdict``, ``reasons``, ``stats``, ``gate`` and
``invariants`` blocks of a certificate or report). Only *how the two models are obtained*
differs between the commands: two checkpoints for ``certify``, one model before and after an
edit for ``run``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from invarlock.certification.datasets import Corpus
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

    @property
    def scored_tokens(self) -> int:
        return sum(self.framing.scored_tokens(len(w.tokens)) for w in self.windows.windows)

    def require_enough_evidence(
        self, policy: GatePolicy, how_to_fix: str = HOW_TO_GET_MORE, allow: str = ALLOW_FLAG
    ) -> None:
        """Refuse before scoring when these windows are too little evidence for the gate."""
        policy.require_enough_evidence(len(self.windows.windows), self.scored_tokens, how_to_fix, allow)

    def score(
        self, adapter: Any, model: Any, description: Mapping[str, Any], progress: Progress, label: str
    ) -> ScoredModel:
        """Score ``model`` on every window, and look for non-finite weights while it is loaded."""
        progress.start(label, len(self.windows.windows))
        scores = score_windows(
            adapter,
            model,
            self.windows.windows,
            self.framing,
            batch_size=self.batch_size,
            on_batch=progress.advance,
        )
        return ScoredModel(dict(description), scores, nonfinite_weights(model))


def plan_evaluation(
    tokenizer: Any, corpus: Corpus, stream: Sequence[int], role: str, model: Any, settings: WindowSettings
) -> Evaluation:
    """Frame and cut the windows for ``role``; refused when a window would not fit the model."""
    framing = framing_for(role, tokenizer, model, settings.seed)
    limit = max_positions(model)
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
    return Evaluation(windows, framing, settings.batch_size)


@dataclass(frozen=True)
class ScoredModel:
    """One side after scoring: its description, its per-window scores, its non-finite weights."""

    description: dict[str, Any]
    scores: list[WindowScore]
    nonfinite_weights: list[str] | None
    """Names of weights holding NaN or Inf; None when the model exposes no PyTorch weights."""


@dataclass(frozen=True)
class Judgement:
    policy: GatePolicy
    paired: PairedRatio
    checks: list[InvariantCheck]
    result: GateResult
    baseline: ScoredModel
    subject: ScoredModel

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
            "gate": {
                **policy_dict(self.policy),
                "passed": self.result.passed,
                "ratio_passed": self.result.ratio_passed,
            },
            "invariants": {
                "passed": all(c.passed for c in self.checks),
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
            },
        }


def judge_pair(
    policy: GatePolicy,
    baseline: ScoredModel,
    subject: ScoredModel,
    *,
    seed: int,
    extra_checks: Sequence[InvariantCheck] = (),
) -> Judgement:
    """Compare the two sides window by window, check the invariants and apply the gate."""
    paired = paired_ratio(
        baseline.scores, subject.scores, confidence=policy.confidence, bootstrap=policy.bootstrap, seed=seed
    )
    checks = [
        structure_check(baseline.description, subject.description),
        tying_check(baseline.description, subject.description),
        finite_weights_check("baseline", baseline.nonfinite_weights),
        finite_weights_check("subject", subject.nonfinite_weights),
        finite_scores_check("baseline", baseline.scores),
        finite_scores_check("subject", subject.scores),
        *extra_checks,
    ]
    return Judgement(policy, paired, checks, judge(policy, paired, checks), baseline, subject)


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
