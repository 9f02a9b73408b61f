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
        words.append(
            f"r={block['rank']} alpha={value_text(block.get('alpha'))} "
            f"dropout={value_text(block.get('dropout'))}"
        )
    targets = ", ".join(block.get("target_modules") or []) or "–"
    words.append(f"on {targets} ({len(block.get('adapted_layers') or [])} layers")
    words[-1] += f", {value_text(block.get('adapter_parameters'))} parameters)"
    if block.get("modules_to_save"):
        words.append(f"saves {', '.join(block['modules_to_save'])}")
    added = (block.get("added_tokens") or {}).get("count")
    if added:
        words.append(f"{added} added tokens")
    if block.get("merged"):
        words.append("merged into the base")
    if block.get("base"):
        words.append(f"over {block['base']} ({value_text(block.get('base_adapter'))})")
    return "; ".join(words)


DESCRIPTION_UNITS = {
    "n_layer": "layers",
    "heads_per_layer": "heads",
    "kv_heads_per_layer": "heads",
    "mlp_dims": "features",
    "hidden_size": "features",
    "vocab_size": "tokens",
    "n_params": "parameters",
}
"""The unit each numeric description key counts in (per layer for the per-layer lists)."""

PER_LAYER_NONE = {"moe_per_layer": "dense"}
"""What an empty entry of a per-layer list means (a dense layer among MoE layers)."""


def value_text(value: Any, key: str = "") -> str:
    """A description value in words: never ``None``, numbers with the unit ``key`` counts in, a
    per-layer list that repeats one value as "4 heads in each of 4 layers"."""
    unit = f" {DESCRIPTION_UNITS[key]}" if key in DESCRIPTION_UNITS else ""
    if value is None:
        return "–"
    if isinstance(value, dict) and "adapted_layers" in value and "method" in value:
        return peft_text(value)
    if isinstance(value, list):
        items = [PER_LAYER_NONE.get(key, "–") if v is None else value_text(v) for v in value]
        if items and all(item == items[0] for item in items):
            return f"{items[0]}{unit} in each of {len(items)} layers"
        return ", ".join(items) + unit if items else "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value}{unit}"


