"""Benchmark hf_peft snapshots (adapter-only by default) against bare PyTorch on the same bytes.

    python bench/bench_peft_snapshot.py [--repeats 5] [--dir DIR] [--rank 16]

A llama-shaped base (hidden 512, 8 layers, MLP 1408, vocab 32000, fp32, ~240 MB, random init) is
saved, and a LoRA adapter (rank 16 on every attention and MLP projection, random weights) is saved
over it; hf_peft loads the adapter over the base. Printed:

- sizes: the adapter's parameter bytes, the in-memory adapter-only snapshot, the chunked snapshot on
  disk (shards and manifest), and the base;
- the four snapshot hooks against bare clone() / copy_() / safetensors save / load + copy_() of the
  adapter's tensors (snapshot_timing.py describes the baselines and targets). The adapter-only
  snapshot and restore also compute the base digest (CRC-32 over every base byte), which the bare
  side does not do: that is the price of proving the base unchanged;
- the adapter-only snapshot against a bare clone() of every tensor of the model (what a full
  snapshot must copy), and ``snapshot="full"`` against the same clone();
- the base digest alone: CRC-32 (the engine's, ISA-L when installed) against hashlib's sha256 and
  against a bare clone() of the base tensors, over the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from snapshot_timing import (
    SnapshotOperations,
    distinct_tensors,
    interleaved,
    print_rows,
    time_snapshot_operations,
    use_fresh_memory,
)

SHAPE = {
    "hidden_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "intermediate_size": 1408,
    "vocab_size": 32000,
    "max_position_embeddings": 512,
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(work: Path, rank: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base_dir, adapter_dir = work / "base", work / "lora"
    base = LlamaForCausalLM(LlamaConfig(**SHAPE))
    base.save_pretrained(base_dir)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.peft_config["default"].base_model_name_or_path = str(base_dir)
    peft_model.save_pretrained(adapter_dir)
    return adapter_dir


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def sha256_of(tensors: list[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=None, help="where checkpoints and snapshots are written")
    args = parser.parse_args()
    use_fresh_memory()

    from transformers.utils import logging as transformers_logging

    from invarlock.adapters import get_adapter
    from invarlock_peft.adapters import adapter_tensors, base_tensors
    from invarlock_peft.snapshot import base_digest

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    torch.set_grad_enabled(False)
    work = Path(tempfile.mkdtemp(prefix="bench-peft-", dir=args.dir))
    try:
        adapter = get_adapter("hf_peft")
        adapter_dir = build(work, args.rank)
        model = adapter.load_model(adapter_dir, device="cpu")
        lora = distinct_tensors(adapter_tensors(model))
        base = distinct_tensors(base_tensors(model))
        everything = {**base, **lora}
        lora_bytes = sum(t.numel() * t.element_size() for t in lora.values())
        base_bytes = sum(t.numel() * t.element_size() for t in base.values())
        snapshot = adapter.snapshot(model)
        chunked = adapter.snapshot_chunked(model, work)
        on_disk = directory_bytes(chunked)
        shutil.rmtree(chunked)
        print(f"base: llama {SHAPE}, fp32, {base_bytes / 1e6:.1f} MB in {len(base)} tensors")
        print(
            f"adapter: LoRA r={args.rank} on {', '.join(TARGETS)}: "
            f"{lora_bytes / 1e6:.2f} MB in {len(lora)} tensors"
        )
        print(
            f"adapter-only snapshot: {snapshot.nbytes} bytes in memory "
            f"({snapshot.nbytes / lora_bytes - 1:+.3%} of the adapter's parameter bytes), "
            f"chunked {on_disk} bytes on disk ({on_disk / lora_bytes - 1:+.3%}, shards + manifest)"
        )
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
        del snapshot

        hooks = SnapshotOperations.of_adapter(adapter, model)
        ok = print_rows("hf_peft adapter", time_snapshot_operations(lora, hooks, work, args.repeats))

        def clone_everything() -> list[torch.Tensor]:
            return [t.clone() for t in everything.values()]

        full_model = adapter.load_model(adapter_dir, device="cpu", snapshot="full")
        whole = [
            interleaved("adapter-only", clone_everything, lambda: adapter.snapshot(model), args.repeats),
            interleaved(
                "full snapshot", clone_everything, lambda: adapter.snapshot(full_model), args.repeats
            ),
        ]
        print_rows("vs clone all", whole)

        base_list = list(base.values())
        digest_rows = [
            interleaved(
                "CRC-32 digest", lambda: sha256_of(base_list), lambda: base_digest(model), args.repeats
            ),
            interleaved(
                "CRC-32 vs clone",
                lambda: [t.clone() for t in base_list],
                lambda: base_digest(model),
                args.repeats,
            ),
        ]
        print_rows("digest (bare=sha256, then clone)", digest_rows)
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
