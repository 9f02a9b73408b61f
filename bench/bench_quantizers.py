"""Wall time of `invarlock plugins quantizers --json`, cached and not, against a bare interpreter start.

Usage: python bench/bench_quantizers.py [--runs N]

Each run is a fresh subprocess with its own cache directory (INVARLOCK_CACHE_DIR): "first" is the
listing right after an install (the plugins import torch and transformers and run every quantizer's
environment check, then the rows are cached), "cached" is every later listing (the rows read back,
no backend imported). Medians over the runs, with their ratios to `python -c pass`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

LISTING = [sys.executable, "-m", "invarlock.cli", "plugins", "quantizers", "--json"]
BARE = [sys.executable, "-c", "pass"]


def wall(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bare, first, cached = [], [], []
    methods = 0
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-quantizers-") as cache:
            env = {**os.environ, "INVARLOCK_CACHE_DIR": cache}
            bare.append(wall(BARE, env)[0])
            seconds, out = wall(LISTING, env)
            first.append(seconds)
            assert json.loads(out)["cached"] is False
            seconds, out = wall(LISTING, env)
            cached.append(seconds)
            document = json.loads(out)
            assert document["cached"] is True
            methods = len(document["methods"])
    base = statistics.median(bare)
    print(f"{methods} methods; medians of {args.runs} runs (load average {os.getloadavg()[0]:.1f})")
    print(f"{'bare interpreter':<18}{base:>8.3f} s")
    for name, runs in (("first listing", first), ("cached listing", cached)):
        median = statistics.median(runs)
        print(f"{name:<18}{median:>8.3f} s {median / base:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
