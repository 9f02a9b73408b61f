"""Timing snapshot operations against bare PyTorch on the same bytes: shared by bench_snapshot.py,
bench_bnb.py and bench_gptq_awq.py (not a benchmark itself).

Each operation is timed against its baseline, interleaved (baseline, ours, baseline, ...) so load
from other processes hits both alike:

    snapshot          vs  clone() of every tensor                      target <= 1.3x
    restore           vs  copy_() into every tensor                    target <= 1.5x
    chunked snapshot  vs  safetensors save_file of those tensors       target <= 1.3x
    chunked restore   vs  safetensors load_file + copy_() into them    target <= 1.3x

The chunked restore checks every tensor's CRC-32 before it writes a byte (so a corrupt snapshot
leaves the model untouched): one more read of the data than its baseline makes. The row "CRC-32
pass" times that read alone (the same bytes, two threads) against the same baseline: the chunked
restore's ratio cannot go below 1 plus that one. The row "vs its floor" times the chunked restore
against that floor itself (bare read + copy, then one CRC-32 pass), target <= 1.15x.

The chunked snapshot fsyncs every file before its final rename (a snapshot that looks complete
must survive a power cut), so it waits for the disk where a bare save_file returns once the bytes
are in the page cache; the row "vs durable save" times it against save_file followed by an fsync
of that file, the bare cost of the same durability.

On Linux the benchmarks run with glibc's mmap threshold fixed at 64 KiB (:func:`use_fresh_memory`
re-runs the script with ``MALLOC_MMAP_THRESHOLD_`` set), so every tensor copy on either side gets
fresh memory from the kernel, as a snapshot taken once in a real run does. Left to its adaptive
threshold, malloc serves a copy from freed blocks or from new pages depending on the order of the
previous run's allocations, which differs between the two sides: on one engine and one model that
swung the snapshot ratio between 0.6x and 1.6x.

Both sides write to the same disk; dirty pages are flushed (os.sync) between writes so one write's
backlog does not throttle the next. The table gives the ratio of wall-time medians (what the target
is about), the ratio of process CPU-time medians (user + system, all threads: steadier on a shared
machine, and above the wall ratio where work runs on a second thread), and the ratio of the fastest
runs.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

TARGETS = {"snapshot": 1.3, "restore": 1.5, "chunked snapshot": 1.3, "chunked restore": 1.3}
FLOOR_TARGET = 1.15
"""The chunked restore against its verify-before-write floor: the bare read and copy plus one
CRC-32 pass over the same bytes."""
FRESH_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def use_fresh_memory() -> None:
    """Re-run this script with :data:`FRESH_MEMORY` in its environment, unless it is there (Linux)."""
    if sys.platform == "linux" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **FRESH_MEMORY})


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    operation: str
    bare: Timings
    ours: Timings
    target: float | None

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours.wall) / statistics.median(self.bare.wall)

    @property
    def ok(self) -> bool:
        return self.target is None or self.ratio <= self.target


@dataclass(frozen=True)
class SnapshotOperations:
    """What is timed against the baselines: an adapter's hooks, or the engine's functions."""

    snapshot: Callable[[], Any]
    restore: Callable[[Any], None]
    snapshot_chunked: Callable[[Path], Path]
    restore_chunked: Callable[[Path], None]

    @classmethod
    def of_adapter(cls, adapter: Any, model: Any) -> SnapshotOperations:
        """An adapter's four snapshot hooks, on ``model``."""
        return cls(
            snapshot=lambda: adapter.snapshot(model),
            restore=lambda saved: adapter.restore(model, saved),
            snapshot_chunked=lambda directory: adapter.snapshot_chunked(model, directory),
            restore_chunked=lambda path: adapter.restore_chunked(model, path),
        )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def interleaved(
    operation: str,
    baseline: Callable[[], Any],
    ours: Callable[[], Any],
    repeats: int,
    *,
    between: Callable[[], None] = lambda: None,
    synchronize: Callable[[], None] = lambda: None,
    target: float | None = None,
) -> Row:
    """Time ``baseline`` and ``ours`` in turn; ``synchronize`` runs (untimed) before each run."""
    row = Row(operation, Timings(), Timings(), target)
    for _ in range(repeats):
        for run, timings in ((baseline, row.bare), (ours, row.ours)):
            synchronize()
            cpu, start = _cpu_seconds(), time.perf_counter()
            result = run()
            timings.wall.append(time.perf_counter() - start)
            timings.cpu.append(_cpu_seconds() - cpu)
            del result
            between()
    return row


