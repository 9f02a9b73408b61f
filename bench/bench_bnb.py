"""Benchmark hf_bnb snapshots of a bitsandbytes 8-bit model against bare PyTorch doing the same bytes.

    python bench/bench_bnb.py [--repeats 7] [--dir DIR] [--device cuda]

A GPT-2-small-shaped model (GPT2Config defaults, random init) is saved in fp32 and loaded through
hf_bnb in 8-bit on the CPU: int8 linear weights, their float32 scales (SCB, outside parameters and
buffers), fp32 embeddings and norms, ~250 MB. The adapter's snapshot, restore, snapshot_chunked and
restore_chunked are timed in one process against bare PyTorch on the same bytes; snapshot_timing.py
describes the baselines, the targets and the table. "Every tensor" is every distinct parameter and
buffer plus the int8 scales: what both sides copy. The adapter's side includes the hook dispatch and
finding the quantization state at each call.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from snapshot_timing import (
    SnapshotOperations,
    distinct_tensors,
    print_rows,
    time_snapshot_operations,
    use_fresh_memory,
)


def load_model(work: Path, device: str) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    from invarlock.adapters import get_adapter

    torch.manual_seed(0)
    checkpoint = work / "gpt2-small-random"
    GPT2LMHeadModel(GPT2Config()).save_pretrained(checkpoint)
    return get_adapter("hf_bnb").load_model(checkpoint, device=device)  # 8-bit, the default


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where chunked snapshots are written")
    parser.add_argument("--device", default="cpu", help="where the model is loaded (cpu, cuda)")
    args = parser.parse_args()
    use_fresh_memory()

    from transformers.utils import logging as transformers_logging

    from invarlock.adapters import get_adapter
    from invarlock_bnb.layers import quantization_state

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    torch.set_grad_enabled(False)
    work = Path(tempfile.mkdtemp(prefix="bench-bnb-", dir=args.dir))
    try:
        adapter = get_adapter("hf_bnb")
        model = load_model(work, args.device)
        tensors = distinct_tensors(
            [*model.named_parameters(), *model.named_buffers(), *quantization_state(model).items()]
        )
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        int8 = sum(t.numel() for t in tensors.values() if t.dtype == torch.int8)
        print(
            f"model: GPT-2 small, bitsandbytes 8-bit ({int8 / 1e6:.0f} M int8 weights), "
            f"{size / 1e6:.0f} MB in {len(tensors)} distinct tensors"
        )
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
        hooks = SnapshotOperations.of_adapter(adapter, model)
        rows = time_snapshot_operations(tensors, hooks, work, args.repeats)
        return 0 if print_rows("hf_bnb", rows) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
