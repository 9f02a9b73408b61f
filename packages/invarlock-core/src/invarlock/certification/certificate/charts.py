"""Geometry of the HTML certificate's charts: scales, ticks and label positions, computed here and
drawn as inline SVG by the page template.

Text widths are estimated from the character count (``TEXT_WIDTH_EM`` of the font size a
character, generous for proportional sans-serif digits), so labels are laid out without a browser;
the browser tests measure the drawn labels and check that none overlaps another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TEXT_WIDTH_EM = 0.62
"""Estimated advance of one character, in font sizes (system-ui digits are about 0.55)."""
FONT = 13.0
"""Font size of every chart label, in viewBox units."""
LABEL_GAP = 8.0
"""Least horizontal space between two labels on one line."""
WIDTHS = {"wide": 760.0, "narrow": 360.0}
"""viewBox width of each chart's two drawings: the page shows the narrow one below 640 px, so its
text stays near its nominal size on a phone; each is laid out for its own width."""


def text_width(text: str, size: float = FONT) -> float:
    return len(text) * size * TEXT_WIDTH_EM


def nice_step(span: float, count: int) -> float:
    """The 1, 2 or 5 times a power of ten nearest above ``span / count``."""
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if multiple * power >= raw * (1 - 1e-9):
            return multiple * power
    return 10 * power  # pragma: no cover - the loop always returns


def step_decimals(step: float) -> int:
    """Decimals that print every multiple of ``step`` exactly (for 1/2/5 steps)."""
    return max(0, -math.floor(math.log10(step) + 1e-9))


def linear_ticks(low: float, high: float, count: int) -> tuple[list[float], float]:
    """Multiples of a nice step within [low, high], and the step."""
    step = nice_step(high - low, count)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)], step


def decade_ticks(low: float, high: float) -> list[float]:
    """1, 2 and 5 times powers of ten within [low, high] (a log axis)."""
    ticks = []
    for power in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        for multiple in (1, 2, 5):
            value = multiple * 10.0**power
            if low <= value <= high:
                ticks.append(value)
    return ticks


@dataclass(frozen=True)
class Label:
    """A line of chart text centred on ``x`` (its baseline at ``y``); ``anchor`` is the x it names."""

    text: str
    x: float
    y: float
    anchor: float
    role: str

    @property
    def width(self) -> float:
        return text_width(self.text)

    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) as laid out."""
        return (self.x - self.width / 2, self.y - FONT, self.x + self.width / 2, self.y + FONT * 0.3)


def overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_in_lanes(
    items: Sequence[tuple[str, float, str]], left: float, right: float
) -> list[tuple[str, float, float, str, int]]:
    """Lay out (text, anchor x, role) labels on lines so that none overlaps another.

    Each label is centred on its anchor, moved inside [left, right], and put on the first line
    (lane 0, 1, ...) where it keeps ``LABEL_GAP`` from every label already there.
    :returns: (text, x, anchor, role, lane) in the order given.
    """
    lanes: list[list[tuple[float, float]]] = []
    placed = []
    for text, anchor, role in items:
        half = text_width(text) / 2
        x = min(max(anchor, left + half), right - half)
        span = (x - half, x + half)
        for index, taken in enumerate(lanes):
            if all(span[1] + LABEL_GAP <= a or b + LABEL_GAP <= span[0] for a, b in taken):
                taken.append(span)
                lane = index
                break
        else:
            lane = len(lanes)
            lanes.append([span])
        placed.append((text, x, anchor, role, lane))
    return placed


def thin_ticks(ticks: Sequence[tuple[float, str]]) -> list[tuple[float, str]]:
    """Drop tick labels, left to right, that would touch the previous one kept."""
    kept: list[tuple[float, str]] = []
    for x, text in sorted(ticks):
        if not kept or kept[-1][0] + (text_width(kept[-1][1]) + text_width(text)) / 2 + LABEL_GAP <= x:
            kept.append((x, text))
    return kept


@dataclass(frozen=True)
class IntervalChart:
    """The ppl ratio, its confidence interval and the gate's bound on one (log-scaled) axis."""

    width: float
    height: float
    axis_y: float
    left: float
    right: float
    ticks: list[tuple[float, str]]
    reference_x: float
    gate_x: float
    band: tuple[float, float]
    point_x: float
    within_gate: bool
    labels: list[Label]
    lane_tops: dict[str, float] = field(default_factory=dict)
    """Top of each labelled line (its label's lane): where its line to the axis starts."""


