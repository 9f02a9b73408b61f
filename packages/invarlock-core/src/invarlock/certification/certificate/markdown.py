"""The certificate as Markdown (for pull requests and CI summaries)."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from invarlock.certification.certificate.text import (
    adapter_line,
    cache_line,
    description_rows,
    distribution_rows,
    duration_text,
    environment_rows,
    identity_line,
    installed_adapters,
    load_options_line,
    number,
    placement_line,
    ratio_line,
    size_text,
    structure_declaration_line,
    structure_delta_rows,
    weights_line,
)


def _cell(text: Any) -> str:
    """Text shown as is: HTML (which Markdown renderers pass through) and table pipes escaped."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def _code(text: Any) -> str:
    """A code span that holds ``text`` verbatim, whatever backticks it contains (CommonMark: the
    fence is one backtick longer than the longest run inside); HTML in a code span is never
    interpreted."""
    value = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _distribution_section(block: Mapping[str, Any] | None, confidence: float) -> list[str]:
    if block is None:
        return []
    return [
        "## Distribution",
        "",
        f"| metric | value | {confidence:.0%} CI |",
        "|---|---|---|",
        *[f"| {_cell(name)} | {value} | {interval} |" for name, value, interval in distribution_rows(block)],
        "",
        f"{block['tokens']} scored tokens, baseline top {block['top_k']}. {_cell(block['approximation'])}.",
        "",
    ]


def render_markdown(certificate: Mapping[str, Any]) -> str:
    stats, gate, dataset = certificate["stats"], certificate["gate"], certificate["dataset"]
    windows = dataset["windows"]
    mark = {"PASS": "✅", "FAIL": "❌"}.get(certificate["verdict"], "⚠️")
    adapters, not_installed = installed_adapters(certificate["plugins"])
    lines = [
        f"# InvarLock certificate: {mark} {certificate['verdict']}",
        "",
        f"- **Baseline:** {_code(certificate['baseline']['model_id'])}",
        f"- **Subject:** {_code(certificate['subject']['model_id'])}",
        f"- **Perplexity ratio (subject / baseline):** {ratio_line(stats)}",
        f"- **Gate:** {gate['rule']} → {'passed' if gate['passed'] else 'failed'}",
        f"- **Certificate id:** `{certificate['certificate_id']}` · created {certificate['created']} "
        f"in {duration_text(certificate['duration_s'])}",
        f"- **Baseline cache:** {_cell(cache_line(certificate))}",
        f"- **Command:** `{certificate['invocation']['command'] or '(certify() from Python)'}`",
        "",
        "## Why",
        "",
        *[f"- {_cell(reason)}" for reason in certificate["reasons"]],
        "",
        "## Evaluation",
        "",
        "| | baseline | subject |",
        "|---|---|---|",
        f"| perplexity ({certificate['metric']['kind']}) | {number(stats['baseline_ppl'])} ppl | "
        f"{number(stats['subject_ppl'])} ppl |",
        *[
            f"| {label} | {_cell(line(certificate['baseline']))} | {_cell(line(certificate['subject']))} |"
            for label, line in (
                ("adapter", adapter_line),
                ("loaded with", load_options_line),
                ("placement", placement_line),
            )
        ],
        "",
        f"{stats['windows']} windows of {windows['window_tokens']} tokens ({stats['tokens']} scored tokens) "
        f"from {_code(dataset['source'])}{' split ' + _cell(dataset['split']) if dataset['split'] else ''}, "
        f"seed {windows['seed']}; "
        f"{stats['method']} with {stats['bootstrap']} resamples. Mean Δ log-loss "
        f"{number(stats['mean_delta_log_loss'], 5)} nats/token.",
        "",
        *_distribution_section(certificate.get("distribution"), stats["confidence"]),
        "## Invariants",
        "",
        "| check | result | detail |",
        "|---|---|---|",
        *[
            f"| {c['name']} | {'pass' if c['passed'] else 'FAIL'} | {_cell(c['detail'])} |"
            for c in certificate["invariants"]["checks"]
        ],
        "",
        *structure_section(certificate),
        "## Content identity",
        "",
        "| | baseline | subject |",
        "|---|---|---|",
        *[
            f"| {label} | {_cell(line(certificate['baseline']))} | {_cell(line(certificate['subject']))} |"
            for label, line in (("files", identity_line), ("weights", weights_line))
        ],
        "",
        "| side | file | size | sha256 |",
        "|---|---|---|---|",
        *[
            f"| {side} | `{_cell(f['path'])}` | {size_text(f['size'])} | `{f['sha256']}` |"
            for side in ("baseline", "subject")
            for f in certificate[side]["identity"]["files"]
        ],
        "",
        "## Models",
        "",
        "| key | baseline | subject |",
        "|---|---|---|",
        *[
            f"| {'**' + key + '**' if differs else key} | {_cell(b)} | {_cell(s)} |"
            for key, b, s, differs in description_rows(certificate)
        ],
        "",
        "## Environment",
        "",
        *[f"- {key}: {_cell(value)}" for key, value in environment_rows(certificate["environment"])],
        "",
        "## Adapters installed",
        "",
        "| adapter | distribution | version | status |",
        "|---|---|---|---|",
        *[f"| {a['name']} | {a['distribution']} | {a['version']} | {a['status']} |" for a in adapters],
        "",
        *(
            [
                f"{not_installed} more adapters are catalogued but not installed "
                "(`invarlock plugins adapters` lists them with the command that installs each).",
                "",
            ]
            if not_installed
            else []
        ),
    ]
    return "\n".join(lines)


def structure_section(certificate: Mapping[str, Any]) -> list[str]:
    """The per-layer structure changes and the declaration they are judged against (none: no section)."""
    rows = structure_delta_rows(certificate)
    declared = structure_declaration_line(certificate)
    if not rows and declared is None:
        return []
    return [
        "## Structure changes",
        "",
        *([_cell(declared), ""] if declared else []),
        "| layer | key | baseline | subject | declared | result |",
        "|---|---|---|---|---|---|",
        *[f"| {' | '.join(_cell(cell) for cell in row)} |" for row in rows],
        "",
    ]
