"""Benchmark hf_compressed against bare transformers: load, forward, and snapshots of the packed state.

    python bench/bench_compressed.py [--repeats 5] [--dir DIR] [--scheme w4a16|w8a8]

A llama of 12 layers, hidden 1024, MLP 2816 (about 200 M parameters; random init) is compressed
on the CPU with compressed-tensors' own API (invarlock_compressed.testing) and saved. Then, in one
process, interleaved:

    load     hf_compressed load_model      vs  AutoModelForCausalLM.from_pretrained (bare transformers)
    forward  hf_compressed (kept packed:       vs  bare transformers after its first pass (decompressed in
             decompresses each layer per call)     place: dense float weights)

and the four snapshot operations of the adapter against bare PyTorch on the same tensors (the
packed weights, scales and shapes), as bench/snapshot_timing.py describes.
"""

from __future__ import annotations

import argparse
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

SIZES = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 12,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 32000,
    "max_position_embeddings": 512,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where checkpoints and snapshots are written")
    parser.add_argument("--scheme", choices=("w4a16", "w8a8"), default="w4a16")
    args = parser.parse_args()
    use_fresh_memory()

    import transformers
    from transformers.utils import logging as transformers_logging

    from invarlock.adapters import get_adapter
    from invarlock_compressed.testing import save_compressed_checkpoint

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    torch.set_grad_enabled(False)
    work = Path(tempfile.mkdtemp(prefix="bench-compressed-", dir=args.dir))
    try:
        checkpoint = save_compressed_checkpoint(work / args.scheme, args.scheme, **SIZES)
        adapter = get_adapter("hf_compressed")

        def bare_load() -> object:
            return transformers.AutoModelForCausalLM.from_pretrained(checkpoint, device_map="cpu")

        def our_load() -> object:
            return adapter.load_model(checkpoint, device="cpu")

        load_row = interleaved("load", bare_load, our_load, args.repeats)
        model, bare = our_load(), bare_load()
        input_ids = torch.randint(
            0, SIZES["vocab_size"], (1, 128), generator=torch.Generator().manual_seed(0)
        )
        bare(input_ids)  # transformers decompresses the whole model at its first pass
        forward_row = interleaved(
            "forward (1x128)", lambda: bare(input_ids), lambda: model(input_ids), args.repeats
        )
        tensors = distinct_tensors([*model.named_parameters(), *model.named_buffers()])
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        print(
            f"model: llama {SIZES['num_hidden_layers']} layers, hidden {SIZES['hidden_size']}, "
            f"{args.scheme} kept compressed: {size / 1e6:.0f} MB in {len(tensors)} distinct tensors"
        )
        print(
            f"torch {torch.__version__}, transformers {transformers.__version__}, "
            f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
        )
        print_rows("vs transformers", [load_row, forward_row])
        rows = time_snapshot_operations(
            tensors, SnapshotOperations.of_adapter(adapter, model), work, args.repeats
        )
        return 0 if print_rows("hf_compressed", rows) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
