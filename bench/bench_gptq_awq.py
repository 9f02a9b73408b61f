"""Benchmark hf_gptq and hf_awq: snapshots against bare PyTorch on the same bytes, loading against
plain transformers on the same checkpoint.

    python bench/bench_gptq_awq.py [--repeats 9] [--dir DIR] [--methods gptq awq] [--threads 1]

A llama-shaped model (hidden 1024, 8 layers, MLP 2816, random init; ~100 M weights in its Linears)
is quantized on the CPU by gptqmodel to 4-bit, group size 128 (GPTQ v1, and AWQ GEMM with zero
points), once per method, into --dir (reused when there: on 2 busy CPU cores GPTQ takes ~3
minutes and AWQ ~25, its scale and clip searches being the slow part). Then, in one process, each
adapter operation is timed against its bare baseline, interleaved (baseline, adapter, baseline,
...) so that load from other processes hits both alike; the medians and their ratio are printed:

    snapshot          adapter.snapshot          vs  clone() of every tensor          target <= 1.3x
    restore           adapter.restore           vs  copy_() into every tensor        target <= 1.5x
    chunked snapshot  adapter.snapshot_chunked  vs  safetensors save_file            target <= 1.3x
    chunked restore   adapter.restore_chunked   vs  safetensors load_file + copy_()  target <= 1.3x
    load              adapter.load_model        vs  from_pretrained, same kernel     target <= 1.2x
    load (auto)       adapter.load_model        vs  from_pretrained, gptqmodel's own kernel choice

"Every tensor" is every parameter and buffer with its own storage (the packed qweight/qzeros/
scales/g_idx among them): what both sides copy. The adapter's side includes hook dispatch, and for load the
config and safetensors-header checks and the placement guard. "load (auto)" is informational:
gptqmodel's automatic choice on CPU is a different kernel (TorchAten*), which repacks the weights.

torch runs with one intra-op thread by default (--threads): on a shared 2-core machine a parallel
copy_ waits for whichever core another process holds, which swamps 20 ms operations with 0.4 s stalls.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")  # before gptqmodel is imported (2-core machines)

import torch

TARGETS = {"snapshot": 1.3, "restore": 1.5, "chunked snapshot": 1.3, "chunked restore": 1.3, "load": 1.2}
ADAPTERS = {"gptq": "hf_gptq", "awq": "hf_awq"}
SIZES = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "vocab_size": 1024,
}


def quantized_checkpoint(work: Path, method: str) -> Path:
    """Quantize the benchmark model with ``method`` into ``work`` (reused when already there)."""
    from invarlock_gptq.testing import quantize_checkpoint
    from invarlock_hf.testing import save_tiny_checkpoint, save_tiny_tokenizer

    base, target = work / "llama-1024", work / f"llama-1024-{method}"
    if not (base / "config.json").exists():
        save_tiny_checkpoint("llama", base, **SIZES)
        save_tiny_tokenizer(base)
    if not (target / "config.json").exists():
        started = time.perf_counter()
        quantize_checkpoint(base, target, method, group_size=128)
        print(f"quantized {method} in {time.perf_counter() - started:.0f} s")
    return target


def distinct_tensors(model: Any) -> dict[str, torch.Tensor]:
    """Every parameter and buffer with its own storage, by its first name.

    Tied tensors count once, and so do gptqmodel's two shift tables per layer (``wf_unsqueeze_*``,
    8 ints), which are views of one storage: safetensors refuses to save shared storage twice.
    """
    found: dict[int, tuple[str, torch.Tensor]] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        found.setdefault(tensor.untyped_storage().data_ptr(), (name, tensor.detach()))
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


def bench_method(
    method: str, path: Path, work: Path, repeats: int
) -> list[tuple[str, list[float], list[float]]]:
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AwqConfig, GPTQConfig

    from invarlock.adapters import get_adapter

    adapter = get_adapter(ADAPTERS[method])
    model = adapter.load_model(path, device="cpu")
    tensors = distinct_tensors(model)
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    print(f"\n{ADAPTERS[method]}: {size / 1e6:.0f} MB in {len(tensors)} distinct tensors ({path.name})")
    rows: list[tuple[str, list[float], list[float]]] = []

    snapshot = adapter.snapshot(model)
    copies = {name: t.clone() for name, t in tensors.items()}
    rows.append(
        (
            "snapshot",
            *interleaved(
                lambda: [t.clone() for t in tensors.values()],
                lambda: adapter.snapshot(model),
                repeats,
                lambda: None,
            ),
        )
    )

    def bare_copy() -> None:
        for name, t in tensors.items():
            t.copy_(copies[name])

    rows.append(
        ("restore", *interleaved(bare_copy, lambda: adapter.restore(model, snapshot), repeats, lambda: None))
    )

    chunks = work / f"chunks-{method}"
    chunks.mkdir(exist_ok=True)
    baseline_file = chunks / "baseline.safetensors"
    written: list[Path] = []

    def clean() -> None:
        baseline_file.unlink(missing_ok=True)
        while written:
            shutil.rmtree(written.pop(), ignore_errors=True)

    def bare_save() -> None:
        save_file(tensors, str(baseline_file))

    def adapter_save() -> None:
        written.append(adapter.snapshot_chunked(model, chunks))

    rows.append(("chunked snapshot", *interleaved(bare_save, adapter_save, repeats, clean)))

    bare_save()
    chunked = adapter.snapshot_chunked(model, chunks)

    def bare_load() -> None:
        for name, t in load_file(str(baseline_file)).items():
            tensors[name].copy_(t)

    rows.append(
        (
            "chunked restore",
            *interleaved(bare_load, lambda: adapter.restore_chunked(model, chunked), repeats, lambda: None),
        )
    )
    shutil.rmtree(chunks, ignore_errors=True)

    # Loading: the adapter's kernel is the torch one; a plain call can ask for the same kernel, or
    # leave the choice to gptqmodel. Each side loads the same files from the page cache.
    kernel = {"gptq": GPTQConfig(bits=4, backend="gptq_torch"), "awq": AwqConfig(bits=4, backend="torch_awq")}
    dtype = torch.float16

    def plain(**kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoModelForCausalLM.from_pretrained(path, device_map="cpu", dtype=dtype, **kwargs)

    def through_adapter() -> Any:
        return adapter.load_model(path, device="cpu", dtype="float16")

    rows.append(
        (
            "load",
            *interleaved(
                lambda: plain(quantization_config=kernel[method]), through_adapter, repeats, lambda: None
            ),
        )
    )
    rows.append(("load (auto)", *interleaved(plain, through_adapter, repeats, lambda: None)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--dir", type=Path, default=None, help="where checkpoints and snapshots go (kept)")
    parser.add_argument("--methods", nargs="+", choices=sorted(ADAPTERS), default=["gptq", "awq"])
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    torch.set_num_threads(args.threads)
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-gptq-awq-"))
    work.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs; files in {work}")
    results = {
        method: bench_method(method, quantized_checkpoint(work, method), work, args.repeats)
        for method in args.methods
    }

    failed = False
    for method, rows in results.items():
        header = f"{'bare (median)':>14}{'adapter (median)':>18}{'ratio':>8}{'target':>8}  ok"
        print(f"\n{ADAPTERS[method]:<18}{header}")
        for name, base, adapter in rows:
            ratio = statistics.median(adapter) / statistics.median(base)
            target = TARGETS.get(name)
            ok = target is None or ratio <= target
            failed |= not ok
            target_text = f"{target:>7.1f}x" if target else f"{'-':>8}"
            base_s, adapter_s = statistics.median(base), statistics.median(adapter)
            verdict = "yes" if ok else "NO " if target else "-"
            print(f"{name:<18}{base_s:>12.3f} s{adapter_s:>16.3f} s{ratio:>7.2f}x{target_text}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
