"""Benchmark hf_bnb snapshots of a bitsandbytes 8-bit model against bare PyTorch doing the same bytes.

    python bench/bench_bnb.py [--repeats 7] [--dir DIR]

A GPT-2-small-shaped model (GPT2Config defaults, random init) is saved in fp32 and loaded through
hf_bnb in 8-bit on the CPU: int8 linear weights, their float32 scales (SCB, outside parameters and
buffers), fp32 embeddings and norms, ~250 MB. In one process, each adapter operation is timed
against its bare baseline, interleaved (baseline, adapter, baseline, ...) so load from other
processes hits both alike; the medians and their ratio are printed (and, as a check on a busy
machine, the ratio of the fastest runs):

    snapshot          adapter.snapshot          vs  clone() of every tensor          target <= 1.3x
    restore           adapter.restore           vs  copy_() into every tensor        target <= 1.5x
    chunked snapshot  adapter.snapshot_chunked  vs  safetensors save_file            target <= 1.3x
    chunked restore   adapter.restore_chunked   vs  safetensors load_file + copy_()  target <= 1.3x

"Every tensor" is every distinct parameter and buffer plus the int8 scales: what both sides copy.
The adapter's side includes the hook dispatch and finding the quantization state at each call.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

TARGETS = {"snapshot": 1.3, "restore": 1.5, "chunked snapshot": 1.3, "chunked restore": 1.3}


def load_model(work: Path) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    from invarlock.adapters import get_adapter

    torch.manual_seed(0)
    checkpoint = work / "gpt2-small-random"
    GPT2LMHeadModel(GPT2Config()).save_pretrained(checkpoint)
    return get_adapter("hf_bnb").load_model(checkpoint, device="cpu")  # 8-bit, the default


def distinct_tensors(model: Any) -> dict[str, torch.Tensor]:
    """Every distinct parameter and buffer (tied ones once) and the int8 scales, by name."""
    from invarlock_bnb.layers import quantization_state

    found: dict[int, tuple[str, torch.Tensor]] = {}
    for name, tensor in [
        *model.named_parameters(),
        *model.named_buffers(),
        *quantization_state(model).items(),
    ]:
        found.setdefault(id(tensor), (name, tensor.detach()))
    return dict(found.values())


def interleaved(
    baseline: Callable[[], Any], adapter: Callable[[], Any], repeats: int, between: Callable[[], None]
) -> tuple[list[float], list[float]]:
    base_times: list[float] = []
    adapter_times: list[float] = []
    for _ in range(repeats):
        for run, times in ((baseline, base_times), (adapter, adapter_times)):
            start = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - start)
            del result
            between()
    return base_times, adapter_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where chunked snapshots are written")
    args = parser.parse_args()

    from safetensors.torch import load_file, save_file
    from transformers.utils import logging as transformers_logging

    from invarlock.adapters import get_adapter
    from invarlock_hf.snapshot import remove_chunked_snapshot

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    torch.set_grad_enabled(False)
    work = Path(tempfile.mkdtemp(prefix="bench-bnb-", dir=args.dir))
    try:
        adapter = get_adapter("hf_bnb")
        model = load_model(work)
        tensors = distinct_tensors(model)
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        int8 = sum(t.numel() for t in tensors.values() if t.dtype == torch.int8)
        print(
            f"model: GPT-2 small, bitsandbytes 8-bit ({int8 / 1e6:.0f} M int8 weights), "
            f"{size / 1e6:.0f} MB in {len(tensors)} distinct tensors"
        )
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
        rows = [
            (
                "snapshot",
                *interleaved(
                    lambda: [t.to("cpu", copy=True) for t in tensors.values()],
                    lambda: adapter.snapshot(model),
                    args.repeats,
                    lambda: None,
                ),
            ),
        ]
        copies = [t.clone() for t in tensors.values()]
        snapshot = adapter.snapshot(model)

        def bare_copy() -> None:
            for target, source in zip(tensors.values(), copies, strict=True):
                target.copy_(source)

        rows.append(
            (
                "restore",
                *interleaved(bare_copy, lambda: adapter.restore(model, snapshot), args.repeats, lambda: None),
            )
        )

        bare_file = work / "bare.safetensors"
        chunked: list[Path] = []

        def clean_files() -> None:
            bare_file.unlink(missing_ok=True)
            while chunked:
                remove_chunked_snapshot(chunked.pop())

        contiguous = {name: t.contiguous() for name, t in tensors.items()}
        rows.append(
            (
                "chunked snapshot",
                *interleaved(
                    lambda: save_file(contiguous, str(bare_file)),
                    lambda: chunked.append(adapter.snapshot_chunked(model, work)),
                    args.repeats,
                    clean_files,
                ),
            )
        )
        save_file(contiguous, str(bare_file))
        path = adapter.snapshot_chunked(model, work)

        def bare_read_and_copy() -> None:
            for name, source in load_file(str(bare_file)).items():
                tensors[name].copy_(source)

        rows.append(
            (
                "chunked restore",
                *interleaved(
                    bare_read_and_copy,
                    lambda: adapter.restore_chunked(model, path),
                    args.repeats,
                    lambda: None,
                ),
            )
        )

        print(
            f"\n{'operation':<18}{'bare (s)':>10}{'hf_bnb (s)':>12}{'ratio':>8}{'target':>9}{'min ratio':>11}"
        )
        failed = False
        for name, base, ours in rows:
            ratio = statistics.median(ours) / statistics.median(base)
            failed |= ratio > TARGETS[name]
            print(
                f"{name:<18}{statistics.median(base):>10.3f}{statistics.median(ours):>12.3f}"
                f"{ratio:>7.2f}x{TARGETS[name]:>8.1f}x{min(ours) / min(base):>10.2f}x"
            )
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
