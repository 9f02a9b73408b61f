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

from invarlock.certification.evaluation.distribution import DistributionMetrics
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
    max_kl: float | None = None
    """The largest allowed upper bound of the interval of the mean KL(baseline‖subject), in nats per
    token; None (the default): KL is reported, not gated. No threshold fits every model and vocabulary
    (the demo's 8-bit subject is near 0.001, its 2-bit subject above 1), so there is no default."""
    min_top1_agreement: float | None = None
    """The smallest allowed lower bound of the interval of the top-1 agreement rate; None (the
    default): reported, not gated."""

    @property
    def distribution_gated(self) -> bool:
        return self.max_kl is not None or self.min_top1_agreement is not None

    @property
    def rule(self) -> str:
        level = f"{self.confidence:.0%} interval"
        bounds = [f"upper bound of the {level} of the ppl ratio <= {self.max_ratio:g}"]
        if self.max_kl is not None:
            bounds.append(f"upper bound of the mean KL's {level} <= {self.max_kl:g} nats/token")
        if self.min_top1_agreement is not None:
            bounds.append(f"lower bound of the top-1 agreement's {level} >= {self.min_top1_agreement:g}")
        return (
            f"{', '.join(bounds)}, on at least {self.min_windows} windows and {self.min_tokens} scored tokens"
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
    distribution_passed: bool | None = None
    """Whether the distribution gates (``max_kl``, ``min_top1_agreement``) hold; None when none is set."""

    @property
    def verdict(self) -> str:
        if not self.enough_evidence:
            return INCONCLUSIVE
        return "PASS" if self.passed else "FAIL"


def judge(
    policy: GatePolicy,
    stats: PairedRatio,
    invariants: Sequence[InvariantCheck],
    distribution: DistributionMetrics | None = None,
) -> GateResult:
    """Apply ``policy``; ``reasons`` says in words why the verdict is what it is.

    Too little evidence is refused here too (the callers check earlier, before any model is
    loaded, from what they asked for), so no verdict is ever judged on it. A distribution gate
    without distribution metrics (``top_k`` 0) fails; the commands refuse that combination first.
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
    distribution_passed = _judge_distribution(policy, distribution, reasons)
    reasons += [f"invariant {check.name} failed: {check.detail}" for check in failed_invariants]
    passed = ratio_passed and invariants_passed and shortfall is None and distribution_passed is not False
    return GateResult(
        passed,
        ratio_passed,
        invariants_passed,
        reasons,
        enough_evidence=shortfall is None,
        distribution_passed=distribution_passed,
    )


def _judge_distribution(
    policy: GatePolicy, metrics: DistributionMetrics | None, reasons: list[str]
) -> bool | None:
    if not policy.distribution_gated:
        return None
    if metrics is None:
        reasons.append("the gate bounds the distribution metrics, but they were not computed (top_k 0)")
        return False
    passed = True
    if policy.max_kl is not None:
        low, high = metrics.kl_ci
        within = high <= policy.max_kl
        passed &= within
        verdict = "within" if within else "exceeds"
        reasons.append(
            f"mean KL {metrics.kl_mean:.4g} nats/token [{low:.4g}, {high:.4g}]: "
            f"upper bound {verdict} {policy.max_kl:g}"
        )
    if policy.min_top1_agreement is not None:
        low, high = metrics.top1_ci
        within = low >= policy.min_top1_agreement
        passed &= within
        verdict = "at least" if within else "below"
        reasons.append(
            f"top-1 agreement {metrics.top1_rate:.4f} [{low:.4f}, {high:.4f}]: "
            f"lower bound {verdict} {policy.min_top1_agreement:g}"
        )
    return passed


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
        "max_kl": policy.max_kl,
        "min_top1_agreement": policy.min_top1_agreement,
    }
