"""The certificate as one standalone HTML page: no scripts, fonts or images fetched from anywhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
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

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1000px;margin:0 auto;padding:24px}
.verdict{border-radius:10px;padding:20px 24px;color:#fff;margin-bottom:20px}
.PASS{background:#1f7a44}.FAIL{background:#b3261e}.INCONCLUSIVE{background:#8a5a00}
.verdict h1{margin:0 0 6px;font-size:28px}.verdict p{margin:2px 0;font-size:15px}
section{background:#fff;border-radius:10px;padding:16px 20px;margin-bottom:16px;box-shadow:0 1px 2px #0001}
h2{font-size:18px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e6ea;vertical-align:top}
td.diff{background:#fff3cd;font-weight:600}.bad{color:#b3261e;font-weight:600}.good{color:#1f7a44}
code{font-size:13px}.muted{color:#5b6472;font-size:13px}svg{display:block;max-width:100%}
"""


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows hold already-escaped HTML."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def interval_chart(stats: Mapping[str, Any], max_ratio: float) -> str:
    """The ratio, its interval and the gate's bound on one axis."""
    low: float | None = stats["ci"][0]
    high: float | None = stats["ci"][1]
    ratio: float | None = stats["ratio"]
    if low is None or high is None or ratio is None:
        return "<p class='bad'>The ratio is not finite; no chart.</p>"
    lo_axis = min(0.98, low - 0.01)
    hi_axis = max(max_ratio + 0.03, high + 0.01)
    width, height, pad = 760, 70, 20

    def x(value: float) -> float:
        return pad + (value - lo_axis) / (hi_axis - lo_axis) * (width - 2 * pad)

    colour = "#1f7a44" if high <= max_ratio else "#b3261e"
    return (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="ratio interval">'
        f'<line x1="{pad}" y1="40" x2="{width - pad}" y2="40" stroke="#9aa3ad"/>'
        f'<line x1="{x(1.0):.1f}" y1="22" x2="{x(1.0):.1f}" y2="58" stroke="#5b6472" stroke-dasharray="3 3"/>'
        f'<text x="{x(1.0):.1f}" y="16" font-size="11" text-anchor="middle">1.00</text>'
        f'<line x1="{x(max_ratio):.1f}" y1="22" x2="{x(max_ratio):.1f}" y2="58" stroke="#b3261e"/>'
        f'<text x="{x(max_ratio):.1f}" y="16" font-size="11" text-anchor="middle">gate {max_ratio:g}</text>'
        f'<rect x="{x(low):.1f}" y="34" width="{max(2.0, x(high) - x(low)):.1f}" height="12" fill="{colour}" '
        'opacity="0.35"/>'
        f'<circle cx="{x(ratio):.1f}" cy="40" r="5" fill="{colour}"/>'
        f'<text x="{x(ratio):.1f}" y="66" font-size="11" text-anchor="middle">{ratio:.4f}</text>'
        "</svg>"
    )


def window_chart(per_window: Sequence[Mapping[str, Any]]) -> str:
    """Subject minus baseline log-loss per window; bars above the line: the subject does worse."""
    deltas = [
        (w["subject"] - w["baseline"]) if w["subject"] is not None and w["baseline"] is not None else 0.0
        for w in per_window
    ]
    if not deltas:
        return ""
    width, height, pad = 760, 160, 10
    scale = max(max(abs(d) for d in deltas), 1e-9)
    mid = height / 2
    step = (width - 2 * pad) / len(deltas)
    bars = []
    for i, (window, delta) in enumerate(zip(per_window, deltas, strict=True)):
        h = abs(delta) / scale * (mid - pad)
        y = mid - h if delta > 0 else mid
        colour = "#b3261e" if delta > 0 else "#1f7a44"
        bars.append(
            f'<rect x="{pad + i * step:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{max(h, 0.5):.1f}" '
            f'fill="{colour}"><title>window {window["id"]}: Δ {delta:+.5f}</title></rect>'
        )
    return (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="per-window log-loss difference">'
        f'<line x1="{pad}" y1="{mid}" x2="{width - pad}" y2="{mid}" stroke="#9aa3ad"/>{"".join(bars)}</svg>'
        '<p class="muted">Subject minus baseline log-loss per window (nats/token); '
        f"largest |Δ| = {scale:.5f}. "
        "Red: subject worse; green: subject better.</p>"
    )