def distinct_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Tensors with their own storage, by their first name: tied tensors and views of one storage
    count once (safetensors refuses to save shared storage twice)."""
    found: dict[int, tuple[str, torch.Tensor]] = {}
    for name, tensor in named:
        found.setdefault(tensor.untyped_storage().data_ptr(), (name, tensor.detach()))
    return dict(found.values())


def checksum_pass(path: Path) -> None:
    """CRC-32 of a file's bytes on two threads, with the engine's CRC-32: the read a chunked restore
    makes before its copy (the engine checksums each tensor; two equal halves are the best case)."""
    import mmap
    from concurrent.futures import ThreadPoolExecutor

    from invarlock_torch import crc32

    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        data = memoryview(mapped)
        half = len(data) // 2
        with ThreadPoolExecutor(max_workers=1) as pool:
            later = pool.submit(crc32, data[half:])
            crc32(data[:half])
            later.result()
        data.release()


def time_snapshot_operations(
    tensors: Mapping[str, torch.Tensor],
    ours: SnapshotOperations,
    work: Path,
    repeats: int,
    operations: Iterable[str] = tuple(TARGETS),
    *,
    synchronize: Callable[[], None] = lambda: None,
) -> list[Row]:
    """Time each of ``operations`` against its baseline on ``tensors`` (what both sides copy).

    :param synchronize: run before each timed run: processes timed side by side (tensor-parallel
        ranks) pass a barrier, so every process runs the baseline, or ours, at the same time.
    """
    import shutil

    from safetensors.torch import load_file, save_file

    wanted = set(operations)
    rows: list[Row] = []
    if "snapshot" in wanted:

        def clone_all() -> list[torch.Tensor]:  # to the CPU, as a snapshot is (a clone, on a CPU model)
            return [t.to("cpu", copy=True) for t in tensors.values()]

        rows.append(
            interleaved(
                "snapshot",
                clone_all,
                ours.snapshot,
                repeats,
                synchronize=synchronize,
                target=TARGETS["snapshot"],
            )
        )
    if "restore" in wanted:
        copies = {name: t.to("cpu", copy=True) for name, t in tensors.items()}
        saved = ours.snapshot()

        def bare_copy() -> None:
            for name, t in tensors.items():
                t.copy_(copies[name])

        rows.append(
            interleaved(
                "restore",
                bare_copy,
                lambda: ours.restore(saved),
                repeats,
                synchronize=synchronize,
                target=TARGETS["restore"],
            )
        )
        del copies, saved

    baseline_file = work / "baseline.safetensors"  # the same disk as the chunked snapshots
    contiguous = {name: t.contiguous() for name, t in tensors.items()}
    if "chunked snapshot" in wanted:
        written: list[Path] = []

        def clean() -> None:
            baseline_file.unlink(missing_ok=True)
            while written:
                shutil.rmtree(written.pop())
            os.sync()

        def durable_save() -> None:
            save_file(contiguous, str(baseline_file))
            descriptor = os.open(baseline_file, os.O_RDONLY)
            os.fsync(descriptor)
            os.close(descriptor)

        rows.append(
            interleaved(
                "chunked snapshot",
                lambda: save_file(contiguous, str(baseline_file)),
                lambda: written.append(ours.snapshot_chunked(work)),
                repeats,
                between=clean,
                synchronize=synchronize,
                target=TARGETS["chunked snapshot"],
            )
        )
        rows.append(
            interleaved(
                "  vs durable save",
                durable_save,
                lambda: written.append(ours.snapshot_chunked(work)),
                repeats,
                between=clean,
                synchronize=synchronize,
                target=TARGETS["chunked snapshot"],
            )
        )
    if "chunked restore" in wanted:
        save_file(contiguous, str(baseline_file))
        path = ours.snapshot_chunked(work)

        def bare_load() -> None:
            for name, t in load_file(str(baseline_file)).items():
                tensors[name].copy_(t)

        def restore() -> None:
            ours.restore_chunked(path)

        def floor() -> None:
            bare_load()
            checksum_pass(baseline_file)

        target = TARGETS["chunked restore"]
        rows.append(
            interleaved(
                "chunked restore", bare_load, restore, repeats, synchronize=synchronize, target=target
            )
        )
        rows.append(
            interleaved(
                "  CRC-32 pass",
                bare_load,
                lambda: checksum_pass(baseline_file),
                repeats,
                synchronize=synchronize,
            )
        )
        rows.append(
            interleaved(
                "  vs its floor", floor, restore, repeats, synchronize=synchronize, target=FLOOR_TARGET
            )
        )
        shutil.rmtree(path)
        baseline_file.unlink()
    return rows


def print_rows(title: str, rows: Iterable[Row]) -> bool:
    """Print the table; returns whether every row with a target met it."""
    print(
        f"\n{title:<18}{'bare':>9}{'ours':>9}{'ratio':>8}{'target':>8}  ok {'cpu ratio':>10}{'min ratio':>10}"
    )
    all_ok = True
    for row in rows:
        bare, ours = statistics.median(row.bare.wall), statistics.median(row.ours.wall)
        cpu_ratio = statistics.median(row.ours.cpu) / max(statistics.median(row.bare.cpu), 1e-9)
        target = f"{row.target:>7.2f}x" if row.target else f"{'-':>8}"
        verdict = "-  " if row.target is None else "yes" if row.ok else "NO "
        all_ok &= row.ok
        print(
            f"{row.operation:<18}{bare:>7.3f} s{ours:>7.3f} s{row.ratio:>7.2f}x{target}  {verdict}"
            f"{cpu_ratio:>9.2f}x{min(row.ours.wall) / min(row.bare.wall):>9.2f}x"
        )
    print(f"(load average {os.getloadavg()[0]:.1f}; above the CPU count, timings are noisy)")
    return all_ok
