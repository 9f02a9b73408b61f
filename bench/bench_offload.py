"""Peak memory of snapshots of a model accelerate offloaded wholly to disk, against its size.

    python bench/bench_offload.py [--layers 6]

A GPT-2-small-shaped model (GPT2Config, --layers blocks, random init, fp32) is saved, then loaded
with ``device_map={"": "disk"}``: every weight stays in the checkpoint and is read on use. Each
operation runs in a fresh child process (the method of bench_snapshot.py: malloc_trim, a fixed mmap
threshold, the peak-RSS counter reset through /proc/self/clear_refs, VmHWM read after). Printed per
operation: the extra peak RSS, as a ratio to the model's bytes and to its largest tensor's. A chunked
snapshot and restore stream one weight at a time (shards of --shard-bytes, default one tensor a
shard), so their extra peak is bounded by a few tensors, not the model; an in-memory snapshot holds
its copies, about 1x the model. Linux only.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import snapshot_timing

OPERATIONS = ("load_only", "snapshot", "chunked_snapshot", "chunked_restore")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def save_checkpoint(directory: Path, layers: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=layers)).save_pretrained(directory)


def child(operation: str, checkpoint: Path, work: Path, shard_bytes: int) -> None:
    import transformers

    from invarlock_torch import restore_chunked_snapshot, take_snapshot, write_chunked_snapshot

    model = transformers.AutoModelForCausalLM.from_pretrained(
        checkpoint, device_map={"": "disk"}, offload_folder=str(work / "offload")
    ).eval()
    prepared = write_chunked_snapshot(model, work / "prepared", shard_bytes=shard_bytes)
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), "pt") as handle:
        total = largest = 0
        for key in handle.keys():  # noqa: SIM118
            shape = handle.get_slice(key).get_shape()
            n = 4
            for size in shape:
                n *= size
            total += n
            largest = max(largest, n)
    runs: dict[str, Any] = {
        "load_only": lambda: None,
        "snapshot": lambda: take_snapshot(model),
        "chunked_snapshot": lambda: write_chunked_snapshot(model, work / "chunked", shard_bytes=shard_bytes),
        "chunked_restore": lambda: restore_chunked_snapshot(model, prepared),
    }
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    result = runs[operation]()
    peak = _status_kib("VmHWM")
    del result
    print(json.dumps({"extra": (peak - before) * 1024, "model": total, "largest": largest}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--shard-bytes", type=int, default=0, help="default: one tensor a shard")
    parser.add_argument(
        "--child", nargs=3, metavar=("OPERATION", "CHECKPOINT", "WORK"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        operation, checkpoint, work = args.child
        child(operation, Path(checkpoint), Path(work), args.shard_bytes or 1)
        return 0
    with tempfile.TemporaryDirectory() as temp:
        checkpoint = Path(temp) / "checkpoint"
        save_checkpoint(checkpoint, args.layers)
        env = {
            **os.environ,
            **snapshot_timing.FRESH_MEMORY,
            "MALLOC_TRIM_THRESHOLD_": "0",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error",
        }
        header = f"{'operation (model wholly on disk)':36} {'extra peak MiB':>14} {'x model':>8}"
        print(f"{header} {'x largest tensor':>17}")
        for operation in OPERATIONS:
            work = Path(temp) / operation
            work.mkdir()
            shard = args.shard_bytes or 1  # 1: every tensor its own shard (a tensor is never split)
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--shard-bytes",
                    str(shard),
                    "--child",
                    operation,
                    str(checkpoint),
                    str(work),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"{operation:36} {row['extra'] / 2**20:14.1f} {row['extra'] / row['model']:8.2f} "
                f"{row['extra'] / row['largest']:17.2f}"
            )
        print(f"model: {row['model'] / 2**20:.1f} MiB, largest tensor {row['largest'] / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
