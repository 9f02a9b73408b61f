"""Invariants a subject must keep: the baseline's structure and tying, and finite weights and scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from invarlock.certification.evaluation.gate import InvariantCheck
from invarlock.certification.evaluation.stats import WindowScore
from invarlock.description import STRUCTURAL_KEYS


def structure_check(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> InvariantCheck:
    differing = [key for key in STRUCTURAL_KEYS if baseline.get(key) != subject.get(key)]
    if not differing:
        return InvariantCheck("structure", True, f"descriptions agree on {', '.join(STRUCTURAL_KEYS)}")
    details = "; ".join(f"{k}: {baseline.get(k)!r} vs {subject.get(k)!r}" for k in differing)
    return InvariantCheck("structure", False, f"baseline vs subject differ in {details}")


def tying_check(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> InvariantCheck:
    before, after = dict(baseline.get("tying") or {}), dict(subject.get("tying") or {})
    if before == after:
        return InvariantCheck("tying", True, f"{len(before)} tied pair(s) preserved")
    lost = sorted(set(before.items()) - set(after.items()))
    new = sorted(set(after.items()) - set(before.items()))
    return InvariantCheck(
        "tying", False, f"tied pairs lost: {lost or 'none'}; tied pairs added: {new or 'none'}"
    )


def nonfinite_weights(model: Any) -> list[str] | None:
    """Names of floating-point weights holding NaN or Inf, or None when the model exposes no torch weights."""
    if not (hasattr(model, "named_parameters") and hasattr(model, "named_buffers")):
        return None
    import torch

    bad: list[str] = []
    seen: set[int] = set()
    tensors = [*model.named_parameters(), *model.named_buffers()]
    with torch.no_grad():
        for name, tensor in tensors:
            if id(tensor) in seen or not tensor.is_floating_point() or tensor.device.type == "meta":
                continue
            seen.add(id(tensor))
            if not bool(torch.isfinite(tensor).all()):
                bad.append(name)
    return bad


def finite_weights_check(side: str, bad: list[str] | None) -> InvariantCheck:
    name = f"finite_weights_{side}"
    if bad is None:
        return InvariantCheck(
            name, True, "not applicable: the model exposes no PyTorch weights (outputs checked instead)"
        )
    if bad:
        return InvariantCheck(name, False, f"{len(bad)} tensor(s) hold NaN or Inf, e.g. {', '.join(bad[:3])}")
    return InvariantCheck(name, True, "no NaN or Inf in floating-point weights and buffers")


def finite_scores_check(side: str, scores: Sequence[WindowScore]) -> InvariantCheck:
    bad = [s.window_id for s in scores if not math.isfinite(s.nll)]
    name = f"finite_outputs_{side}"
    if bad:
        return InvariantCheck(name, False, f"{len(bad)} window(s) scored NaN or Inf, e.g. windows {bad[:3]}")
    return InvariantCheck(name, True, f"all {len(scores)} window losses are finite")
