"""Benchmark evaluation throughput through InvarLock's adapters against a bare Hugging Face loop.

    python bench/bench_eval.py [--repeats 5] [--windows 64] [--seq-len 128] [--batch-size 8] [--threads N]

The same windows (the embedded corpus, tokenized by the demo model's tokenizer) are scored two
ways in one process, interleaved (bare, InvarLock, bare, ...) so load from other processes hits
both alike:

    bare       model(input_ids, attention_mask).logits under torch.inference_mode, then
               cross_entropy of the shifted logits, summed per window
    invarlock  invarlock.certification.evaluation.scoring.score_windows: adapter.logits (the invarlock_logits
               hook, hf_causal) and the same per-window loss

for two models: the committed demo model (demo/model, ~1M parameters) and a wider random model
of the same vocabulary (hidden 512, 6 layers, ~20M parameters) where the forward pass dominates.
Printed: median seconds, tokens per second, and throughput ratio invarlock / bare (target >= 0.9).
Both paths must agree on every window's loss; the script checks that too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
import torch.nn.functional as F

from invarlock.adapters import get_adapter
from invarlock.certification.datasets import embedded_corpus
from invarlock.certification.evaluation.scoring import Framing, score_windows
from invarlock.certification.evaluation.windows import Window, make_windows, token_stream

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "demo" / "model"
TARGET = 0.9


def bare_loop(model: Any, windows: Sequence[Window], batch_size: int) -> list[float]:
    """What a user would write with transformers alone."""
    nll: list[float] = []
    for start in range(0, len(windows), batch_size):
        ids = torch.tensor([w.tokens for w in windows[start : start + batch_size]])
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            losses = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
            )
        nll += losses.view(ids.shape[0], -1).sum(dim=1, dtype=torch.float64).tolist()
    return nll


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def compare(label: str, model_dir: Path, windows: Sequence[Window], batch_size: int, repeats: int) -> float:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(model_dir, device="cpu")
    framing = Framing("causal")
    tokens = sum(len(w.tokens) for w in windows)

    def ours() -> list[float]:
        return [s.nll for s in score_windows(adapter, model, windows, framing, batch_size=batch_size)]

    def bare() -> list[float]:
        return bare_loop(model, windows, batch_size)

    ours(), bare()  # warm-up: first calls pay one-off allocation costs
    bare_times, our_times = [], []
    for _ in range(repeats):
        t, reference = timed(bare)
        bare_times.append(t)
        t, result = timed(ours)
        our_times.append(t)
    worst = max(abs(a - b) / max(abs(b), 1e-9) for a, b in zip(result, reference, strict=True))
    if worst > 1e-4:
        sys.exit(f"{label}: InvarLock and the bare loop disagree on a window's loss (relative {worst:.2e})")
    bare_s, ours_s = statistics.median(bare_times), statistics.median(our_times)
    ratio = bare_s / ours_s
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{label:<28} {n_params / 1e6:6.1f}M params  bare {bare_s:7.3f}s ({tokens / bare_s:9.0f} tok/s)  "
        f"invarlock {ours_s:7.3f}s ({tokens / ours_s:9.0f} tok/s)  throughput ratio {ratio:.3f}  "
        f"[{'ok' if ratio >= TARGET else 'BELOW TARGET'} >= {TARGET}]"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer = get_adapter("hf_causal").load_tokenizer(DEMO_MODEL)
    stream = token_stream(tokenizer, embedded_corpus("eval"))
    windows = make_windows(stream, length=args.seq_len, count=args.windows, seed=0).windows
    print(
        f"{len(windows)} windows x {args.seq_len} tokens, batch {args.batch_size}, "
        f"{args.repeats} interleaved repeats, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    ratios = [compare("demo model (demo/model)", DEMO_MODEL, windows, args.batch_size, args.repeats)]

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    wide = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=512,
            intermediate_size=1536,
            num_hidden_layers=6,
            num_attention_heads=8,
            num_key_value_heads=4,
            max_position_embeddings=args.seq_len,
        )
    )
    with tempfile.TemporaryDirectory() as directory:
        wide.save_pretrained(directory)
        del wide
        ratios.append(compare("wider random Llama", Path(directory), windows, args.batch_size, args.repeats))
    print(f"min throughput ratio {min(ratios):.3f} (target >= {TARGET})")
    if min(ratios) < TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()
