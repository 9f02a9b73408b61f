"""What a reader relies on, checked in headless Chromium on the demo's PASS and FAIL certificates.

- Nothing is wider than the viewport, on a desktop and at 400 px; no two chart labels overlap
  (boxes measured by the browser, not estimated).
- Printed as browsers print by default (background graphics off), the verdict is there as text and
  its pixels stand out from their surroundings by at least 4.5:1 (WCAG AA), as does the rest of the
  banner.
- Rendering the page requests nothing but the page itself.

The measurements come from a test-only copy of the page with a script appended (the certificate
itself has none), read back with ``--dump-dom``.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import chromium
import pytest

pytestmark = pytest.mark.usefixtures("browser")

VERDICTS = tuple(chromium.CERTIFICATES)

MEASURE = """<script>
(() => {
  const viewport = document.documentElement.clientWidth;
  const name = (el) => el.tagName.toLowerCase() + "." + (el.getAttribute("class") || "");
  const wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.left < -0.5 || box.right > viewport + 0.5) wide.push([name(el), box.left, box.right]);
  }
  const overlaps = [];
  const texts = [];
  const charts = [...document.querySelectorAll("svg")].filter((svg) => svg.getBoundingClientRect().width > 0);
  charts.forEach((svg, chart) => {
    const boxes = [...svg.querySelectorAll("text")].map((t) => [t.textContent, t.getBoundingClientRect()]);
    boxes.forEach(([text]) => texts.push(text));
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const [a, p] = boxes[i], [b, q] = boxes[j];
      const apart = p.right <= q.left || q.right <= p.left || p.bottom <= q.top || q.bottom <= p.top;
      if (!apart) overlaps.push([chart, a, b]);
    }
  });
  const out = document.createElement("pre");
  out.id = "measurements";
  out.textContent = JSON.stringify({viewport, innerWidth, scrollWidth: document.documentElement.scrollWidth,
                                    wide, overlaps, texts, charts: charts.length});
  document.body.appendChild(out);
})();
</script>"""


def with_extra(page: Path, tag: str, before: str, suffix: str) -> Path:
    """A copy of ``page`` with ``tag`` inserted before its ``before`` tag."""
    text = page.read_text(encoding="utf-8")
    assert text.count(before) == 1
    copy = page.with_name(f"{page.stem}.{suffix}.html")
    copy.write_text(text.replace(before, tag + before), encoding="utf-8")
    return copy


COPY_OUT = """<script>
const frame = document.getElementById("page");
const copy = () => {
  const out = document.createElement("pre");
  out.id = "measurements";
  out.textContent = frame.contentDocument.getElementById("measurements").textContent;
  document.body.appendChild(out);
};
if (frame.contentDocument && frame.contentDocument.getElementById("measurements")) copy();
else frame.addEventListener("load", copy);
</script>"""


@cache
def measure(page: Path, width: int) -> dict[str, Any]:
    """The measuring copy of ``page`` laid out in an iframe ``width`` px wide (its viewport)."""
    probe = with_extra(page, MEASURE, "</body>", f"measure-{width}")
    framed_probe = chromium.framed(probe, width, 1200, COPY_OUT)
    window = max(width, chromium.WINDOW_MIN_WIDTH)
    dom = chromium.chromium(framed_probe, f"--window-size={window},1200", "--dump-dom").stdout
    found = re.search(r'<pre id="measurements">(.*?)</pre>', dom, re.DOTALL)
    assert found, "the measuring script did not run"
    return json.loads(html.unescape(found.group(1)))  # type: ignore[no-any-return]


@pytest.mark.parametrize("verdict", VERDICTS)
@pytest.mark.parametrize("width", [chromium.DESKTOP[0], chromium.NARROW[0]])
def test_nothing_is_wider_than_the_viewport(pages: dict[str, Path], verdict: str, width: int) -> None:
    found = measure(pages[verdict], width)
    assert found["innerWidth"] == width  # the window size took effect, so the check means something
    assert found["wide"] == [], f"wider than {width} px: {found['wide'][:10]}"
    assert found["scrollWidth"] <= width


@pytest.mark.parametrize("verdict", VERDICTS)
@pytest.mark.parametrize("width", [chromium.DESKTOP[0], chromium.NARROW[0]])
def test_no_two_chart_labels_overlap(pages: dict[str, Path], verdict: str, width: int) -> None:
    found = measure(pages[verdict], width)
    assert found["charts"] == 3  # interval, per window, histogram: one drawing of each shown
    assert found["overlaps"] == [], found["overlaps"]
    assert "gate ≤ 1.1" in found["texts"] and "no change 1.00" in found["texts"]
    assert "Δ log-loss (nats/token)" in found["texts"]


Pixels = tuple[int, int, bytes]


def read_ppm(path: Path) -> Pixels:
    """(width, height, RGB bytes) of a binary PPM as pdftoppm writes it."""
    data = path.read_bytes()
    fields = re.match(rb"P6\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    assert fields and fields.group(3) == b"255"
    return int(fields.group(1)), int(fields.group(2)), data[fields.end() :]


def luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance."""
    linear = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def median(colours: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    return tuple(sorted(c[i] for c in colours)[len(colours) // 2] for i in range(3))  # type: ignore[return-value]


def text_contrast(shown: Pixels, hidden: Pixels, rows: int) -> tuple[float, tuple[int, int, int], int]:
    """Contrast between some text and its surroundings, from the page printed with the text and
    without it (transparent): the pixels that differ are the text; the strongest of them are the
    glyphs' cores, and the page without the text gives what lies under and around them.
    :returns: (contrast, the background's colour, how many pixels the text covers).
    """
    width, _, a = shown
    _, _, b = hidden
    diff = {}
    for offset in range(0, min(rows * width * 3, len(a)), 3):
        d = (
            abs(a[offset] - b[offset])
            + abs(a[offset + 1] - b[offset + 1])
            + abs(a[offset + 2] - b[offset + 2])
        )
        if d > 24:
            diff[offset] = d
    assert diff, "the text left no pixels on the printed page"
    strongest = max(diff.values())
    cores = [o for o, d in diff.items() if d >= 0.75 * strongest]
    text = median([(a[o], a[o + 1], a[o + 2]) for o in cores])
    pixel_rows = [o // 3 // width for o in diff]
    columns = [o // 3 % width for o in diff]
    around = [
        (b[o], b[o + 1], b[o + 2])
        for y in range(min(pixel_rows), max(pixel_rows) + 1)
        for x in range(min(columns), max(columns) + 1)
        for o in [(y * width + x) * 3]
    ]
    background = median(around)
    return contrast(text, background), background, len(diff)


@pytest.mark.parametrize("verdict", VERDICTS)
def test_printed_verdict_is_there_and_legible(pages: dict[str, Path], verdict: str, tmp_path: Path) -> None:
    page = pages[verdict]
    hide: Callable[[str, str], Path] = lambda selector, suffix: with_extra(  # noqa: E731
        page, f"<style>@media print{{{selector}{{color:transparent!important}}}}</style>", "</head>", suffix
    )
    printed = {}
    for name, source in (
        ("page", page),
        ("no-word", hide(".verdict .word", "no-word")),
        ("no-rest", hide(".verdict .names,.verdict p,.verdict strong", "no-rest")),
    ):
        pdf = tmp_path / f"{name}.pdf"
        chromium.print_pdf(source, pdf)
        printed[name] = read_ppm(chromium.rasterise(pdf, tmp_path / name, dpi=96))
    text = subprocess.run(
        ["pdftotext", "-l", "1", str(tmp_path / "page.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    certificate = json.loads((chromium.EXAMPLES / f"{chromium.CERTIFICATES[verdict]}.json").read_text())
    banner = (
        f"{verdict.upper()} · {certificate['subject']['model_id']} vs {certificate['baseline']['model_id']}"
    )
    assert banner in " ".join(text.split())

    rows = printed["page"][1] // 3  # the banner is at the top of the first page
    word, background, covered = text_contrast(printed["page"], printed["no-word"], rows)
    assert covered > 200  # the verdict word's glyphs, not a stray pixel
    assert luminance(background) > 0.9, "background graphics were printed: the check would not be the default"
    assert word >= 4.5, f"printed verdict {verdict.upper()} has contrast {word:.2f}:1"
    rest, _, _ = text_contrast(printed["page"], printed["no-rest"], rows)
    assert rest >= 4.5, f"the rest of the printed banner has contrast {rest:.2f}:1"


def requested_urls(page: Path, tmp_path: Path) -> set[str]:
    """Every URL the page asked for while Chromium loaded and laid it out, from Chromium's network
    log. Chromium's own traffic (update and time checks it makes despite the flags; the closed
    network refuses them) has no initiator ("not an origin") and is not the page's."""
    log = tmp_path / f"{page.stem}.netlog.json"
    chromium.chromium(page, f"--log-net-log={log}", "--net-log-capture-mode=Everything", "--dump-dom")
    netlog = json.loads(log.read_text(encoding="utf-8"))
    start_job = netlog["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return {
        event["params"]["url"]
        for event in netlog["events"]
        if event["type"] == start_job
        and "url" in event.get("params", {})
        and event["params"].get("initiator") != "not an origin"
    }


def test_the_page_requests_nothing_but_itself(pages: dict[str, Path], tmp_path: Path) -> None:
    pixel = "http://127.0.0.1:9/pixel.png"
    control = with_extra(pages["fail"], f'<img src="{pixel}" alt="">', "</body>", "control")
    assert requested_urls(control, tmp_path) == {pixel}  # the log sees what a page fetches
    for verdict in VERDICTS:
        assert requested_urls(pages[verdict], tmp_path) == set(), verdict
