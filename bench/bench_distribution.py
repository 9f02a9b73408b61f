"""Benchmark the distribution metrics (KL, top-1 agreement, Δp) on the demo.

    python bench/bench_distribution.py [--repeats 3] [--threads N] [--skip-certify] [--skip-approximation]

Three measurements, in one process:

1. **Approximation error by K.** The demo model (demo/model) and its two demo subjects (8-bit and
   2-bit round-to-nearest, groups of 32, made in memory as demo/make_subjects.py makes them) are
   scored on the demo's 64 windows; the exact full-vocabulary KL(baseline‖subject) per token is
   computed from both models' full logits and compared with the top-K estimate the certificate
   uses, for several K. Printed: the estimate's mean KL / the exact mean KL, the largest per-token
   shortfall, and the stored baseline bytes / the full float32 logits' bytes.
2. **Wall time.** ``certify`` of the 8-bit subject against demo/model with the default top-K and
   with ``top_k`` 0 (no distribution metrics), interleaved (off, on, off, on, ...) so other load
   hits both alike; printed: median seconds and the ratio on / off (target <= 1.15).
3. **Stored size** at the default K, from the certificate run: bytes kept per scored token against
   the full float32 logits (target <= 0.02).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from invarlock.adapters import get_adapter
from invarlock.certification.certify import CertifyOptions, certify
from invarlock.certification.datasets import embedded_corpus
from invarlock.certification.edits.quant_rtn import apply_quant_rtn
from invarlock.certification.evaluate import WindowSettings
from invarlock.certification.evaluation.distribution import (
    DEFAULT_TOP_K,
    BaselineRecorder,
    SubjectComparer,
)
from invarlock.certification.evaluation.scoring import Framing, score_windows
from invarlock.certification.evaluation.windows import Window, make_windows, token_stream

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "demo" / "model"
SUBJECT_BITS = {"rtn8": 8, "rtn2": 2}
GROUP_SIZE = 32
K_VALUES = (1, 4, 8, 16, 32, 64)
TIME_TARGET = 1.15
SIZE_TARGET = 0.02


def demo_windows(tokenizer: Any) -> list[Window]:
    stream = token_stream(tokenizer, embedded_corpus("eval"))
    return make_windows(stream, length=128, stride=None, count=64, seed=0).windows


def exact_kl(base_logits: Sequence[torch.Tensor], subject_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Full-vocabulary KL(baseline‖subject) per scored token (next-token positions), float64."""
    values = []
    for b, s in zip(base_logits, subject_logits, strict=True):
        p_log = torch.log_softmax(b[:, :-1].double(), dim=-1)
        q_log = torch.log_softmax(s[:, :-1].double(), dim=-1)
        values.append((p_log.exp() * (p_log - q_log)).sum(-1).reshape(-1))
    return torch.cat(values)


def full_logits(
    adapter: Any, model: Any, windows: Sequence[Window], batch_size: int = 8
) -> list[torch.Tensor]:
    out = []
    for start in range(0, len(windows), batch_size):
        ids = torch.tensor([w.tokens for w in windows[start : start + batch_size]])
        out.append(adapter.logits(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}))
    return out


