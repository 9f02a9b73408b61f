"""Benchmark the invarlock-hf snapshot engine against bare PyTorch doing the same bytes.

    python bench/bench_snapshot.py [--repeats 11] [--dir DIR] [--operations ...]

On a GPT-2-small-shaped model (GPT2Config defaults, random init, fp32, ~500 MB), in one process,
each operation is timed against its bare baseline, interleaved (baseline, engine, baseline, ...) so
that load from other processes hits both alike; the medians and their ratio are printed:

    snapshot          take_snapshot                vs  clone() of every tensor          target <= 1.3x
    restore           restore_snapshot             vs  copy_() into every tensor        target <= 1.5x
    chunked snapshot  write_chunked_snapshot       vs  safetensors save_file            target <= 1.3x
    chunked restore   restore_chunked_snapshot     vs  safetensors load_file + copy_()  target <= 1.3x

"Every tensor" is every distinct tensor (GPT-2's tied embedding once), which is what both sides copy.
The chunked files go to --dir (default: the system temp dir), the same disk for both sides; dirty
pages are flushed (os.sync) between writes so one write's backlog does not throttle the next.
Process CPU-time ratios are printed beside the wall-time ones: on a machine shared with other work
they are the steadier figure. The chunked snapshot checksums on a second thread, so on an idle
machine its wall-time ratio is below its CPU-time ratio.

Extra peak memory of a snapshot is measured in a fresh child process per measurement: the child
builds the model, returns freed heap to the OS (malloc_trim) with a fixed mmap threshold so freed
blocks are not silently reused, resets the kernel's peak-RSS counter (/proc/self/clear_refs), runs
the operation and reads VmHWM. Extra peak = VmHWM - VmRSS before; target <= 1.1x the model's bytes.
Linux only.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

TARGETS = {"snapshot": 1.3, "restore": 1.5, "chunked snapshot": 1.3, "chunked restore": 1.3}
MEMORY_TARGET = 1.1


def build_model() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config()).eval()


def distinct_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every distinct parameter and buffer by its first name (tied ones once)."""
    found: dict[int, tuple[str, torch.Tensor]] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        found.setdefault(id(tensor), (name, tensor.detach()))
    return dict(found.values())


def model_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in distinct_tensors(model).values())


# -- memory, in a child process ------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory_child(operation: str) -> None:
    """Run in a child: print the extra peak RSS (bytes) of one operation, and the model's bytes."""
    from invarlock_hf.snapshot import take_snapshot

    model = build_model()
    tensors = list(distinct_tensors(model).values())
    operations: dict[str, Callable[[], Any]] = {
        "clone": lambda: [t.clone() for t in tensors],
        "snapshot": lambda: take_snapshot(model),
    }
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    result = operations[operation]()
    peak = _status_kib("VmHWM")
    del result
    print(json.dumps({"extra": (peak - before) * 1024, "model": model_bytes(model)}))


