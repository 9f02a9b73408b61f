"""The pass/fail rule a certificate or run report is judged by.

Default: the upper bound of the 95% interval of the subject/baseline perplexity ratio must not
exceed 1.10, and every invariant must hold. The bound is the *upper* end of the interval so that a
wide interval fails rather than passes by luck. Below ``min_windows`` windows or ``min_tokens``
scored tokens the interval itself cannot be trusted (the paired percentile bootstrap holds the true
ratio far less often than its nominal level; ``scripts/bootstrap_coverage.py``): there is no
verdict then, only a refusal (:class:`~invarlock.errors.InsufficientEvidenceError`) or, when the
policy allows it, ``INCONCLUSIVE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from invarlock.certification.evaluation.stats import PairedRatio
from invarlock.errors import InsufficientEvidenceError

DEFAULT_MAX_RATIO = 1.10
DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP = 2000
MIN_WINDOWS = 32
"""Fewest windows for a verdict. On real per-window scores the nominal 95% interval holds the true
ratio in about 94% of trials from 32 windows on (where it levels off), in 89-90% at 8 to 16
windows, in under half at 2, and never at 1 (``scripts/bootstrap_coverage.py``)."""
MIN_TOKENS = 1024
"""Fewest scored tokens for a verdict: 32 windows of at least 32 scored tokens each."""
INCONCLUSIVE = "INCONCLUSIVE"
ALLOW_FLAG = "pass --allow-inconclusive"


@dataclass(frozen=True)
class GatePolicy:
    max_ratio: float = DEFAULT_MAX_RATIO
    """The largest allowed upper bound of the ratio's interval."""
    confidence: float = DEFAULT_CONFIDENCE
    bootstrap: int = DEFAULT_BOOTSTRAP
    require_invariants: bool = True
    min_windows: int = MIN_WINDOWS
    min_tokens: int = MIN_TOKENS
    allow_inconclusive: bool = False
    """Below the minimum, write an ``INCONCLUSIVE`` verdict instead of refusing."""

    @property
    def rule(self) -> str:
        return (
            f"upper bound of the {self.confidence:.0%} interval of the ppl ratio <= {self.max_ratio:g}, "
            f"on at least {self.min_windows} windows and {self.min_tokens} scored tokens"
        )

    def shortfall(self, windows: int, tokens: int) -> str | None:
        """Why ``windows`` and ``tokens`` are too little evidence for a verdict, or None."""
        if windows >= self.min_windows and tokens >= self.min_tokens:
            return None
        return (
            f"{windows} window(s) and {tokens} scored token(s) are too little evidence for a verdict: "
            f"the gate needs at least {self.min_windows} windows and {self.min_tokens} scored tokens, "
            "below which its interval cannot be trusted"
        )

    def require_enough_evidence(
        self, windows: int, tokens: int, how_to_fix: str, allow: str = ALLOW_FLAG
    ) -> None:
        """Refuse (exit 2) when there is too little evidence, unless INCONCLUSIVE is allowed."""
        shortfall = self.shortfall(windows, tokens)
        if shortfall is not None and not self.allow_inconclusive:
            raise InsufficientEvidenceError(
                f"{shortfall}; {how_to_fix}, or {allow} for an INCONCLUSIVE verdict"
            )


@dataclass(frozen=True)
class InvariantCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    ratio_passed: bool
    invariants_passed: bool
    reasons: list[str] = field(default_factory=list)
    enough_evidence: bool = True

    @property
    def verdict(self) -> str:
        if not self.enough_evidence:
            return INCONCLUSIVE
        return "PASS" if self.passed else "FAIL"


def judge(policy: GatePolicy, stats: PairedRatio, invariants: Sequence[InvariantCheck]) -> GateResult:
    """Apply ``policy``; ``reasons`` says in words why the verdict is what it is.

    Too little evidence is refused here too (the callers check earlier, before any model is
    loaded, from what they asked for), so no verdict is ever judged on it.
    """
    policy.require_enough_evidence(stats.windows, stats.tokens, "score more windows")
    shortfall = policy.shortfall(stats.windows, stats.tokens)
    ratio_passed = stats.ci_high <= policy.max_ratio
    failed_invariants = [check for check in invariants if not check.passed]
    invariants_passed = not failed_invariants or not policy.require_invariants
    reasons: list[str] = []
    interval = f"[{stats.ci_low:.4f}, {stats.ci_high:.4f}]"
    if ratio_passed:
        reasons.append(f"ppl ratio {stats.ratio:.4f} {interval}: upper bound within {policy.max_ratio:g}")
    else:
        reasons.append(f"ppl ratio {stats.ratio:.4f} {interval}: upper bound exceeds {policy.max_ratio:g}")
    if shortfall is not None:
        reasons.append(f"INCONCLUSIVE: {shortfall}; the ratio and its interval decide nothing")
    reasons += [f"invariant {check.name} failed: {check.detail}" for check in failed_invariants]
    passed = ratio_passed and invariants_passed and shortfall is None
    return GateResult(passed, ratio_passed, invariants_passed, reasons, enough_evidence=shortfall is None)


def policy_dict(policy: GatePolicy) -> dict[str, Any]:
    return {
        "rule": policy.rule,
        "max_ratio": policy.max_ratio,
        "confidence": policy.confidence,
        "bootstrap": policy.bootstrap,
        "require_invariants": policy.require_invariants,
        "min_windows": policy.min_windows,
        "min_tokens": policy.min_tokens,
        "allow_inconclusive": policy.allow_inconclusive,
    }