def description_rows(certificate: Mapping[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(key, baseline, subject, differs) for the side-by-side description table."""
    base = certificate["baseline"]["description"]
    subj = certificate["subject"]["description"]
    return [
        (k, value_text(base.get(k), k), value_text(subj.get(k), k), base.get(k) != subj.get(k))
        for k in DESCRIPTION_ROWS
    ]


def environment_rows(environment: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, value) of the certificate's environment; an absent accelerator in words, not ``None``."""
    return [(key, "not available" if value is None else str(value)) for key, value in environment.items()]


def installed_adapters(plugins: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The adapters whose distribution is installed, and how many catalogued ones are not."""
    adapters = list(plugins["adapters"])
    installed = [a for a in adapters if a["version"] is not None]
    return installed, len(adapters) - len(installed)


def duration_text(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def adapter_line(side: Mapping[str, Any]) -> str:
    adapter = side["adapter"]
    dist = f"{adapter['distribution']} {adapter['version'] or ''}".strip()
    backend = ", ".join(f"{k} {v or 'missing'}" for k, v in adapter["backend"].items())
    return f"{adapter['name']} ({dist}; {backend}) — {adapter['reason']}"


def load_options_line(side: Mapping[str, Any]) -> str:
    """How one side was loaded: its device and every load option, as given."""
    options = side.get("load_options")
    if options is None:  # a certificate written before sides recorded their own options
        return "–"
    return "; ".join(f"{key} {_option_text(value)}" for key, value in options.items())


def _option_text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_option_text(v)}" for k, v in value.items()) + "}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def placement_line(side: Mapping[str, Any]) -> str:
    """Where each part of one side ran: every device (``disk`` for accelerate's disk offload) with its
    modules, or the one device of a model placed whole."""
    placement = side.get("placement")
    if not placement:
        return f"whole model on {side['description'].get('device', '–')}"
    return "; ".join(
        f"{device}: {', '.join(module or '(whole model)' for module in modules)}"
        for device, modules in placement.items()
    )


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


def interval_text(bounds: Any, digits: int = 4) -> str:
    low, high = bounds
    return f"{number(low, digits)} – {number(high, digits)}"


def distribution_line(block: Mapping[str, Any]) -> str:
    """The distribution metrics in one line: mean KL, top-1 agreement and RMS Δp with intervals."""
    kl, top1, delta_p = block["kl"], block["top1_agreement"], block["delta_p"]
    return (
        f"KL {number(kl['mean'], 5)} nats/token (CI {interval_text(kl['ci'], 5)}), "
        f"top-1 agreement {number(top1['rate'])} (CI {interval_text(top1['ci'])}), "
        f"Δp RMS {number(delta_p['rms'])} (CI {interval_text(delta_p['rms_ci'])}), top {block['top_k']}"
    )


def distribution_rows(block: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, interval) rows for the distribution table, every value with its unit
    (agreement in %, Δp in percentage points of probability)."""
    kl, top1, delta_p = block["kl"], block["top1_agreement"], block["delta_p"]
    unit = kl["unit"]

    def pct(value: float | None) -> float | None:
        return None if value is None else 100 * value

    def pct_interval(bounds: Any) -> str:
        return interval_text([pct(v) for v in bounds], 2)

    return [
        ("KL(baseline‖subject), mean", f"{number(kl['mean'], 5)} {unit}", interval_text(kl["ci"], 5)),
        ("KL(baseline‖subject), p99", f"{number(kl['p99'], 5)} {unit}", "–"),
        ("top-1 agreement", f"{number(pct(top1['rate']), 2)} %", pct_interval(top1["ci"])),
        (
            "Δp of the observed token, RMS",
            f"{number(pct(delta_p['rms']), 2)} pp",
            pct_interval(delta_p["rms_ci"]),
        ),
        ("Δp of the observed token, largest", f"{number(pct(delta_p['max']), 2)} pp", "–"),
    ]


def cache_line(certificate: Mapping[str, Any]) -> str:
    """Where the baseline's scores came from: the baseline cache (hit) or a fresh scoring."""
    block = certificate.get("baseline_cache")
    if block is None:
        return "not recorded"
    if not block["enabled"]:
        return f"not used: {block['detail']}"
    key = f"key {block['key'][:16]}…" if block["key"] else "no key"
    return f"{'hit' if block['hit'] else 'miss'} ({key}): {block['detail']}"


STRUCTURE_STATUS = {
    "declared": "as declared",
    "undeclared": "NOT DECLARED",
    "not_made": "DECLARED, NOT MADE",
}
"""How each ``structure_delta`` change status reads in a rendering."""


def structure_delta_rows(certificate: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(layer, key, baseline, subject, declared, status) per structural difference, for the
    structure-change table (empty when the sides agree and nothing was declared)."""
    delta = certificate.get("structure_delta") or {}
    return [
        (
            "model" if change["layer"] is None else str(change["layer"]),
            change["key"],
            value_text(change["baseline"]),
            value_text(change["subject"]),
            value_text(change["declared"]),
            STRUCTURE_STATUS.get(change["status"], change["status"]),
        )
        for change in delta.get("changes", [])
    ]


def structure_declaration_line(certificate: Mapping[str, Any]) -> str | None:
    """``declared by --declare-edit x.yaml: heads_per_layer {1: 2}``, or None when nothing was declared."""
    declared = (certificate.get("structure_delta") or {}).get("declared")
    if not declared:
        return None
    parts = [
        f"{key} {value_text(value)}"
        if not isinstance(value, dict)
        else f"{key} {{{', '.join(f'{layer}: {v}' for layer, v in value.items())}}}"
        for key, value in declared.items()
        if key != "sources"
    ]
    return f"declared by {' and '.join(declared.get('sources') or ['?'])}: {'; '.join(parts)}"
