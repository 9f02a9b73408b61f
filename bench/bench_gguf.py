"""Scoring throughput of a GGUF model through the gguf adapter vs. a bare llama-cpp-python loop.

Builds a random Llama checkpoint (the demo model's byte-level BPE tokenizer, a padded
embedding), writes it as one GGUF with the test suite's writer (packages/invarlock-gguf/tests/
gguf_export.py), loads it once through the adapter, and scores the same windows two ways in the
same process, on the same ``llama_cpp.Llama`` context (so the same threads), interleaved round
by round:

- adapter: ``adapter.logits(model, inputs)`` (the invarlock_logits hook certify uses): id
  checks, then per row ``reset``/``eval`` and the logits copied into one torch tensor;
- bare:    per row ``llm.reset(); llm.eval(ids); llm.scores[:seq].copy()`` (the least a caller
  keeping every position's logits can do).

Prints tokens/s for each and the ratio adapter/bare (target >= 0.95): ``best`` sums, per batch,
the fastest of the rounds (the cost without interference from other processes); ``median`` is
shown beside it. ``python bench/bench_gguf.py [--type Q8_0] [--threads N]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "model"


def writer() -> Any:
    spec = importlib.util.spec_from_file_location(
        "gguf_export", ROOT / "packages" / "invarlock-gguf" / "tests" / "gguf_export.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_gguf(
    directory: Path, hidden: int, layers: int, vocab: int, positions: int, weight_type: str
) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        vocab_size=vocab,
        max_position_embeddings=max(positions, 256),
        tie_word_embeddings=False,
    )
    checkpoint = directory / "checkpoint"
    LlamaForCausalLM(config).save_pretrained(checkpoint)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(DEMO / name, checkpoint / name)
    return writer().write_gguf(checkpoint, directory / f"bench-{weight_type.lower()}.gguf", weight_type)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--type", default="Q8_0", help="weight type of the GGUF (F32, F16, Q8_0, Q4_0...)")
    parser.add_argument("--threads", type=int, default=None, help="n_threads and n_threads_batch")
    args = parser.parse_args()

    import torch

    from invarlock.adapters import get_adapter

    with tempfile.TemporaryDirectory() as tmp:
        path = build_gguf(Path(tmp), args.hidden, args.layers, args.vocab, args.seq_len, args.type)
        adapter = get_adapter("gguf")
        threads = {"n_threads": args.threads, "n_threads_batch": args.threads} if args.threads else {}
        model = adapter.load_model(path, device="cpu", **threads)
        llm = model.llama

        generator = torch.Generator().manual_seed(0)
        batches = []
        for _ in range(args.windows // args.batch):
            ids = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=generator)
            batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        rows = [inputs["input_ids"].tolist() for inputs in batches]

        def bare(i: int) -> list[Any]:
            out = []
            for ids in rows[i]:
                llm.reset()
                llm.eval(ids)
                out.append(llm.scores[: len(ids)].copy())
            return out

        calls: dict[str, Callable[[int], Any]] = {
            "adapter": lambda i: adapter.logits(model, batches[i]),
            "bare": bare,
        }
        # Same logits both ways, or the comparison means nothing.
        assert torch.equal(calls["adapter"](0), torch.from_numpy(__import__("numpy").stack(bare(0))))

        times: dict[str, list[list[float]]] = {name: [[] for _ in batches] for name in calls}
        order = list(calls)
        for round_index in range(args.rounds + 1):
            for i in range(len(batches)):
                for name in order[round_index % 2 :] + order[: round_index % 2]:
                    start = time.perf_counter()
                    calls[name](i)
                    if round_index:  # round 0 warms up
                        times[name][i].append(time.perf_counter() - start)
        n_threads, n_threads_batch = llm.n_threads, llm.n_threads_batch

        # Contention from other processes moves both columns a lot on a shared machine; the time
        # the adapter spends outside llama.cpp's eval, measured inside the same calls, does not.
        eval_time = [0.0]
        evaluate = llm.eval

        def timed_eval(ids: list[int]) -> None:
            start = time.perf_counter()
            evaluate(ids)
            eval_time[0] += time.perf_counter() - start

        llm.eval = timed_eval
        start = time.perf_counter()
        for i in range(len(batches)):
            calls["adapter"](i)
        adapter_time = time.perf_counter() - start
        llm.eval = evaluate

    tokens = len(batches) * args.batch * args.seq_len
    best = {name: sum(min(t) for t in per_batch) for name, per_batch in times.items()}
    median = {name: sum(statistics.median(t) for t in per_batch) for name, per_batch in times.items()}
    print(
        f"llama {args.type} hidden={args.hidden} layers={args.layers} vocab={args.vocab}; {len(batches)} "
        f"batches of {args.batch}x{args.seq_len} tokens; {args.rounds} interleaved rounds; "
        f"n_threads={n_threads} n_threads_batch={n_threads_batch}"
    )
    print(f"  {'':<8} {'best tokens/s':>14} {'median tokens/s':>16}")
    for name in calls:
        print(f"  {name:<8} {tokens / best[name]:>14.0f} {tokens / median[name]:>16.0f}")
    print(
        f"ratio adapter/bare = {best['bare'] / best['adapter']:.3f} best, "
        f"{median['bare'] / median['adapter']:.3f} median  (target >= 0.95)"
    )
    outside = (adapter_time - eval_time[0]) / adapter_time
    print(
        f"adapter time outside llama.cpp's eval: {outside:.2%} (checks, reset, copying logits; the bare "
        "loop copies its logits too)"
    )


if __name__ == "__main__":
    main()
