"""The certificate as one standalone HTML page: no scripts, fonts or images fetched from anywhere.

The page is the jinja2 template ``templates/certificate.html.j2`` (autoescaped: every value from
the certificate is text, never markup). This module turns the certificate into the template's
context: rows of plain cells, and chart geometry from :mod:`.charts`. Optional blocks that other
steps add (``distribution``, ``baseline_cache``, per-side ``load_options``) are shown when present;
a top-level block this page does not know is shown as a key/value table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from invarlock.certification.certificate import charts
from invarlock.certification.certificate.text import (
    adapter_line,
    description_rows,
    identity_line,
    number,
    placement_line,
    ratio_line,
    size_text,
    value_text,
    weights_line,
)

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "certificate.html.j2"

SHOWN_BLOCKS = frozenset(
    {
        "schema",
        "certificate_id",
        "created",
        "duration_s",
        "verdict",
        "exit_code",
        "reasons",
        "stats",
        "gate",
        "invariants",
        "baseline",
        "subject",
        "load_options",
        "subject_load_options",
        "invocation",
        "tokenizer",
        "dataset",
        "metric",
        "plugins",
        "environment",
        "files",
        "distribution",
        "baseline_cache",
    }
)
"""Top-level keys the page shows in a section of their own (or, like ``files``, deliberately not)."""


@dataclass(frozen=True)
class Cell:
    text: str
    code: bool = False
    css: str = ""


@dataclass(frozen=True)
class Table:
    head: tuple[str, ...]
    rows: list[list[Cell]]
    css: str = ""


def table(head: Sequence[str], rows: Sequence[Sequence[Cell | str]]) -> Table:
    return Table(tuple(head), [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in rows])


def fixed(value: Any, digits: int = 4, unit: str = "") -> str:
    """A number with ``digits`` decimals and its unit; "–" where the certificate has none."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return f"{value:.{digits}f}{' ' + unit if unit else ''}"


def interval_text(ci: Any, digits: int = 4) -> str:
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return ""
    return f" (CI {fixed(ci[0], digits)} – {fixed(ci[1], digits)})"


def distribution_table(block: Mapping[str, Any]) -> Table:
    """The ``distribution`` block: KL, top-1 agreement and Δp; any part may be absent."""
    kl = block.get("kl") or {}
    top1 = block.get("top1_agreement") or {}
    delta_p = block.get("delta_p") or {}
    unit = kl.get("unit") or "nats/token"
    rate = top1.get("rate")
    rate_ci = top1.get("ci") if isinstance(top1.get("ci"), list) else None
    percent_ci = (
        f" (CI {fixed(100 * rate_ci[0], 2)} – {fixed(100 * rate_ci[1], 2)} %)"
        if rate_ci and all(isinstance(v, (int, float)) for v in rate_ci)
        else ""
    )
    rows = [
        ("KL divergence, mean", fixed(kl.get("mean"), 5, unit) + interval_text(kl.get("ci"), 5)),
        ("KL divergence, 99th percentile", fixed(kl.get("p99"), 5, unit)),
        (
            "top-1 agreement",
            (fixed(100 * rate, 2, "%") if isinstance(rate, (int, float)) else "–") + percent_ci,
        ),
        ("Δp, RMS", fixed(delta_p.get("rms"), 5) + interval_text(delta_p.get("rms_ci"), 5)),
        ("Δp, largest", fixed(delta_p.get("max"), 5)),
        ("top-k kept", value_text(block.get("top_k"))),
        ("scored tokens", value_text(block.get("tokens"))),
    ]
    return table(("measure", "value"), rows)


def baseline_cache_table(block: Mapping[str, Any]) -> Table:
    hit = block.get("hit")
    answer = "–" if hit is None else "yes: the baseline was not scored again" if hit else "no: scored now"
    return table(
        ("baseline cache", ""),
        [
            ("hit", answer),
            ("key", Cell(value_text(block.get("key")), code=True)),
            ("path", Cell(value_text(block.get("path")), code=True)),
            *([("detail", value_text(block["detail"]))] if block.get("detail") else []),
        ],
    )


def load_options_table(certificate: Mapping[str, Any]) -> Table | None:
    rows: list[tuple[str, Cell | str]] = []
    for label, options in (
        ("both sides", certificate.get("load_options")),
        ("subject (over both)", certificate.get("subject_load_options")),
        ("baseline", certificate["baseline"].get("load_options")),
        ("subject", certificate["subject"].get("load_options")),
    ):
        if isinstance(options, Mapping) and options:
            rows.append((label, Cell(json.dumps(options, sort_keys=True, ensure_ascii=False), code=True)))
    return table(("loaded with", "options"), rows) if rows else None


def generic_table(block: Any) -> Table:
    """An unknown block: its keys and their values as JSON."""
    if not isinstance(block, Mapping):
        return table(("value",), [[Cell(json.dumps(block, ensure_ascii=False), code=True)]])
    rows = [
        (
            str(key),
            Cell(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False), code=True),
        )
        for key, value in block.items()
    ]
    return table(("key", "value"), rows)


