"""How often the certificate's interval holds the true ratio, by number of windows: the evidence
behind the gate's minimum (``GatePolicy.min_windows``; docs/certify.md, "Enough evidence").

The population is a set of real per-window scores: the demo's 8-bit certificate
(docs/examples/certificate.json, 64 windows of 127 scored tokens). Its ratio is the truth. Each
trial draws ``n`` windows from it with replacement, runs the certificate's own
``paired_ratio`` (the paired percentile bootstrap) and records whether the interval holds the
truth. A nominal 95% interval should hold it in about 95% of trials; with few windows it holds
it far less often (and with one window the interval has zero width).

    python scripts/bootstrap_coverage.py [TRIALS]     # default 400 trials per row; ~2 minutes
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

from invarlock.certification.evaluation.stats import WindowScore, paired_ratio

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "certificate.json"
SIZES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
BOOTSTRAP = 500


def population() -> list[tuple[WindowScore, WindowScore]]:
    windows = json.loads(EXAMPLE.read_text(encoding="utf-8"))["stats"]["per_window"]
    return [
        (
            WindowScore(w["id"], w["baseline"] * w["tokens"], w["tokens"]),
            WindowScore(w["id"], w["subject"] * w["tokens"], w["tokens"]),
        )
        for w in windows
    ]


Pairs = list[tuple[WindowScore, WindowScore]]


def coverage(pairs: Pairs, n: int, trials: int, seed: int) -> tuple[float, float]:
    """(share of trials whose interval holds the population ratio, median interval width)."""
    truth = math.exp(sum(s.nll - b.nll for b, s in pairs) / sum(b.tokens for b, _ in pairs))
    rng = random.Random(seed)
    held, widths = 0, []
    for trial in range(trials):
        drawn = rng.choices(pairs, k=n)
        baseline = [WindowScore(i, b.nll, b.tokens) for i, (b, _) in enumerate(drawn)]
        subject = [WindowScore(i, s.nll, s.tokens) for i, (_, s) in enumerate(drawn)]
        paired = paired_ratio(baseline, subject, bootstrap=BOOTSTRAP, seed=trial)
        held += paired.ci_low <= truth <= paired.ci_high
        widths.append(paired.ci_high - paired.ci_low)
    widths.sort()
    return held / trials, widths[len(widths) // 2]


def main(trials: int) -> None:
    pairs = population()
    print(f"population: {len(pairs)} windows of the demo's 8-bit certificate; {trials} trials per row")
    print(f"{'windows':>8}  {'coverage of nominal 95%':>24}  {'median CI width':>16}")
    for n in SIZES:
        held, width = coverage(pairs, n, trials, seed=n)
        print(f"{n:>8}  {held:>24.1%}  {width:>16.5f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