def interval_chart(stats: Mapping[str, Any], max_ratio: float, width: float) -> IntervalChart | None:
    """None when the ratio or its interval is not finite (nothing honest to draw)."""
    low, high, ratio = stats["ci"][0], stats["ci"][1], stats["ratio"]
    if low is None or high is None or ratio is None:
        return None
    values = (1.0, max_ratio, low, high, ratio)
    log_low, log_high = math.log(min(values)), math.log(max(values))
    margin = max((log_high - log_low) * 0.08, 0.004)
    log_low, log_high = log_low - margin, log_high + margin
    left, right = 16.0, width - 16.0

    def x(value: float) -> float:
        return left + (math.log(value) - log_low) / (log_high - log_low) * (right - left)

    lo_value, hi_value = math.exp(log_low), math.exp(log_high)
    if hi_value / lo_value > 3:
        tick_values = decade_ticks(lo_value, hi_value)
        ticks = [(x(v), f"{v:g}") for v in tick_values]
    else:
        tick_values, step = linear_ticks(lo_value, hi_value, 6)
        ticks = [(x(v), f"{v:.{step_decimals(step)}f}") for v in tick_values]
    within = high <= max_ratio
    interval = f"{stats['confidence']:.0%} CI {low:.4f}–{high:.4f}"
    items = [
        (f"ratio {ratio:.4f} ({interval})", x(ratio), "point"),
        (f"gate ≤ {max_ratio:g}", x(max_ratio), "gate"),
        ("no change 1.00", x(1.0), "reference"),
    ]
    placed = place_in_lanes(items, left, right)
    lanes = 1 + max(lane for *_, lane in placed)
    line_height = FONT + 7
    axis_y = 8 + lanes * line_height + 16
    labels = [
        Label(text, lx, 8 + (lanes - lane) * line_height - 5, anchor, role)
        for text, lx, anchor, role, lane in placed
    ]
    return IntervalChart(
        width=width,
        height=axis_y + 34,
        axis_y=axis_y,
        left=left,
        right=right,
        ticks=thin_ticks(ticks),
        reference_x=x(1.0),
        gate_x=x(max_ratio),
        band=(x(low), max(x(high), x(low) + 2)),
        point_x=x(ratio),
        within_gate=within,
        labels=labels,
        lane_tops={label.role: label.y + 4 for label in labels},
    )


def window_deltas(per_window: Sequence[Mapping[str, Any]]) -> list[tuple[int, float | None]]:
    """(window id, subject minus baseline log-loss in nats/token, None where a loss is not finite)."""
    return [
        (w["id"], None if w["subject"] is None or w["baseline"] is None else w["subject"] - w["baseline"])
        for w in per_window
    ]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str
    """worse (subject's loss higher), better, beyond (past the gate's per-token Δ) or missing."""
    title: str


@dataclass(frozen=True)
class WindowChart:
    """Per-window Δ log-loss as bars on a y-axis symmetric around zero, with the gate's Δ marked."""

    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    zero_y: float
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    gate_y: float
    mean_y: float | None
    legend: list[tuple[str, float, float, str]]
    """(line class, x, baseline y, text) of the key above the plot: a line sample, then its text."""
    bars: list[Bar]
    extent: float


def gate_delta(max_ratio: float) -> float:
    """The per-token Δ log-loss whose mean would put the ratio exactly at the gate: ln(max_ratio)."""
    return math.log(max_ratio)


def symmetric_extent(largest: float, count: int) -> tuple[float, float]:
    """A nice half-range of at least ``largest`` (a whole number of nice steps) and its step."""
    step = nice_step(largest * 1.05 if largest > 0 else 1e-6, count)
    return math.ceil(largest * 1.05 / step - 1e-9) * step or step, step


def legend(
    entries: Sequence[tuple[str, str]], left: float, right: float
) -> list[tuple[str, float, float, str]]:
    """(line class, text) entries laid out left to right, wrapping to a new line where one would
    pass ``right``; a 24-unit line sample precedes each text."""
    placed, x, line = [], left, 0
    for css, text in entries:
        span = 30 + text_width(text)
        if x > left and x + span > right:
            x, line = left, line + 1
        placed.append((css, x, 14.0 + line * (FONT + 7), text))
        x += span + 2 * LABEL_GAP
    return placed


