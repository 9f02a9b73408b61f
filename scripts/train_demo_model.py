"""Train the demo model committed in demo/model: a tiny Llama-style causal LM and its tokenizer.

It learns from the ``train`` split of InvarLock's embedded corpus (the Python standard library's
own documentation, ``pydoc_data.topics``); ``invarlock certify`` evaluates on the held-out
``eval`` split by default. Everything is seeded and uses deterministic algorithms, so a rerun on
the same Python, torch and transformers versions reproduces the weights; the demo itself uses
the committed files and never retrains.

    python scripts/train_demo_model.py            # writes demo/model (about 4 MB), ~5 min on a quiet CPU
    python scripts/train_demo_model.py --out /tmp/model --steps 100
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from invarlock.certification.datasets import embedded_corpus

ROOT = Path(__file__).resolve().parents[1]
END_OF_TEXT = "<|endoftext|>"
ARCHITECTURE = {
    "vocab_size": 2048,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


def train_tokenizer(documents: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, unk_token=END_OF_TEXT
    )


def stream_of(tokenizer: PreTrainedTokenizerFast, documents: list[str]) -> list[int]:
    ids: list[int] = []
    for encoded in tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"]:
        ids += [*encoded, tokenizer.eos_token_id]
    return ids


def evaluate(model: LlamaForCausalLM, stream: list[int], seq_len: int) -> float:
    model.eval()
    nll, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(stream) - seq_len, seq_len):
            ids = torch.tensor([stream[start : start + seq_len]])
            loss = model(input_ids=ids, labels=ids).loss
            nll += float(loss) * (seq_len - 1)
            count += seq_len - 1
    model.train()
    return math.exp(nll / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "demo" / "model")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # one thread: reproducible, and faster than two on a shared 2-core machine

    train_docs = embedded_corpus("train").documents
    eval_docs = embedded_corpus("eval").documents
    tokenizer = train_tokenizer(train_docs, ARCHITECTURE["vocab_size"])
    train_stream = stream_of(tokenizer, train_docs)
    eval_stream = stream_of(tokenizer, eval_docs)
    print(f"train tokens {len(train_stream)}, eval tokens {len(eval_stream)}")

    config = LlamaConfig(
        **ARCHITECTURE,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    rng = random.Random(args.seed)
    starts = range(0, len(train_stream) - args.seq_len)
    print(f"untrained eval ppl {evaluate(model, eval_stream, args.seq_len):.1f}")
    began = time.monotonic()
    for step in range(args.steps):
        picks = rng.sample(starts, args.batch_size)
        batch = torch.tensor([train_stream[s : s + args.seq_len] for s in picks])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.monotonic() - began:.0f}s", flush=True)

    train_ppl = evaluate(model, train_stream[: len(eval_stream)], args.seq_len)
    eval_ppl = evaluate(model, eval_stream, args.seq_len)
    print(f"trained: train ppl {train_ppl:.2f}, held-out eval ppl {eval_ppl:.2f}")

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    # transformers 5 names its own backend class here, which 4.57 cannot load; this name both can.
    tokenizer_config = args.out / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text())
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"
    tokenizer_config.write_text(json.dumps(settings, indent=2) + "\n")
    record = {
        "script": "scripts/train_demo_model.py",
        "corpus": "pydoc_data.topics (embedded corpus), split train; evaluated on split eval",
        "python_corpus_version": embedded_corpus("train").meta["python"],
        "torch": torch.__version__,
        "architecture": ARCHITECTURE,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "lr": args.lr,
        "seed": args.seed,
        "train_tokens": len(train_stream),
        "train_ppl": round(train_ppl, 3),
        "eval_ppl": round(eval_ppl, 3),
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
