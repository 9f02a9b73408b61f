"""Wall time of `invarlock plugins adapters --json` and `invarlock env`, against a bare interpreter
start in the same run.

Usage: python bench/bench_listing.py [--runs N]

Runs with whatever interpreter and plugins are installed (the figure depends on which plugins the
listing loads). Each run is a fresh subprocess, as a user or CI job pays it: the median over the
runs is reported, with its ratio to `python -c pass`, in wall time and in CPU time (user + system
of the child: steadier than wall time when other jobs share the machine). The previous generation
of this tool took 6-7 s here because its listing imported torch and transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LISTING = [sys.executable, "-m", "invarlock.cli", "plugins", "adapters", "--json"]
ENV = [sys.executable, "-m", "invarlock.cli", "env"]
BARE = [sys.executable, "-c", "pass"]
HEAVY = ("torch", "transformers")


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timings(command: list[str], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time of ``command`` over ``runs`` fresh subprocesses."""
    walls, cpus = [], []
    for _ in range(runs):
        cpu, start = child_cpu(), time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - start)
        cpus.append(child_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def heavy_imports() -> list[str]:
    code = (
        "import contextlib, io, sys\n"
        "from invarlock.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['plugins', 'adapters', '--json'])\n"
        f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in done.stdout.strip().split(",") if name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    listing = json.loads(subprocess.run(LISTING, capture_output=True, text=True, check=True).stdout)
    timings(LISTING, 1)  # warm the file cache and bytecode for both commands
    timings(BARE, 1)
    bare_wall, bare_cpu = timings(BARE, args.runs)
    wall, cpu = timings(LISTING, args.runs)
    env_wall, env_cpu = timings(ENV, args.runs)
    statuses: dict[str, int] = {}
    for item in listing["adapters"]:
        statuses[item["status"]] = statuses.get(item["status"], 0) + 1

    print(f"python: {sys.version.split()[0]} ({Path(sys.executable).parent.parent})")
    print(f"adapters listed: {len(listing['adapters'])} {statuses}")
    print(f"heavy modules imported by the listing: {heavy_imports() or 'none'}")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"median of {args.runs} runs            wall      cpu")
    print(f"  python -c pass                    {bare_wall * 1000:5.0f} ms  {bare_cpu * 1000:5.0f} ms")
    print(f"  invarlock plugins adapters --json {wall * 1000:5.0f} ms  {cpu * 1000:5.0f} ms")
    print(f"  invarlock env                     {env_wall * 1000:5.0f} ms  {env_cpu * 1000:5.0f} ms")
    print(f"  ratio listing / bare              {wall / bare_wall:6.1f}x  {cpu / bare_cpu:6.1f}x")
    print(f"  ratio env / bare                  {env_wall / bare_wall:6.1f}x  {env_cpu / bare_cpu:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
