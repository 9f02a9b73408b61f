"""Invariants a subject must keep: the baseline's structure and tying, and finite weights and scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from invarlock.certification.evaluation.gate import InvariantCheck
from invarlock.certification.evaluation.stats import WindowScore
from invarlock.description import OPTIONAL_KEYS, STRUCTURAL_KEYS, VOCAB_GROWTH_KEY


def declared_growth(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The subject's ``vocab_growth`` when it declares exactly the step from the baseline's
    vocabulary to its own; None when it declares none, or another one."""
    growth = subject.get(VOCAB_GROWTH_KEY)
    if not isinstance(growth, Mapping):
        return None
    matches = (growth.get("base_vocab_size"), growth.get("vocab_size")) == (
        baseline.get("vocab_size"),
        subject.get("vocab_size"),
    )
    return growth if matches else None


def one_sided_keys(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> dict[str, str]:
    """Optional structural keys only one side describes (an adapter that cannot derive per-layer
    types, say), each with the side that does: they cannot be compared, and the check says so."""
    return {
        key: "baseline" if subject.get(key) is None else "subject"
        for key in STRUCTURAL_KEYS
        if key in OPTIONAL_KEYS and (baseline.get(key) is None) != (subject.get(key) is None)
    }


def structure_check(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> InvariantCheck:
    one_sided = one_sided_keys(baseline, subject)
    compared = [key for key in STRUCTURAL_KEYS if key not in one_sided]
    uncompared = "".join(
        f"; {key} not compared (only the {side} describes it)" for key, side in one_sided.items()
    )
    differing = [key for key in compared if baseline.get(key) != subject.get(key)]
    growth = declared_growth(baseline, subject)
    accepted = ""
    if growth is not None and "vocab_size" in differing:
        differing.remove("vocab_size")
        tokens = growth.get("added_tokens")
        named = f": {', '.join(tokens[:5])}{' ...' if len(tokens) > 5 else ''}" if tokens else ""
        accepted = (
            f"; vocab_size grew from {growth['base_vocab_size']} to {growth['vocab_size']} as the subject "
            f"declares ({growth['vocab_size'] - growth['base_vocab_size']} added tokens{named})"
        )
    if not differing:
        agreed = [key for key in compared if not (accepted and key == "vocab_size")]
        return InvariantCheck(
            "structure", True, f"descriptions agree on {', '.join(agreed)}{accepted}{uncompared}"
        )
    details = "; ".join(f"{k}: {baseline.get(k)!r} vs {subject.get(k)!r}" for k in differing)
    if "vocab_size" in differing and isinstance(subject.get(VOCAB_GROWTH_KEY), Mapping):
        details += (
            f" (the subject declares a vocab_growth of {dict(subject[VOCAB_GROWTH_KEY])!r}, another step)"
        )
    return InvariantCheck("structure", False, f"baseline vs subject differ in {details}{uncompared}")


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
