"""Benchmark hf_gptq and hf_awq: snapshots against bare PyTorch on the same bytes, loading against
plain transformers on the same checkpoint.

    python bench/bench_gptq_awq.py [--repeats 7] [--dir DIR] [--methods gptq awq] [--threads N]
        [--device cuda]

The model has TinyLlama-1.1B's dimensions (hidden 2048, 22 layers, MLP 5632, 4 KV heads, vocab
32000), a size people ship as GPTQ and AWQ: about 0.5 GB of packed 4-bit weights plus 0.26 GB of
fp16 embeddings, in the packed layout of each method (GPTQ v1; AWQ GEMM with zero points), group
size 128. Its quantization_config is the one gptqmodel writes when it quantizes a tiny llama here
(a few seconds); the packed values are random, since quantizing 1.1 B weights on a CPU takes hours
and these operations move bytes whatever they hold. The adapter's own checkpoint check (config
against tensor shapes) runs on load, so a layout written wrongly here fails loudly. Checkpoints
are built into --dir once and reused (without --dir, into a temp dir removed at the end).

In one process, the adapter's snapshot, restore, snapshot_chunked and restore_chunked are timed
against bare PyTorch on the same bytes (snapshot_timing.py describes the baselines, the targets and
the table), and its load_model against plain transformers, interleaved the same way:

    load              adapter.load_model  vs  from_pretrained, same kernel     target <= 1.05x
    load (auto)       adapter.load_model  vs  from_pretrained, gptqmodel's own kernel choice

"Every tensor" is every parameter and buffer with its own storage (the packed qweight/qzeros/
scales/g_idx among them): what both sides copy. The adapter's side includes hook dispatch, and for
load the config and safetensors-header checks and the placement guard. "load (auto)" is
informational: gptqmodel's automatic choice on CPU is a different kernel (TorchAten*), which
repacks the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")  # before gptqmodel is imported (2-core machines)

import torch
from snapshot_timing import (
    Row,
    SnapshotOperations,
    distinct_tensors,
    interleaved,
    print_rows,
    time_snapshot_operations,
    use_fresh_memory,
)

LOAD_TARGET = 1.05  # as for invarlock-hf's load_model against from_pretrained
ADAPTERS = {"gptq": "hf_gptq", "awq": "hf_awq"}
TINYLLAMA_1B = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
}
GROUP_SIZE = 128
LINEARS = {  # (in_features, out_features) of the quantized Linears of one decoder block
    "self_attn.q_proj": ("hidden_size", "hidden_size"),
    "self_attn.k_proj": ("hidden_size", "kv_width"),
    "self_attn.v_proj": ("hidden_size", "kv_width"),
    "self_attn.o_proj": ("hidden_size", "hidden_size"),
    "mlp.gate_proj": ("hidden_size", "intermediate_size"),
    "mlp.up_proj": ("hidden_size", "intermediate_size"),
    "mlp.down_proj": ("intermediate_size", "hidden_size"),
}


def packed_linear(method: str, inputs: int, outputs: int) -> dict[str, torch.Tensor]:
    """Random packed 4-bit tensors of one Linear, in ``method``'s checkpoint layout (8 values per int32)."""
    groups = inputs // GROUP_SIZE

    def packed(*shape: int) -> torch.Tensor:
        return torch.randint(-(2**31), 2**31 - 1, shape, dtype=torch.int32)

    scales = (torch.rand(groups, outputs) * 0.01 + 0.001).half()
    if method == "gptq":  # qweight [in/8, out], g_idx: the group of each input
        return {
            "qweight": packed(inputs // 8, outputs),
            "qzeros": packed(groups, outputs // 8),
            "scales": scales,
            "g_idx": (torch.arange(inputs, dtype=torch.int32) // GROUP_SIZE),
        }
    return {"qweight": packed(inputs, outputs // 8), "qzeros": packed(groups, outputs // 8), "scales": scales}


def benchmark_checkpoint(work: Path, method: str) -> Path:
    """The TinyLlama-1.1B-sized ``method`` checkpoint in ``work`` (built once, then reused)."""
    from safetensors.torch import save_file

    from invarlock_packed.testing import quantize_checkpoint, save_base_checkpoint

    target = work / f"tinyllama-1.1b-{method}"
    if (target / "config.json").exists():
        return target
    tiny = work / f"tiny-llama-{method}"
    if not (tiny / "config.json").exists():
        base = save_base_checkpoint("llama", work / "tiny-llama")
        quantize_checkpoint(base, tiny, method, group_size=GROUP_SIZE)
    config = json.loads((tiny / "config.json").read_text(encoding="utf-8"))
    config.update(TINYLLAMA_1B)
    config.pop("head_dim", None)  # derived from the sizes above
    heads, kv_heads = TINYLLAMA_1B["num_attention_heads"], TINYLLAMA_1B["num_key_value_heads"]
    sizes = {**TINYLLAMA_1B, "kv_width": TINYLLAMA_1B["hidden_size"] // heads * kv_heads}

    torch.manual_seed(0)
    hidden, vocab = sizes["hidden_size"], sizes["vocab_size"]
    tensors = {
        "model.embed_tokens.weight": torch.randn(vocab, hidden).half(),
        "model.norm.weight": torch.ones(hidden).half(),
        "lm_head.weight": torch.randn(vocab, hidden).half(),
    }
    for layer in range(sizes["num_hidden_layers"]):
        prefix = f"model.layers.{layer}"
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors[f"{prefix}.{norm}.weight"] = torch.ones(hidden).half()
        for linear, (inputs, outputs) in LINEARS.items():
            for name, tensor in packed_linear(method, sizes[inputs], sizes[outputs]).items():
                tensors[f"{prefix}.{linear}.{name}"] = tensor
    staging = work / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
    (staging / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    staging.rename(target)
    return target


def bench_method(method: str, path: Path, work: Path, repeats: int, device: str) -> list[Row]:
    from transformers import AutoModelForCausalLM, AwqConfig, GPTQConfig

    from invarlock.adapters import get_adapter

    adapter = get_adapter(ADAPTERS[method])
    model = adapter.load_model(path, device=device)
    tensors = distinct_tensors([*model.named_parameters(), *model.named_buffers()])
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    print(f"\n{ADAPTERS[method]}: {size / 1e6:.0f} MB in {len(tensors)} distinct tensors ({path.name})")
    hooks = SnapshotOperations.of_adapter(adapter, model)
    chunks = work / f"chunks-{method}"
    chunks.mkdir(exist_ok=True)
    try:
        rows = time_snapshot_operations(tensors, hooks, chunks, repeats)
    finally:
        shutil.rmtree(chunks, ignore_errors=True)

    # Loading: the adapter's kernel is the torch one; a plain call can ask for the same kernel, or
    # leave the choice to gptqmodel. Each side loads the same files from the page cache.
    kernel = {"gptq": GPTQConfig(bits=4, backend="gptq_torch"), "awq": AwqConfig(bits=4, backend="torch_awq")}

    def plain(**kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoModelForCausalLM.from_pretrained(
                path, device_map=device, dtype=torch.float16, **kwargs
            )

    def through_adapter() -> Any:
        return adapter.load_model(path, device=device, dtype="float16")

    def same_kernel() -> Any:
        return plain(quantization_config=kernel[method])

    rows.append(interleaved("load", same_kernel, through_adapter, repeats, target=LOAD_TARGET))
    rows.append(interleaved("load (auto)", plain, through_adapter, repeats))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (torch's default)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where checkpoints go, kept for the next run (default: a temp dir, removed at the end)",
    )
    parser.add_argument("--methods", nargs="+", choices=sorted(ADAPTERS), default=["gptq", "awq"])
    parser.add_argument("--device", default="cpu", help="where the models are loaded (cpu, cuda)")
    args = parser.parse_args()
    use_fresh_memory()

    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-gptq-awq-"))
    work.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs; files in {work}")
    try:
        results = {
            method: bench_method(method, benchmark_checkpoint(work, method), work, args.repeats, args.device)
            for method in args.methods
        }
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    all_ok = True
    for method, rows in results.items():
        all_ok &= print_rows(ADAPTERS[method], rows)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
