"""Invariants a subject must keep: the baseline's structure and tying, and finite weights and scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from invarlock.certification.evaluation.gate import InvariantCheck
from invarlock.certification.evaluation.stats import WindowScore
from invarlock.certification.structure_change import LayerDelta, StructureChange, deltas, from_vocab_growth
from invarlock.description import OPTIONAL_KEYS, STRUCTURAL_KEYS, VOCAB_GROWTH_KEY


def one_sided_keys(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> dict[str, str]:
    """Optional structural keys only one side describes (an adapter that cannot derive per-layer
    types, say), each with the side that does: they cannot be compared, and the check says so."""
    return {
        key: "baseline" if subject.get(key) is None else "subject"
        for key in STRUCTURAL_KEYS
        if key in OPTIONAL_KEYS and (baseline.get(key) is None) != (subject.get(key) is None)
    }


def structure_delta(
    baseline: Mapping[str, Any], subject: Mapping[str, Any], declared: StructureChange | None = None
) -> tuple[StructureChange, list[LayerDelta], dict[str, str]]:
    """The declaration in force (``declared`` plus the subject's own ``vocab_growth``), every
    structural difference between the sides judged against it, and the keys not compared."""
    change = (declared or StructureChange()).merged(from_vocab_growth(baseline, subject))
    one_sided = one_sided_keys(baseline, subject)
    compared = [key for key in STRUCTURAL_KEYS if key not in one_sided]
    return change, deltas(baseline, subject, change, compared), one_sided


def structure_check(
    baseline: Mapping[str, Any], subject: Mapping[str, Any], declared: StructureChange | None = None
) -> InvariantCheck:
    """The subject has the baseline's structure, changed by exactly ``declared`` (and the
    ``vocab_growth`` it describes): every declared change made, nothing else different."""
    change, found, one_sided = structure_delta(baseline, subject, declared)
    uncompared = "".join(
        f"; {key} not compared (only the {side} describes it)" for key, side in one_sided.items()
    )
    wrong = [d for d in found if d.status != "declared"]
    if not wrong:
        compared = [key for key in STRUCTURAL_KEYS if key not in one_sided]
        changed = {d.key for d in found} | ({"n_layer"} if change.layers_removed else set())
        agreed = [key for key in compared if key not in changed]
        user_vocab = declared is not None and declared.vocab_size is not None
        made = _declared_phrases(
            change, found, baseline, "declared" if user_vocab else "the subject declares"
        )
        return InvariantCheck(
            "structure", True, f"descriptions agree on {', '.join(agreed)}{made}{uncompared}"
        )
    details = "; ".join(d.phrase() for d in wrong)
    growth = subject.get(VOCAB_GROWTH_KEY)
    if any(d.key == "vocab_size" for d in wrong) and isinstance(growth, Mapping):
        details += f" (the subject declares a vocab_growth of {dict(growth)!r}, another step)"
    return InvariantCheck(
        "structure",
        False,
        f"baseline vs subject differ from the declared structure in {details}{uncompared}"
        if change
        else f"baseline vs subject differ in {details}{uncompared}",
    )


def _declared_phrases(
    change: StructureChange, found: list[LayerDelta], baseline: Mapping[str, Any], whose: str
) -> str:
    phrases = []
    for delta in found:
        if delta.key == "vocab_size" and change.vocab_size is not None:
            tokens = change.added_tokens
            named = f": {', '.join(tokens[:5])}{' ...' if len(tokens) > 5 else ''}" if tokens else ""
            phrases.append(
                f"vocab_size grew from {baseline['vocab_size']} to {change.vocab_size} as {whose} "
                f"({change.vocab_size - int(baseline['vocab_size'])} added tokens{named})"
            )
        else:
            phrases.append(delta.phrase())
    return "".join(f"; {phrase}" for phrase in phrases)


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
