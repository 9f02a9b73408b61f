"""The certificate as Markdown (for pull requests and CI summaries)."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from invarlock.certification.certificate.text import (
    adapter_line,
    description_rows,
    identity_line,
    number,
    ratio_line,
    size_text,
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


def render_markdown(certificate: Mapping[str, Any]) -> str:
    stats, gate, dataset = certificate["stats"], certificate["gate"], certificate["dataset"]
    windows = dataset["windows"]
    mark = {"PASS": "✅", "FAIL": "❌"}.get(certificate["verdict"], "⚠️")
    lines = [
        f"# InvarLock certificate: {mark} {certificate['verdict']}",
        "",
        f"- **Baseline:** {_code(certificate['baseline']['model_id'])}",
        f"- **Subject:** {_code(certificate['subject']['model_id'])}",
        f"- **Perplexity ratio (subject / baseline):** {ratio_line(stats)}",
        f"- **Gate:** {gate['rule']} → {'passed' if gate['passed'] else 'failed'}",
        f"- **Certificate id:** `{certificate['certificate_id']}` · created {certificate['created']}",
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
        f"| perplexity ({certificate['metric']['kind']}) | {number(stats['baseline_ppl'])} | "
        f"{number(stats['subject_ppl'])} |",
        f"| adapter | {_cell(adapter_line(certificate['baseline']))} | "
        f"{_cell(adapter_line(certificate['subject']))} |",
        "",
        f"{stats['windows']} windows of {windows['window_tokens']} tokens ({stats['tokens']} scored tokens) "
        f"from {_code(dataset['source'])}{' split ' + _cell(dataset['split']) if dataset['split'] else ''}, "
        f"seed {windows['seed']}; "
        f"{stats['method']} with {stats['bootstrap']} resamples. Mean Δ log-loss "
        f"{number(stats['mean_delta_log_loss'], 5)} nats/token.",
        "",
        "## Invariants",
        "",
        "| check | result | detail |",
        "|---|---|---|",
        *[
            f"| {c['name']} | {'pass' if c['passed'] else 'FAIL'} | {_cell(c['detail'])} |"
            for c in certificate["invariants"]["checks"]
        ],
        "",
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
        *[f"- {key}: {_cell(value)}" for key, value in certificate["environment"].items()],
        "",
        "## Adapters installed",
        "",
        "| adapter | distribution | version | status |",
        "|---|---|---|---|",
        *[
            f"| {a['name']} | {a['distribution']} | {a['version'] or '–'} | {a['status']} |"
            for a in certificate["plugins"]["adapters"]
        ],
        "",
    ]
    return "\n".join(lines)
