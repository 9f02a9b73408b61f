"""Formatting shared by the Markdown and HTML renderings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock.description import STRUCTURAL_KEYS

DESCRIPTION_ROWS = (
    *STRUCTURAL_KEYS,
    "vocab_growth",
    "model_class",
    "n_params",
    "dtype",
    "device",
    "tying",
    "quantization",
    "peft",
)


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio_line(stats: Mapping[str, Any]) -> str:
    low, high = stats["ci"]
    return f"{number(stats['ratio'])} ({stats['confidence']:.0%} CI {number(low)} – {number(high)})"


def peft_text(block: Mapping[str, Any]) -> str:
    """A PEFT adapter in one line: method, rank and alpha, where it sits, its size, added tokens."""
    words = [str(block.get("method") or "peft")]
    if block.get("rank") is not None:
        words.append(f"r={block['rank']} alpha={block.get('alpha')} dropout={block.get('dropout')}")
    targets = ", ".join(block.get("target_modules") or []) or "–"
    words.append(f"on {targets} ({len(block.get('adapted_layers') or [])} layers")
    words[-1] += f", {block.get('adapter_parameters')} parameters)"
    if block.get("modules_to_save"):
        words.append(f"saves {', '.join(block['modules_to_save'])}")
    added = (block.get("added_tokens") or {}).get("count")
    if added:
        words.append(f"{added} added tokens")
    if block.get("merged"):
        words.append("merged into the base")
    if block.get("base"):
        words.append(f"over {block['base']} ({block.get('base_adapter')})")
    return "; ".join(words)


def value_text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict) and "adapted_layers" in value and "method" in value:
        return peft_text(value)
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        return f"{value[0]} × {len(value)}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


def description_rows(certificate: Mapping[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(key, baseline, subject, differs) for the side-by-side description table."""
    base = certificate["baseline"]["description"]
    subj = certificate["subject"]["description"]
    return [
        (k, value_text(base.get(k)), value_text(subj.get(k)), base.get(k) != subj.get(k))
        for k in DESCRIPTION_ROWS
    ]


def adapter_line(side: Mapping[str, Any]) -> str:
    adapter = side["adapter"]
    dist = f"{adapter['distribution']} {adapter['version'] or ''}".strip()
    backend = ", ".join(f"{k} {v or 'missing'}" for k, v in adapter["backend"].items())
    return f"{adapter['name']} ({dist}; {backend}) — {adapter['reason']}"


def size_text(size: int) -> str:
    if size < 2**10:
        return f"{size} B"
    if size < 2**20:
        return f"{size / 2**10:.1f} KiB"
    if size < 2**30:
        return f"{size / 2**20:.1f} MiB"
    return f"{size / 2**30:.2f} GiB"


def identity_line(side: Mapping[str, Any]) -> str:
    """One side's content identity in words: digest, file count, size, hub revision."""
    identity = side["identity"]
    where = f", {identity['repo_id']} at revision {identity['revision']}" if identity["revision"] else ""
    return (
        f"sha256 {identity['digest']} over {len(identity['files'])} files "
        f"({size_text(identity['bytes'])}{where})"
    )


def weights_line(side: Mapping[str, Any]) -> str:
    weights = side["weights"]
    if weights is None:
        return "not applicable (no PyTorch weights)"
    proven = weights["equal"] + len(weights["converted"])
    line = f"{proven} of {weights['compared']} tensors equal their on-disk bytes"
    if weights["converted"]:
        line += f" ({len(weights['converted'])} after a declared dtype conversion)"
    for key, label in (
        ("differing", "differ"),
        ("newly_initialised", "newly initialised"),
        ("transformed", "transformed when loaded"),
    ):
        if weights[key]:
            line += f"; {len(weights[key])} {label}"
    return line