def render_html(certificate: Mapping[str, Any]) -> str:
    stats, gate, dataset, verdict = (
        certificate["stats"],
        certificate["gate"],
        certificate["dataset"],
        certificate["verdict"],
    )
    windows = dataset["windows"]
    reasons = "".join(f"<p>{escape(r)}</p>" for r in certificate["reasons"])
    invariants = [
        (
            escape(c["name"]),
            f"<span class='{'good' if c['passed'] else 'bad'}'>{'pass' if c['passed'] else 'FAIL'}</span>",
            escape(c["detail"]),
        )
        for c in certificate["invariants"]["checks"]
    ]
    models = [
        (
            f"<code>{escape(key)}</code>",
            f"<td class='diff'>{escape(b)}</td>" if differs else escape(b),
            f"<td class='diff'>{escape(s)}</td>" if differs else escape(s),
        )
        for key, b, s, differs in description_rows(certificate)
    ]
    sides = [
        (
            escape(side),
            f"<code>{escape(certificate[side]['model_id'])}</code>",
            escape(adapter_line(certificate[side])),
        )
        for side in ("baseline", "subject")
    ]
    identity = [
        (escape(side), escape(identity_line(certificate[side])), escape(weights_line(certificate[side])))
        for side in ("baseline", "subject")
    ]
    files = [
        (
            escape(side),
            f"<code>{escape(f['path'])}</code>",
            escape(size_text(f["size"])),
            f"<code>{f['sha256']}</code>",
        )
        for side in ("baseline", "subject")
        for f in certificate[side]["identity"]["files"]
    ]
    command = certificate["invocation"]["command"] or "(certify() from Python)"
    environment = [(escape(k), escape(str(v))) for k, v in certificate["environment"].items()]
    adapters = [
        (escape(a["name"]), escape(a["distribution"]), escape(a["version"] or "–"), escape(a["status"]))
        for a in certificate["plugins"]["adapters"]
    ]
    split = f", split {escape(dataset['split'])}" if dataset["split"] else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>InvarLock certificate: {verdict}</title><style>{_CSS}</style></head>
<body><main>
<div class="verdict {verdict}"><h1>{verdict}</h1>
<p>Perplexity ratio subject / baseline: <strong>{escape(ratio_line(stats))}</strong></p>
<p>Gate: {escape(gate["rule"])}</p>{reasons}</div>
<section><h2>Ratio and interval</h2>{interval_chart(stats, gate["max_ratio"])}
<p>Baseline perplexity {number(stats["baseline_ppl"])}, subject perplexity {number(stats["subject_ppl"])}
({escape(certificate["metric"]["kind"])}); {stats["windows"]} windows of {windows["window_tokens"]} tokens,
{stats["tokens"]} scored tokens; {escape(stats["method"])}, {stats["bootstrap"]} resamples.</p></section>
<section><h2>Per-window difference</h2>{window_chart(stats["per_window"])}</section>
<section><h2>Models</h2>{_table(("side", "model", "adapter (why)"), sides)}
<p></p>{_table(("description", "baseline", "subject"), models)}</section>
<section><h2>Content identity</h2>{_table(("side", "files", "weights"), identity)}
<p></p>{_table(("side", "file", "size", "sha256"), files)}</section>
<section><h2>Invariants</h2>{_table(("check", "result", "detail"), invariants)}</section>
<section><h2>Data</h2><p>Source <code>{escape(dataset["source"])}</code>{split}:
{dataset["documents"]} documents,
sha256 <code>{escape(dataset["sha256"][:16])}…</code>; window seed {windows["seed"]}, window tokens sha256
<code>{escape(windows["tokens_sha256"][:16])}…</code>.</p></section>
<section><h2>Environment</h2>{_table(("", ""), environment)}</section>
<section><h2>Adapters installed</h2>
{_table(("adapter", "distribution", "version", "status"), adapters)}</section>
<p class="muted">Command <code>{escape(command)}</code>
(in <code>{escape(certificate["invocation"]["cwd"])}</code>).</p>
<p class="muted">Certificate {escape(certificate["certificate_id"])},
created {escape(certificate["created"])}.
The JSON certificate next to this page holds every number shown here.</p>
</main></body></html>
"""
