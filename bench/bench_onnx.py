"""Evaluation throughput of an ONNX model through hf_causal_onnx vs. calling it directly.

Builds a small random GPT-2 in a temp dir, exports it with Optimum (with past key/values, as
`optimum-cli export onnx --task text-generation-with-past` does), loads it once through the
adapter, and scores the same windows three ways in the same process, interleaved round by round:

- adapter:     ``adapter.logits(model, inputs)`` (the invarlock_logits hook certify uses);
- ORTModel:    ``model(input_ids=..., attention_mask=..., use_cache=False).logits``;
- onnxruntime: ``model.session.run(["logits"], feed)`` with numpy inputs (empty past key/values).

Prints tokens/s for each and the ratios adapter/ORTModel and adapter/onnxruntime (target >= 0.95):
``best`` sums, per batch, the fastest of the rounds (the cost without interference from other
processes); ``median`` is shown beside it.
Run in the ONNX environment (transformers 4.57): ``python bench/bench_onnx.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_export(directory: Path, hidden: int, layers: int, vocab: int, positions: int) -> Path:
    import torch
    from optimum.exporters.onnx import main_export
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=hidden, n_layer=layers, n_head=max(1, hidden // 64), vocab_size=vocab, n_positions=positions
    )
    GPT2LMHeadModel(config).save_pretrained(directory / "pytorch")
    main_export(
        str(directory / "pytorch"),
        output=directory / "onnx",
        task="text-generation-with-past",
        do_validation=False,
        local_files_only=True,
    )
    return directory / "onnx"


def session_feed(model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """What Optimum feeds the session for a full-sequence pass, built by hand in numpy."""
    import numpy as np

    input_ids = inputs["input_ids"].numpy()
    batch, seq = input_ids.shape
    feed = {
        "input_ids": input_ids,
        "attention_mask": inputs["attention_mask"].numpy(),
        "position_ids": np.broadcast_to(np.arange(seq, dtype=np.int64), (batch, seq)).copy(),
    }
    empty = np.zeros((batch, model.num_key_value_heads, 0, model.embed_size_per_head), dtype=np.float32)
    feed.update({name: empty for name in model.key_value_input_names})
    return {name: value for name, value in feed.items() if name in model.input_names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    import torch

    from invarlock.adapters import get_adapter

    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = build_export(Path(tmp), args.hidden, args.layers, args.vocab, args.seq_len)
        adapter = get_adapter("hf_causal_onnx")
        model = adapter.load_model(onnx_dir, device="cpu")

        generator = torch.Generator().manual_seed(0)
        batches = []
        for _ in range(args.windows // args.batch):
            ids = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=generator)
            batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        feeds = [session_feed(model, inputs) for inputs in batches]

        calls: dict[str, Callable[[int], Any]] = {
            "adapter": lambda i: adapter.logits(model, batches[i]),
            "ORTModel": lambda i: (
                model(
                    input_ids=batches[i]["input_ids"],
                    attention_mask=batches[i]["attention_mask"],
                    use_cache=False,
                ).logits
            ),
            "onnxruntime": lambda i: model.session.run(["logits"], feeds[i]),
        }
        # Same logits every way, or the comparison means nothing.
        assert torch.equal(calls["adapter"](0), torch.from_numpy(calls["onnxruntime"](0)[0]))
        assert torch.equal(calls["adapter"](0), calls["ORTModel"](0))

        # Interleaved batch by batch, the order rotating, so load from other processes hits all
        # three alike; per batch, the fastest of the rounds is the cost without interference.
        times: dict[str, list[list[float]]] = {name: [[] for _ in batches] for name in calls}
        order = list(calls)
        for round_index in range(args.rounds + 1):
            for i in range(len(batches)):
                for name in order[round_index % 3 :] + order[: round_index % 3]:
                    start = time.perf_counter()
                    calls[name](i)
                    if round_index:  # round 0 warms up
                        times[name][i].append(time.perf_counter() - start)

    tokens = len(batches) * args.batch * args.seq_len
    best = {name: sum(min(t) for t in per_batch) for name, per_batch in times.items()}
    median = {name: sum(statistics.median(t) for t in per_batch) for name, per_batch in times.items()}
    print(
        f"gpt2 hidden={args.hidden} layers={args.layers} vocab={args.vocab}; {len(batches)} batches of "
        f"{args.batch}x{args.seq_len} tokens; {args.rounds} interleaved rounds"
    )
    print(f"  {'':<12} {'best tokens/s':>14} {'median tokens/s':>16}")
    for name in calls:
        print(f"  {name:<12} {tokens / best[name]:>14.0f} {tokens / median[name]:>16.0f}")
    for baseline in ("ORTModel", "onnxruntime"):
        print(
            f"ratio adapter/{baseline:<11} = {best[baseline] / best['adapter']:.3f} best, "
            f"{median[baseline] / median['adapter']:.3f} median  (target >= 0.95)"
        )


if __name__ == "__main__":
    main()
