"""Benchmark the snapshot engine (invarlock-torch) against bare PyTorch doing the same bytes.

    python bench/bench_snapshot.py [--repeats 11] [--dir DIR] [--shard-bytes N] [--operations ...]

On a GPT-2-small-shaped model (GPT2Config defaults, random init, fp32, ~500 MB), the engine's
functions (take_snapshot, restore_snapshot, write_chunked_snapshot, restore_chunked_snapshot) are
timed in one process against bare PyTorch doing the same bytes; snapshot_timing.py describes the
baselines, the targets and the table. "Every tensor" is every distinct tensor (GPT-2's tied
embedding once), which is what both sides copy. The chunked files go to --dir (default: the system
temp dir), in shards of --shard-bytes (default: the engine's, which holds this model in one shard;
smaller shards make a multi-shard restore, which reads and verifies every shard but the last
twice). The chunked snapshot checksums on a second thread, so on an idle machine its wall-time
ratio is below its CPU-time ratio.

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
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import snapshot_timing
import torch
from snapshot_timing import (
    TARGETS,
    SnapshotOperations,
    print_rows,
    time_snapshot_operations,
    use_fresh_memory,
)

MEMORY_TARGET = 1.1


def build_model() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config()).eval()


def distinct_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every distinct parameter and buffer by its first name (tied ones once)."""
    return snapshot_timing.distinct_tensors([*model.named_parameters(), *model.named_buffers()])


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
    from invarlock_torch import take_snapshot

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
    env = {**os.environ, **snapshot_timing.FRESH_MEMORY, "MALLOC_TRIM_THRESHOLD_": "0"}
    output = subprocess.run(
        [sys.executable, __file__, "--memory-child", operation],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--dir", type=Path, default=None, help="where chunked snapshots are written")
    parser.add_argument("--shard-bytes", type=int, default=None, help="shard size of the chunked snapshots")
    parser.add_argument("--operations", nargs="+", choices=[*TARGETS, "memory"], default=[*TARGETS, "memory"])
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_fresh_memory()
    if args.memory_child:
        measure_memory_child(args.memory_child)
        return 0

    from invarlock_torch import (
        chunked,
        restore_chunked_snapshot,
        restore_snapshot,
        take_snapshot,
        write_chunked_snapshot,
    )

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
    engine = SnapshotOperations(
        snapshot=lambda: take_snapshot(model),
        restore=lambda saved: restore_snapshot(model, saved),
        snapshot_chunked=lambda directory: write_chunked_snapshot(
            model, directory, shard_bytes=args.shard_bytes
        ),
        restore_chunked=lambda path: restore_chunked_snapshot(model, path),
    )
    operations = [name for name in args.operations if name in TARGETS]
    work = Path(tempfile.mkdtemp(prefix="bench-snapshot-", dir=args.dir))
    try:
        rows = time_snapshot_operations(distinct_tensors(model), engine, work, args.repeats, operations)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = not print_rows("engine", rows) if rows else False

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
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