def window_chart(stats: Mapping[str, Any], max_ratio: float, width: float) -> WindowChart:
    deltas = window_deltas(stats["per_window"])
    gate = gate_delta(max_ratio)
    finite = [abs(d) for _, d in deltas if d is not None]
    extent, step = symmetric_extent(max([gate, *finite]), 2)
    mean = stats["mean_delta_log_loss"]
    entries = [("gate-dash", f"gate: mean Δ ≤ ln {max_ratio:g} = {gate:+.4f}")]
    if mean is not None:
        entries.append(("mean", f"mean Δ {mean:+.5f}"))
    left, right = 64.0, width - 28.0
    key = legend(entries, left, right)
    top = key[-1][2] + 20
    bottom = top + 180

    def y(value: float) -> float:
        return top + (extent - value) / (2 * extent) * (bottom - top)

    decimals = step_decimals(step)
    count = round(extent / step)
    y_ticks = [(y(i * step), f"{i * step:+.{decimals}f}" if i else "0") for i in range(-count, count + 1)]
    slot = (right - left) / len(deltas)
    bars = []
    for i, (window_id, delta) in enumerate(deltas):
        bar_x, bar_width = left + i * slot + slot * 0.1, max(slot * 0.8, 0.6)
        if delta is None:
            bars.append(
                Bar(bar_x, top, bar_width, bottom - top, "missing", f"window {window_id}: not finite")
            )
            continue
        kind = "beyond" if delta > gate else "worse" if delta > 0 else "better"
        height = max(abs(delta) / (2 * extent) * (bottom - top), 0.5)
        bar_y = y(0) - height if delta > 0 else y(0)
        bars.append(
            Bar(bar_x, bar_y, bar_width, height, kind, f"window {window_id}: Δ {delta:+.5f} nats/token")
        )
    x_tick_values, _ = linear_ticks(1, len(deltas), 6)
    x_ticks = [(left + (v - 0.5) * slot, f"{v:g}") for v in x_tick_values if v >= 1]
    return WindowChart(
        width=width,
        height=bottom + 40,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        zero_y=y(0),
        y_ticks=y_ticks,
        x_ticks=thin_ticks(x_ticks),
        gate_y=y(gate),
        mean_y=None if mean is None else y(mean),
        legend=key,
        bars=bars,
        extent=extent,
    )


@dataclass(frozen=True)
class Histogram:
    """How many windows fall in each bin of Δ log-loss, on an axis symmetric around zero."""

    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    zero_x: float
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    bars: list[Bar]
    gate_x: float | None
    """None when the gate's Δ lies beyond the axis; ``gate_note`` then says where it is."""
    gate_note: str
    bin_width: float


def histogram(stats: Mapping[str, Any], max_ratio: float, width: float, bins: int = 20) -> Histogram | None:
    """None when no window has a finite Δ."""
    finite = [d for _, d in window_deltas(stats["per_window"]) if d is not None]
    if not finite:
        return None
    extent, step = symmetric_extent(max(abs(d) for d in finite), 2)
    bin_width = 2 * extent / bins
    counts = [0] * bins
    smallest = [math.inf] * bins
    for d in finite:
        i = min(max(math.floor((d + extent) / bin_width), 0), bins - 1)
        counts[i] += 1
        smallest[i] = min(smallest[i], d)
    left, right, top, bottom = 48.0, width - 28.0, 30.0, 168.0

    def x(value: float) -> float:
        return left + (value + extent) / (2 * extent) * (right - left)

    count_step = max(nice_step(max(counts), 4), 1.0)
    count_ticks = [i * count_step for i in range(math.ceil(max(counts) / count_step) + 1)]
    top_count = count_ticks[-1]

    def y(count: float) -> float:
        return bottom - count / top_count * (bottom - top)

    gate = gate_delta(max_ratio)
    bars = []
    for i, count in enumerate(counts):
        low = -extent + i * bin_width
        if not count:
            continue
        # zero is a bin edge (an even number of bins on a symmetric axis); the gate may not be
        kind = "beyond" if smallest[i] > gate else "worse" if low >= 0 else "better"
        bars.append(
            Bar(
                x(low) + 0.5,
                y(count),
                max(x(low + bin_width) - x(low) - 1, 0.6),
                bottom - y(count),
                kind,
                f"{count} window{'s' if count != 1 else ''} with Δ in [{low:+.5f}, {low + bin_width:+.5f})",
            )
        )
    decimals = step_decimals(step)
    count = round(extent / step)
    x_ticks = [(x(i * step), f"{i * step:+.{decimals}f}" if i else "0") for i in range(-count, count + 1)]
    inside = gate <= extent
    return Histogram(
        width=width,
        height=bottom + 46,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        zero_x=x(0),
        x_ticks=thin_ticks(x_ticks),
        y_ticks=[(y(c), f"{c:g}") for c in count_ticks],
        bars=bars,
        gate_x=x(gate) if inside else None,
        gate_note=f"gate Δ {gate:+.4f}" if inside else f"gate Δ {gate:+.4f} lies beyond this axis →",
        bin_width=bin_width,
    )
