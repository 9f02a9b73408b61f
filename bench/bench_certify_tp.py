"""Wall time of a two-rank tensor-parallel certify against the same certify in one process.

    python bench/bench_certify_tp.py [--repeats 3] [--windows 32]

The committed demo model (demo/model) is the baseline and its 8-bit round-to-nearest edit the
subject. Both runs are whole commands, interleaved (one process, two ranks, one process, ...) so
load from other processes hits both alike:

    one process  python -m invarlock certify ...
    two ranks    python -m torch.distributed.run --standalone --nproc-per-node 2 -m invarlock
                 certify ... --tp-plan auto   (gloo on the CPU)

Each includes interpreter start-up, imports and loading both sides; on one machine the two ranks
share its cores, so this measures the cost of the TP machinery, not a speed-up. Printed: median
seconds of each, the ratio two ranks / one process, and the largest relative difference of the
certificate's statistics between the two (the scores must agree; mean_delta_log_loss is
near zero for this edit, so its relative difference is the least telling).
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
from pathlib import Path
from typing import Any

from bench_certify_offload import STATS, make_subject

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")


def certify_once(command: list[str], out: Path) -> tuple[float, Any]:
    started = time.perf_counter()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return seconds, json.loads((out / "certificate.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=int, default=32)
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"one process": [], "two ranks": []}
    certificates: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        subject = make_subject(work)
        for repeat in range(args.repeats):
            for name in times:
                out = work / f"{name.replace(' ', '-')}-{repeat}"
                certify = [
                    *("-m", "invarlock", "certify", "--baseline", str(ROOT / "demo" / "model")),
                    *("--subject", str(subject), "--windows", str(args.windows), "--no-cache"),
                    *("--out", str(out)),
                ]
                if name == "one process":
                    command = [sys.executable, *certify]
                else:
                    command = [*TORCHRUN, *certify, "--tp-plan", "auto"]
                seconds, certificates[name] = certify_once(command, out)
                times[name].append(seconds)
    tensor_parallel = certificates["two ranks"].get("tensor_parallel")
    if not tensor_parallel or tensor_parallel.get("world_size") != 2:
        print(f"the two-rank certificate does not record two ranks: {tensor_parallel}", file=sys.stderr)
        return 1
    one, two = (statistics.median(times[name]) for name in times)
    differences = {
        key: abs(certificates["two ranks"]["stats"][key] - certificates["one process"]["stats"][key])
        / max(abs(certificates["one process"]["stats"][key]), 1e-12)
        for key in STATS
    }
    print(f"one process  {one:8.2f} s (median of {args.repeats}, whole command)")
    print(f"two ranks    {two:8.2f} s")
    print(f"ratio two ranks / one process: {two / one:.2f}")
    for key, difference in differences.items():
        print(f"relative difference of {key}: {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
