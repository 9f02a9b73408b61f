"""Benchmark the snapshot engine on a tensor-parallel model: two ranks, each against bare PyTorch on
its own local shards.

    python bench/bench_snapshot_tp.py [--repeats 5] [--dir DIR]

Builds a llama-shaped checkpoint (hidden 1024, 8 layers, vocab 32000, fp32: about 0.6 GB) in a
temp dir, then runs itself under ``torch.distributed.run --nproc-per-node 2`` (gloo, CPU). Each rank
loads it with ``tp_plan="auto"`` (weights are DTensors sharded across the two ranks) and times the
engine's snapshot, restore, chunked snapshot and chunked restore on the model against the bare
operations of snapshot_timing.py on that rank's local shards (the same bytes), with the same rows
(the chunked snapshot also against a durable save: save_file plus an fsync, as the engine fsyncs
every file). The ranks pass a barrier before every timed run, so both run the baseline at the same
time and both run the engine at the same time: each side meets the same contention for the cores
and the disk. Both ranks print their table; compare the ratios, not the times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import snapshot_timing
from snapshot_timing import SnapshotOperations, print_rows, time_snapshot_operations

SIZES = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
}


def rank_main(checkpoint: Path, work: Path, repeats: int) -> bool:
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM

    from invarlock_torch import (
        restore_chunked_snapshot,
        restore_snapshot,
        take_snapshot,
        write_chunked_snapshot,
    )

    torch.set_grad_enabled(False)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, tp_plan="auto", dtype=torch.float32).eval()
    rank = dist.get_rank()
    local = snapshot_timing.distinct_tensors(
        (name, t.to_local() if isinstance(t, DTensor) else t)
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    )
    engine = SnapshotOperations(
        snapshot=lambda: take_snapshot(model),
        restore=lambda saved: restore_snapshot(model, saved),
        snapshot_chunked=lambda directory: write_chunked_snapshot(model, directory),
        restore_chunked=lambda path: restore_chunked_snapshot(model, path),
    )
    rank_work = work / f"rank{rank}"
    rank_work.mkdir(parents=True, exist_ok=True)
    rows = time_snapshot_operations(local, engine, rank_work, repeats, synchronize=dist.barrier)
    megabytes = sum(t.numel() * t.element_size() for t in local.values()) / 1e6
    dist.barrier()
    for turn in range(dist.get_world_size()):  # one table at a time
        if turn == rank:
            ok = print_rows(f"rank {rank} ({megabytes:.0f} MB)", rows)
            sys.stdout.flush()
        dist.barrier()
    dist.destroy_process_group()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where checkpoint and snapshots are written")
    parser.add_argument("--rank-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_worker:
        return 0 if rank_main(*args.rank_worker, args.repeats) else 1
    snapshot_timing.use_fresh_memory()
    work = Path(tempfile.mkdtemp(prefix="bench-snapshot-tp-", dir=args.dir))
    try:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(**SIZES)).save_pretrained(work / "checkpoint")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        command += [
            __file__,
            "--repeats",
            str(args.repeats),
            "--rank-worker",
            str(work / "checkpoint"),
            str(work),
        ]
        return subprocess.run(command, env=env, check=False).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
