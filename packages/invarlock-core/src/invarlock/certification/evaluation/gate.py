"""The pass/fail rule a certificate or run report is judged by.

Default: the upper bound of the 95% interval of the subject/baseline perplexity ratio must not
exceed 1.10, and every invariant must hold. The bound is the *upper* end of the interval so that
too few windows (a wide interval) fail rather than pass by luck.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from invarlock.certification.evaluation.stats import PairedRatio

DEFAULT_MAX_RATIO = 1.10
DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP = 2000


@dataclass(frozen=True)
class GatePolicy:
    max_ratio: float = DEFAULT_MAX_RATIO
    """The largest allowed upper bound of the ratio's interval."""
    confidence: float = DEFAULT_CONFIDENCE
    bootstrap: int = DEFAULT_BOOTSTRAP
    require_invariants: bool = True

    @property
    def rule(self) -> str:
        return f"upper bound of the {self.confidence:.0%} interval of the ppl ratio <= {self.max_ratio:g}"


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

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


def judge(policy: GatePolicy, stats: PairedRatio, invariants: Sequence[InvariantCheck]) -> GateResult:
    """Apply ``policy``; ``reasons`` says in words why the verdict is what it is."""
    ratio_passed = stats.ci_high <= policy.max_ratio
    failed_invariants = [check for check in invariants if not check.passed]
    invariants_passed = not failed_invariants or not policy.require_invariants
    reasons: list[str] = []
    interval = f"[{stats.ci_low:.4f}, {stats.ci_high:.4f}]"
    if ratio_passed:
        reasons.append(f"ppl ratio {stats.ratio:.4f} {interval}: upper bound within {policy.max_ratio:g}")
    else:
        reasons.append(f"ppl ratio {stats.ratio:.4f} {interval}: upper bound exceeds {policy.max_ratio:g}")
    reasons += [f"invariant {check.name} failed: {check.detail}" for check in failed_invariants]
    return GateResult(ratio_passed and invariants_passed, ratio_passed, invariants_passed, reasons)


def policy_dict(policy: GatePolicy) -> dict[str, Any]:
    return {
        "rule": policy.rule,
        "max_ratio": policy.max_ratio,
        "confidence": policy.confidence,
        "bootstrap": policy.bootstrap,
        "require_invariants": policy.require_invariants,
    }