def measure_memory(operation: str) -> dict[str, int]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    output = subprocess.run(
        [sys.executable, __file__, "--memory-child", operation],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- timing --------------------------------------------------------------------------------------


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    """Process CPU time (user + system, all threads): less sensitive to other processes than wall time."""


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def interleaved(
    baseline: Callable[[], Any], engine: Callable[[], Any], repeats: int, between: Callable[[], None]
) -> tuple[Timings, Timings]:
    base, ours = Timings(), Timings()
    for _ in range(repeats):
        for run, timings in ((baseline, base), (engine, ours)):
            cpu, start = _cpu_seconds(), time.perf_counter()
            result = run()
            timings.wall.append(time.perf_counter() - start)
            timings.cpu.append(_cpu_seconds() - cpu)
            del result
            between()
    return base, ours


def time_operations(
    model: torch.nn.Module, operations: list[str], repeats: int, work: Path
) -> list[tuple[str, Timings, Timings]]:
    """Time each operation against its bare baseline, interleaved; returns (name, bare, engine) rows."""
    from safetensors.torch import load_file, save_file

    from invarlock_hf.snapshot import (
        remove_chunked_snapshot,
        restore_chunked_snapshot,
        restore_snapshot,
        take_snapshot,
        write_chunked_snapshot,
    )

    tensors = distinct_tensors(model)
    rows: list[tuple[str, Timings, Timings]] = []
    if "snapshot" in operations:
        rows.append(
            (
                "snapshot",
                *interleaved(
                    lambda: [t.clone() for t in tensors.values()],
                    lambda: take_snapshot(model),
                    repeats,
                    lambda: None,
                ),
            )
        )
    if "restore" in operations:
        snapshot = take_snapshot(model)
        copies = {name: t.clone() for name, t in tensors.items()}

        def bare_copy() -> None:
            for name, t in tensors.items():
                t.copy_(copies[name])

        rows.append(
            (
                "restore",
                *interleaved(bare_copy, lambda: restore_snapshot(model, snapshot), repeats, lambda: None),
            )
        )
        del snapshot, copies

    baseline_file = work / "baseline.safetensors"  # the same disk as the engine's snapshots
    if "chunked snapshot" in operations:
        written: list[Path] = []

        def clean() -> None:
            baseline_file.unlink(missing_ok=True)
            while written:
                remove_chunked_snapshot(written.pop())
            os.sync()  # no dirty pages left over from the previous write to throttle the next one

        rows.append(
            (
                "chunked snapshot",
                *interleaved(
                    lambda: save_file(tensors, str(baseline_file)),
                    lambda: written.append(write_chunked_snapshot(model, work)),
                    repeats,
                    clean,
                ),
            )
        )
    if "chunked restore" in operations:
        save_file(tensors, str(baseline_file))
        path = write_chunked_snapshot(model, work)

        def bare_load() -> None:
            for name, t in load_file(str(baseline_file)).items():
                tensors[name].copy_(t)

        rows.append(
            (
                "chunked restore",
                *interleaved(bare_load, lambda: restore_chunked_snapshot(model, path), repeats, lambda: None),
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--dir", type=Path, default=None, help="where chunked snapshots are written")
    parser.add_argument("--operations", nargs="+", choices=[*TARGETS, "memory"], default=[*TARGETS, "memory"])
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        measure_memory_child(args.memory_child)
        return 0

    from invarlock_hf.snapshot import chunked

    torch.set_grad_enabled(False)
    model = build_model()
    print(
        f"model: GPT2LMHeadModel(GPT2Config()), {model_bytes(model) / 1e6:.0f} MB in "
        f"{len(distinct_tensors(model))} distinct tensors"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"CRC-32 from {chunked.crc32.__module__}, load average {os.getloadavg()[0]:.1f} at start"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-snapshot-", dir=args.dir))
    try:
        rows = time_operations(model, args.operations, args.repeats, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    failed = False
    if rows:
        print(
            f"\n{'operation':<18}{'bare':>9}{'engine':>9}{'ratio':>8}{'target':>8}  ok   {'cpu ratio':>9}"
            "   engine min-max    (wall-time medians; cpu ratio: of process CPU-time medians)"
        )
    for name, base, engine in rows:
        ratio = statistics.median(engine.wall) / statistics.median(base.wall)
        cpu_ratio = statistics.median(engine.cpu) / statistics.median(base.cpu)
        ok = ratio <= TARGETS[name]
        failed |= not ok
        print(
            f"{name:<18}{statistics.median(base.wall):>7.3f} s{statistics.median(engine.wall):>7.3f} s"
            f"{ratio:>7.2f}x{TARGETS[name]:>7.1f}x  {'yes' if ok else 'NO '}  {cpu_ratio:>8.2f}x"
            f"   {min(engine.wall):.3f}-{max(engine.wall):.3f} s"
        )

    if "memory" in args.operations:
        clone_memory = measure_memory("clone")
        snapshot_memory = measure_memory("snapshot")
        memory_ratio = snapshot_memory["extra"] / snapshot_memory["model"]
        failed |= memory_ratio > MEMORY_TARGET
        print(
            f"\nsnapshot extra peak memory: {snapshot_memory['extra'] / 1e6:.0f} MB = "
            f"{memory_ratio:.3f}x the "
            f"model's {snapshot_memory['model'] / 1e6:.0f} MB (target <= {MEMORY_TARGET}x); a bare clone: "
            f"{clone_memory['extra'] / clone_memory['model']:.3f}x"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end (above the 2 cores, timings are noisy)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