def approximation_table() -> None:
    adapter = get_adapter("hf_causal")
    tokenizer = adapter.load_tokenizer(DEMO_MODEL)
    windows = demo_windows(tokenizer)
    framing = Framing("causal")
    model = adapter.load_model(DEMO_MODEL, device="cpu")
    vocab = model.config.vocab_size
    base_logits = full_logits(adapter, model, windows)
    recorders = {k: BaselineRecorder(k) for k in K_VALUES}
    for recorder in recorders.values():
        score_windows(adapter, model, windows, framing, observer=recorder)
    baselines = {k: r.result() for k, r in recorders.items()}
    snapshot = adapter.snapshot(model)
    print(
        f"approximation: demo model, {len(windows)} windows, {baselines[1].tokens} scored tokens, "
        f"vocab {vocab}"
    )
    print(f"{'subject':<8}{'K':>4}{'est/exact':>12}{'max shortfall':>16}{'stored/full logits':>20}")
    for name, bits in SUBJECT_BITS.items():
        apply_quant_rtn(model, bitwidth=bits, group_size=GROUP_SIZE)
        exact = exact_kl(base_logits, full_logits(adapter, model, windows))
        for k, baseline in baselines.items():
            comparer = SubjectComparer(baseline)
            score_windows(adapter, model, windows, framing, observer=comparer)
            estimate = torch.from_numpy(comparer.result().kl)
            shortfall = (exact - estimate).max().item()
            stored = baseline.nbytes / (baseline.tokens * vocab * 4)
            print(
                f"{name:<8}{k:>4}{estimate.mean().item() / exact.mean().item():>12.4f}"
                f"{shortfall:>16.2e}{stored:>20.4f}   exact mean KL {exact.mean().item():.5f}"
            )
        adapter.restore(model, snapshot)


def make_subject(directory: Path) -> Path:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(DEMO_MODEL, device="cpu")
    apply_quant_rtn(model, bitwidth=8, group_size=GROUP_SIZE)
    target = directory / "rtn8"
    model.save_pretrained(target)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        (target / file).write_bytes((DEMO_MODEL / file).read_bytes())
    return target


def time_certify(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subject = make_subject(Path(tmp))
        timings: dict[int, list[float]] = {0: [], DEFAULT_TOP_K: []}
        certificate: dict[str, Any] = {}
        for _ in range(repeats):
            for top_k in timings:
                options = CertifyOptions.for_both(
                    device="cpu", windows=WindowSettings(top_k=top_k), cache=False
                )  # every run scores the baseline (and records its top-K): no cache hit
                started = time.perf_counter()
                result = certify(str(DEMO_MODEL), str(subject), options)
                timings[top_k].append(time.perf_counter() - started)
                if top_k:
                    certificate = result
        off, on = statistics.median(timings[0]), statistics.median(timings[DEFAULT_TOP_K])
        ratio = on / off
        verdict = "ok" if ratio <= TIME_TARGET else "ABOVE TARGET"
        print(
            f"certify wall time: top_k 0 {off:.2f} s, top_k {DEFAULT_TOP_K} {on:.2f} s (median of {repeats})"
        )
        print(f"  ratio with / without distribution metrics: {ratio:.3f} (target <= {TIME_TARGET}) {verdict}")
        block = certificate["distribution"]
        print(
            f"  8-bit subject: KL {block['kl']['mean']:.5f} nats/token, top-1 agreement "
            f"{block['top1_agreement']['rate']:.4f}, Δp RMS {block['delta_p']['rms']:.5f}"
        )


def stored_size() -> None:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(DEMO_MODEL, device="cpu")
    windows = demo_windows(adapter.load_tokenizer(DEMO_MODEL))
    recorder = BaselineRecorder(DEFAULT_TOP_K)
    score_windows(adapter, model, windows, Framing("causal"), observer=recorder)
    baseline = recorder.result()
    full = baseline.tokens * model.config.vocab_size * 4
    ratio = baseline.nbytes / full
    verdict = "ok" if ratio <= SIZE_TARGET else "ABOVE TARGET"
    print(
        f"stored baseline data at top_k {DEFAULT_TOP_K}: {baseline.nbytes} bytes "
        f"for {baseline.tokens} tokens "
        f"({baseline.nbytes / baseline.tokens:.0f} B/token), full float32 logits {full} bytes"
    )
    print(f"  ratio stored / full logits: {ratio:.4f} (target <= {SIZE_TARGET}) {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-certify", action="store_true", help="only the approximation table and size")
    parser.add_argument(
        "--skip-approximation", action="store_true", help="no approximation table (the slowest part)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_approximation:
        approximation_table()
    stored_size()
    if not args.skip_certify:
        time_certify(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
