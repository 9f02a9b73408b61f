"""The HTML certificate without a browser: what the page says, the charts' geometry, optional blocks.

The documents are the demo's PASS and FAIL certificates in docs/examples/ (written by a real
`invarlock certify`); tests-browser/ checks the same pages in headless Chromium.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from invarlock.certification.certificate import charts
from invarlock.certification.certificate.html import render_html

DOCS = Path(__file__).resolve().parents[3] / "docs"
EXAMPLES = DOCS / "examples"
STEMS = {"PASS": "certificate", "FAIL": "certificate-fail"}


def example(verdict: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{STEMS[verdict]}.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(params=sorted(STEMS))
def certificate(request: pytest.FixtureRequest) -> dict[str, Any]:
    return example(request.param)


def test_title_and_banner_lead_with_the_verdict_and_name_both_models(certificate: dict[str, Any]) -> None:
    page = render_html(certificate)
    verdict, subject, baseline = (
        certificate["verdict"],
        certificate["subject"]["model_id"],
        certificate["baseline"]["model_id"],
    )
    assert f"<title>{verdict} · {subject} vs {baseline} · InvarLock certificate</title>" in page
    banner = (
        f'<h1><span class="word">{verdict}</span> · <span class="names">{subject} vs {baseline}</span></h1>'
    )
    assert banner in page
    assert page.index(banner) < page.index("<section>")


def test_the_examples_in_docs_are_what_the_renderer_writes() -> None:
    for verdict, stem in STEMS.items():
        committed = (EXAMPLES / f"{stem}.html").read_text(encoding="utf-8")
        assert committed == render_html(example(verdict)), (
            f"docs/examples/{stem}.html is stale: run python tools/chromium.py --pages-only "
            "(or without --pages-only, with chromium installed, to refresh the screenshots too)"
        )


def label_boxes(chart: charts.IntervalChart) -> list[tuple[float, float, float, float]]:
    return [label.box() for label in chart.labels]


COLLIDING = {"ratio": 30.0, "ci": [25.0, 41.0], "confidence": 0.95}
"""A FAIL far beyond the gate: on the old linear axis 1.00 and the gate's 1.1 were drawn on top of
each other."""


@pytest.mark.parametrize("width", sorted(charts.WIDTHS.values()))
@pytest.mark.parametrize("case", ["PASS", "FAIL", "colliding", "ratio at the gate"])
def test_interval_labels_never_overlap_and_stay_inside(case: str, width: float) -> None:
    stats: dict[str, Any] = (
        COLLIDING
        if case == "colliding"
        else {"ratio": 1.1, "ci": [1.0, 1.2], "confidence": 0.95}
        if case == "ratio at the gate"
        else example(case)["stats"]
    )
    chart = charts.interval_chart(stats, 1.1, width)
    assert chart is not None
    boxes = label_boxes(chart)
    for a, b in itertools.combinations(boxes, 2):
        assert not charts.overlaps(a, b), (a, b)
    assert all(left >= 0 and right <= width and top >= 0 for left, top, right, _ in boxes)
    assert {label.role for label in chart.labels} == {"point", "gate", "reference"}
    tick_spans = [(x - charts.text_width(t) / 2, x + charts.text_width(t) / 2) for x, t in chart.ticks]
    assert len(chart.ticks) >= 3
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(tick_spans))
    assert chart.reference_x < chart.gate_x
    assert chart.band[0] <= chart.point_x <= chart.band[1]


def test_the_fail_case_puts_no_change_and_the_gate_on_separate_lines() -> None:
    chart = charts.interval_chart(example("FAIL")["stats"], 1.1, charts.WIDTHS["wide"])
    assert chart is not None
    by_role = {label.role: label for label in chart.labels}
    assert abs(by_role["reference"].anchor - by_role["gate"].anchor) < charts.text_width("no change 1.00")
    assert by_role["reference"].y != by_role["gate"].y
    assert [text for _, text in chart.ticks] == ["1", "2", "5"]  # 1-2-5 on the log axis


def test_per_window_scale_is_symmetric_reaches_the_gate_and_keeps_magnitudes_honest() -> None:
    gate = math.log(1.1)
    drawn = {v: charts.window_chart(example(v)["stats"], 1.1, charts.WIDTHS["wide"]) for v in STEMS}
    for chart in drawn.values():
        assert chart.zero_y == pytest.approx((chart.top + chart.bottom) / 2)
        labels = [text for _, text in chart.y_ticks]
        assert [t.lstrip("+-") for t in labels] == [t.lstrip("+-") for t in reversed(labels)]
        assert labels[len(labels) // 2] == "0" and labels[0].startswith("-") and labels[-1].startswith("+")
        assert chart.extent >= gate
        per_nat = (chart.bottom - chart.top) / (2 * chart.extent)
        assert chart.zero_y - chart.gate_y == pytest.approx(gate * per_nat)
    pass_chart, fail_chart = drawn["PASS"], drawn["FAIL"]
    tallest = {v: max(bar.height for bar in chart.bars) for v, chart in drawn.items()}
    # +0.007 nats is a sliver under the gate line; 3.15 nats towers over it
    assert tallest["PASS"] < 0.1 * (pass_chart.zero_y - pass_chart.gate_y)
    assert tallest["FAIL"] > 10 * (fail_chart.zero_y - fail_chart.gate_y)
    assert fail_chart.extent >= 3.15
    assert {bar.kind for bar in fail_chart.bars} == {"beyond"}
    assert {bar.kind for bar in pass_chart.bars} == {"worse", "better"}


def test_window_chart_marks_windows_without_a_finite_loss() -> None:
    stats = copy.deepcopy(example("PASS")["stats"])
    stats["per_window"][3]["subject"] = None
    chart = charts.window_chart(stats, 1.1, charts.WIDTHS["narrow"])
    missing = [bar for bar in chart.bars if bar.kind == "missing"]
    assert [bar.title for bar in missing] == [f"window {stats['per_window'][3]['id']}: not finite"]


def test_histogram_counts_every_window_once(certificate: dict[str, Any]) -> None:
    chart = charts.histogram(certificate["stats"], 1.1, charts.WIDTHS["wide"])
    assert chart is not None
    counts = [int(bar.title.split()[0]) for bar in chart.bars]
    assert sum(counts) == certificate["stats"]["windows"]
    inside = certificate["verdict"] == "FAIL"  # the PASS deltas end far short of the gate's
    assert (chart.gate_x is not None) == inside
    assert ("beyond this axis" in chart.gate_note) == (not inside)
    # every FAIL window is past the gate's Δ, including those in the bin the gate line cuts
    expected = {"beyond"} if certificate["verdict"] == "FAIL" else {"worse", "better"}
    assert {bar.kind for bar in chart.bars} == expected


def test_a_ratio_that_is_not_finite_draws_no_interval() -> None:
    certificate = example("PASS")
    certificate["stats"].update(ratio=None, ci=[None, None])
    page = render_html(certificate)
    assert "The ratio is not finite; no chart." in page


def test_each_chart_is_drawn_once_per_width(certificate: dict[str, Any]) -> None:
    page = render_html(certificate)
    assert page.count('<svg class="wide"') == 3 and page.count('<svg class="narrow"') == 3
    assert page.count("<title>window ") == 2 * certificate["stats"]["windows"]


DISTRIBUTION = {
    "top_k": 32,
    "tokens": 8128,
    "kl": {"mean": 0.00123, "ci": [0.00101, 0.00149], "p99": 0.0211, "unit": "nats/token"},
    "top1_agreement": {"rate": 0.992, "ci": [0.989, 0.9944]},
    "delta_p": {"rms": 0.00412, "rms_ci": [0.0039, 0.0043], "max": 0.1875},
    "approximation": "KL over the baseline top-32 tokens plus one bucket for the rest; bound 1e-3.",
}


def test_optional_blocks_are_shown_when_present() -> None:
    certificate = example("PASS")
    certificate["distribution"] = DISTRIBUTION
    certificate["baseline_cache"] = {"hit": True, "key": "ab12cd34", "path": "/cache/invarlock/ab12cd34"}
    certificate["baseline"]["load_options"] = {"device": "cpu", "dtype": "float32"}
    certificate["subject"]["load_options"] = {"device_map": "auto", "offload_folder": "/tmp/offload"}
    certificate["tensor_parallel"] = {"degree": 2, "mesh": [0, 1]}
    page = render_html(certificate)
    for shown in (
        "<h2>Output distributions</h2>",
        "0.00123 nats/token (CI 0.00101 – 0.00149)",
        "0.02110 nats/token",
        "99.20 % (CI 98.90 – 99.44 %)",
        "0.00412 (CI 0.00390 – 0.00430)",
        "0.18750",
        str(DISTRIBUTION["approximation"]),
        "yes: the baseline was not scored again",
        "<code>ab12cd34</code>",
        "<code>/cache/invarlock/ab12cd34</code>",
        "<h2>Load options</h2>",
        "<code>{&#34;device&#34;: &#34;cpu&#34;, &#34;dtype&#34;: &#34;float32&#34;}</code>",
        "&#34;offload_folder&#34;: &#34;/tmp/offload&#34;",
        "<h2>tensor parallel</h2>",
        "<code>[0, 1]</code>",
    ):
        assert shown in page, shown


def test_partial_or_absent_optional_blocks_never_break_the_page() -> None:
    certificate = example("FAIL")
    certificate["distribution"] = {"kl": {"mean": 0.5}}
    certificate["baseline_cache"] = {"hit": False}
    page = render_html(certificate)
    assert "0.50000 nats/token" in page and "no: scored now" in page
    for absent in ("distribution", "baseline_cache", "load_options"):
        certificate.pop(absent, None)
    page = render_html(certificate)
    assert "<h2>Output distributions</h2>" not in page and "<h2>Load options</h2>" not in page


def test_adapters_installed_lists_installed_ones_only() -> None:
    certificate = example("PASS")
    page = render_html(certificate)
    table = page[page.index("<h2>Adapters installed</h2>") :]
    for adapter in certificate["plugins"]["adapters"]:
        row = f'<td data-label="adapter">{adapter["name"]}</td>'
        assert (row in table) == (adapter["version"] is not None), adapter["name"]
    assert "Not installed: hf_peft (invarlock-peft)" in table


class References(HTMLParser):
    """Everything in a page that could make a browser fetch: tags that load, URL attributes, url()."""

    LOADING_TAGS = frozenset(
        {"script", "link", "iframe", "img", "object", "embed", "video", "audio", "source"}
    )
    URL_ATTRIBUTES = frozenset(
        {"src", "href", "xlink:href", "srcset", "poster", "data", "action", "background"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.LOADING_TAGS:
            self.found.append(f"<{tag}>")
        self.in_style = tag == "style"
        for name, value in attrs:
            if name in self.URL_ATTRIBUTES and value and not value.startswith(("#", "data:")):
                self.found.append(f"{name}={value}")
            if name == "style" and value:
                self.css(value)

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.css(data)

    def css(self, text: str) -> None:
        self.found += re.findall(r"url\(\s*['\"]?(?!#|data:)[^)]*\)|@import", text)


def references(page: str) -> list[str]:
    parser = References()
    parser.feed(page)
    return parser.found


def test_the_page_references_nothing_outside_itself(certificate: dict[str, Any]) -> None:
    hostile = copy.deepcopy(certificate)
    hostile["subject"]["model_id"] = '<img src="http://x/y.png"><script>alert(1)</script>'
    hostile["baseline"]["adapter"]["reason"] = "url(http://x/style.css) @import 'x'"
    for page in (render_html(certificate), render_html(hostile)):
        assert references(page) == []
    control = render_html(certificate).replace("</style>", "body{background:url(http://x/bg.png)}</style>")
    assert references(control.replace("</main>", '<img src="http://x/y.png"></main>')) == [
        "url(http://x/bg.png)",
        "<img>",
        "src=http://x/y.png",
    ]


def test_rendering_imports_jinja2_only_when_a_page_is_written() -> None:
    code = (
        "import json, sys\n"
        "import invarlock, invarlock.cli, invarlock.certification.certificate.html as html\n"
        "before = 'jinja2' in sys.modules\n"
        f"html.render_html(json.load(open({str(EXAMPLES / 'certificate.json')!r})))\n"
        "print(json.dumps([before, 'jinja2' in sys.modules, 'torch' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [False, True, False]


def test_certify_md_links_every_screenshot() -> None:
    text = (DOCS / "certify.md").read_text()
    linked = set(re.findall(r"\]\((examples/[^)]+\.png)\)", text))
    committed = {f"examples/{p.name}" for p in EXAMPLES.glob("*.png")}
    expected = {
        f"examples/certificate-{v}-{view}.png"
        for v in ("pass", "fail")
        for view in ("desktop", "400px", "printed")
    }
    assert expected <= committed
    assert linked == committed
