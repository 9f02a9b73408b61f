"""Benchmark invarlock-hf's load_model against a plain from_pretrained with the same arguments.

    python bench/bench_load.py [--repeats 21] [--dir DIR]

A GPT-2-small-shaped checkpoint (GPT2Config defaults, random init, fp32, ~500 MB) is saved once to
a temporary directory. In one process, loads alternate (plain, adapter, plain, ...) so page cache and
load from other processes hit both alike; each side is warmed up once first. For each argument set
the medians and minimums of both sides are printed, and the ratio: the median over repeats of
load_model / from_pretrained for the two loads of one repeat (neighbours in time share the machine's
load, so this ratio is steadier than a ratio of medians on a busy machine). Target: <= 1.05x.

Also printed: the adapter's own time per load (load_model's time minus the from_pretrained call it
makes, measured inside the same call), which machine load barely touches, and the ratio it implies,
1 + own time / from_pretrained median.

The adapter side is what users call, ``get_adapter("hf_causal").load_model(path, device="cpu", ...)``:
plugin dispatch, readiness check, offline guard, argument parsing and all.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

TARGET = 1.05
# (label, adapter keyword arguments, the same arguments as from_pretrained takes them)
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("default", {}, {}),
    ("dtype=bfloat16", {"dtype": "bf16"}, {"dtype": torch.bfloat16}),
    ("device_map=cpu", {"device_map": "cpu"}, {"device_map": "cpu"}),
]


def save_checkpoint(directory: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(directory)
    return directory


def timed(load: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    model = load()
    elapsed = time.perf_counter() - start
    del model
    return elapsed


@contextmanager
def timing_from_pretrained(auto_class: Any, durations: list[float]) -> Iterator[None]:
    """Record how long each ``auto_class.from_pretrained`` call takes while the body runs."""
    original = auto_class.from_pretrained

    def from_pretrained(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - start)

    auto_class.from_pretrained = from_pretrained
    try:
        yield
    finally:
        auto_class.from_pretrained = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the checkpoint")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    from invarlock.adapters import get_adapter

    logging.disable_progress_bar()
    adapter = get_adapter("hf_causal")
    inner: list[float] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = save_checkpoint(Path(tmp) / "gpt2-small")
        size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
        print(
            f"GPT-2-small-shaped checkpoint: {size:.0f} MB at {path}; torch {torch.__version__}, "
            f"transformers {__import__('transformers').__version__}; {args.repeats} repeats"
        )
        worst = 0.0
        for label, adapter_kwargs, plain_kwargs in CASES:

            def plain(kwargs: dict[str, Any] = plain_kwargs) -> Any:
                return AutoModelForCausalLM.from_pretrained(path, **kwargs)

            def through_adapter(kwargs: dict[str, Any] = adapter_kwargs) -> Any:
                return adapter.load_model(path, device="cpu", **kwargs)

            timed(plain), timed(through_adapter)  # warm-up: page cache, imports, plugin manager
            plain_times, adapter_times, own_times = [], [], []
            for _ in range(args.repeats):
                plain_times.append(timed(plain))
                inner.clear()
                with timing_from_pretrained(AutoModelForCausalLM, inner):
                    adapter_times.append(timed(through_adapter))
                own_times.append(adapter_times[-1] - sum(inner))
            ratio = statistics.median(a / p for a, p in zip(adapter_times, plain_times, strict=True))
            own = statistics.median(own_times)
            implied = 1 + own / statistics.median(plain_times)
            worst = max(worst, ratio)
            verdict = "ok" if ratio <= TARGET else "OVER TARGET"
            print(
                f"  {label:15s} from_pretrained median {statistics.median(plain_times) * 1000:6.1f} ms"
                f" (min {min(plain_times) * 1000:6.1f}) | load_model median"
                f" {statistics.median(adapter_times) * 1000:6.1f} ms (min {min(adapter_times) * 1000:6.1f})"
                f" | ratio {ratio:.3f}x  {verdict}"
            )
            print(
                f"  {'':15s} adapter's own time per load {own * 1000:.2f} ms -> implied ratio {implied:.3f}x"
            )
        print(f"worst ratio {worst:.3f}x (target <= {TARGET}x)")


if __name__ == "__main__":
    main()
