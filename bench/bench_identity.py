"""Content identity at disk speed, and what proving the weights adds.

Usage: python bench/bench_identity.py [--shards 4] [--shard-mib 128] [--rounds 3] [--proof]

1. Hashing. A checkpoint-shaped directory (``--shards`` weight files of ``--shard-mib`` MiB of
   random bytes, a config and a tokenizer file) is hashed by InvarLock's identity pass
   (``read_checkpoint``: each byte read once, one thread per file) and by a bare
   ``sha256sum`` of the same files, interleaved, page cache warm for both. Printed: the median
   wall times and their ratio (InvarLock / sha256sum; below 1 is faster), and the same with
   InvarLock held to one thread (the per-byte cost, like for like with the single-process tool).
2. ``--proof`` (needs torch and transformers): a random Llama (~30M parameters, float32
   safetensors) is loaded and its weights touched (certify proves a model it has just scored), then
   its files are hashed without and with the weights proof (every tensor compared byte for byte
   during the same read). Printed: both times and their ratio, and a bare read of the files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from invarlock.certification.identity import CheckpointLocation, checkpoint_files, read_checkpoint


def median_time(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_checkpoint(root: Path, shards: int, shard_mib: int) -> None:
    block = os.urandom(2**20)
    for i in range(shards):
        with open(root / f"model-{i + 1:05d}-of-{shards:05d}.safetensors", "wb") as out:
            for j in range(shard_mib):
                out.write(bytes([j % 251]) + block[1:])
    (root / "config.json").write_text('{"model_type": "llama"}\n')
    (root / "tokenizer.json").write_text('{"version": "1.0"}\n' * 1000)


def bare_read(root: Path) -> None:
    buffer = bytearray(8 * 2**20)
    for name in checkpoint_files(root):
        with open(root / name, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def sha256sum(root: Path) -> None:
    subprocess.run(["sha256sum", *checkpoint_files(root)], cwd=root, check=True, stdout=subprocess.DEVNULL)


def hashing(root: Path, rounds: int) -> None:
    location = CheckpointLocation(root, "directory")
    total = sum((root / n).stat().st_size for n in checkpoint_files(root)) / 2**20
    bare_read(root)  # warm the page cache for both sides
    ours, ours_one, bare = [], [], []
    for _ in range(rounds):  # interleaved, so both see the same machine
        bare.append(median_time(lambda: sha256sum(root), 1))
        ours.append(median_time(lambda: read_checkpoint(location), 1))
        ours_one.append(median_time(lambda: read_checkpoint(location, workers=1), 1))
    b, o, o1 = statistics.median(bare), statistics.median(ours), statistics.median(ours_one)
    files = len(checkpoint_files(root))
    print(f"hashing {total:.0f} MiB in {files} files, {os.cpu_count()} CPUs, warm cache")
    print(f"  sha256sum (bare)            {b:7.3f} s  {total / b:8.0f} MiB/s")
    print(f"  invarlock identity          {o:7.3f} s  {total / o:8.0f} MiB/s   ratio {o / b:.2f}")
    print(f"  invarlock identity, 1 thread{o1:7.3f} s  {total / o1:8.0f} MiB/s   ratio {o1 / b:.2f}")


def proof(root: Path, rounds: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from invarlock.certification.weights import WeightProof

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=8192,
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(root)
    model = LlamaForCausalLM.from_pretrained(root)
    with torch.no_grad():  # certify proves a model it has just scored: its weights are in memory
        for tensor in model.state_dict().values():
            tensor.float().sum()
    location = CheckpointLocation(root, "directory")
    total = sum((root / n).stat().st_size for n in checkpoint_files(root)) / 2**20
    bare_read(root)
    read, hashed, proved = [], [], []
    result = None
    for _ in range(rounds):
        read.append(median_time(lambda: bare_read(root), 1))
        hashed.append(median_time(lambda: read_checkpoint(location), 1))
        checker = WeightProof.of(model)
        assert checker is not None
        started = time.perf_counter()
        read_checkpoint(location, checker.visit)
        proved.append(time.perf_counter() - started)
        result = checker.info()
    r, h, p = statistics.median(read), statistics.median(hashed), statistics.median(proved)
    params = sum(t.numel() for t in model.parameters()) / 1e6
    assert result is not None and not result["differing"] and not result["newly_initialised"]
    print(f"weights proof: random Llama, {params:.0f}M parameters, {total:.0f} MiB float32 safetensors")
    print(f"  bare read of the files      {r:7.3f} s")
    print(f"  hash only                   {h:7.3f} s")
    print(
        f"  hash + proof (one read)     {p:7.3f} s   proof/hash ratio {p / h:.2f}; "
        f"{result['equal']} of {result['compared']} tensors equal"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--proof", action="store_true", help="also measure the weights proof (torch)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="invarlock-bench-identity-"))
    try:
        make_checkpoint(root, args.shards, args.shard_mib)
        hashing(root, args.rounds)
        if args.proof:
            shutil.rmtree(root)
            root.mkdir()
            proof(root, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