def drawings(chart: Callable[..., Any], stats: Mapping[str, Any], max_ratio: float) -> list[tuple[str, Any]]:
    """The chart laid out for each width in ``charts.WIDTHS``; empty where it has nothing to draw."""
    laid_out = [(css, chart(stats, max_ratio, width)) for css, width in charts.WIDTHS.items()]
    return [(css, drawing) for css, drawing in laid_out if drawing is not None]


def context(certificate: Mapping[str, Any]) -> dict[str, Any]:
    stats, gate, dataset = certificate["stats"], certificate["gate"], certificate["dataset"]
    max_ratio = gate["max_ratio"]
    side_rows = [
        (
            side,
            Cell(certificate[side]["model_id"], code=True),
            adapter_line(certificate[side]),
            placement_line(certificate[side]),
        )
        for side in ("baseline", "subject")
    ]
    descriptions = table(
        ("description", "baseline", "subject"),
        [
            (
                Cell(key, code=True),
                Cell(b, css="diff" if differs else ""),
                Cell(s, css="diff" if differs else ""),
            )
            for key, b, s, differs in description_rows(certificate)
        ],
    )
    identity = table(
        ("side", "files", "weights"),
        [
            (side, identity_line(certificate[side]), weights_line(certificate[side]))
            for side in ("baseline", "subject")
        ],
    )
    files = table(
        ("side", "file", "size", "sha256"),
        [
            (side, Cell(f["path"], code=True), size_text(f["size"]), Cell(f["sha256"], code=True, css="hash"))
            for side in ("baseline", "subject")
            for f in certificate[side]["identity"]["files"]
        ],
    )
    invariants = table(
        ("check", "result", "detail"),
        [
            (c["name"], Cell("pass", css="good") if c["passed"] else Cell("FAIL", css="bad"), c["detail"])
            for c in certificate["invariants"]["checks"]
        ],
    )
    installed = [a for a in certificate["plugins"]["adapters"] if a.get("version")]
    adapters = table(
        ("adapter", "distribution", "version", "status"),
        [(a["name"], a["distribution"], a["version"], a["status"]) for a in installed],
    )
    not_installed = ", ".join(
        f"{a['name']} ({a['distribution']})"
        for a in certificate["plugins"]["adapters"]
        if not a.get("version")
    )
    distribution = certificate.get("distribution")
    cache = certificate.get("baseline_cache")
    tokenizer = certificate.get("tokenizer")
    extra = [
        (key.replace("_", " "), generic_table(value))
        for key, value in certificate.items()
        if key not in SHOWN_BLOCKS and value is not None
    ]
    return {
        "verdict": certificate["verdict"],
        "baseline": certificate["baseline"]["model_id"],
        "subject": certificate["subject"]["model_id"],
        "ratio_line": ratio_line(stats),
        "gate_rule": gate["rule"],
        "max_ratio": f"{max_ratio:g}",
        "confidence": f"{stats['confidence']:.0%}",
        "reasons": certificate["reasons"],
        "interval": drawings(charts.interval_chart, stats, max_ratio),
        "per_window": drawings(charts.window_chart, stats, max_ratio),
        "histogram": drawings(charts.histogram, stats, max_ratio),
        "baseline_ppl": number(stats["baseline_ppl"]),
        "subject_ppl": number(stats["subject_ppl"]),
        "metric_kind": certificate["metric"]["kind"],
        "windows": stats["windows"],
        "window_tokens": dataset["windows"]["window_tokens"],
        "scored_tokens": stats["tokens"],
        "method": stats["method"],
        "bootstrap": stats["bootstrap"],
        "distribution": distribution_table(distribution) if isinstance(distribution, Mapping) else None,
        "distribution_note": distribution.get("approximation") if isinstance(distribution, Mapping) else None,
        "sides": table(("side", "model", "adapter (why)", "placement"), side_rows),
        "descriptions": descriptions,
        "identity": identity,
        "files": files,
        "invariants": invariants,
        "dataset": dataset,
        "tokenizer_note": tokenizer.get("note") if isinstance(tokenizer, Mapping) else None,
        "baseline_cache": baseline_cache_table(cache) if isinstance(cache, Mapping) else None,
        "load_options": load_options_table(certificate),
        "extra_blocks": extra,
        "environment": table(
            ("", ""), [(key, value_text(value)) for key, value in certificate["environment"].items()]
        ),
        "adapters": adapters,
        "not_installed": not_installed,
        "command": certificate["invocation"]["command"] or "(certify() from Python)",
        "cwd": certificate["invocation"]["cwd"],
        "certificate_id": certificate["certificate_id"],
        "created": certificate["created"],
    }


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    import jinja2  # here, not at module level: `import invarlock` stays free of jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("invarlock.certification.certificate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


def render_html(certificate: Mapping[str, Any]) -> str:
    return environment().get_template(TEMPLATE).render(context(certificate))
