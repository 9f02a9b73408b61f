"""Benchmark the baseline cache: a certify that finds the baseline cached against one that does not.

    python bench/bench_cache.py [--repeats 5] [--windows 64] [--seq-len 128] [--threads N]

The demo's question (demo/model against its 8-bit round-to-nearest edit, made here as
demo/make_subjects.py makes it) is certified in one process, interleaved:

    cold   certify() with an empty cache directory: hash the baseline's files, miss, load, describe,
           score and prove the baseline, store it; then the subject
    warm   certify() again with that directory: hash the baseline's files, hit (no load, no forward
           pass); then the subject

A first certify, not timed, pays the one-off imports. Printed: median seconds of each and the
ratio warm / cold (target <= 0.55). Each warm certificate must conclude exactly what its cold one
did (verdict, reasons, every statistic, invariants, windows, certificate id); the script checks it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from invarlock.adapters import get_adapter
from invarlock.certification.cache import CACHE_ENV
from invarlock.certification.certify import CertifyOptions, certify
from invarlock.certification.edits.quant_rtn import apply_quant_rtn
from invarlock.certification.evaluate import WindowSettings

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "demo" / "model"
TARGET = 0.55
CONCLUSION = ("verdict", "reasons", "stats", "gate", "invariants", "dataset", "metric", "certificate_id")


def make_subject(directory: Path) -> Path:
    """The demo's 8-bit round-to-nearest subject (as demo/make_subjects.py writes it)."""
    import shutil

    model = get_adapter("hf_causal").load_model(DEMO_MODEL, device="cpu")
    apply_quant_rtn(model, bitwidth=8, group_size=32)
    model.save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(DEMO_MODEL / name, directory / name)
    return directory


def timed_certify(subject: Path, options: CertifyOptions, cache_dir: Path) -> tuple[float, dict[str, Any]]:
    os.environ[CACHE_ENV] = str(cache_dir)
    began = time.perf_counter()
    certificate = certify(str(DEMO_MODEL), str(subject), options)
    return time.perf_counter() - began, certificate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    options = CertifyOptions.for_both(
        device="cpu", windows=WindowSettings(seq_len=args.seq_len, windows=args.windows)
    )
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as scratch:
        root = Path(scratch)
        subject = make_subject(root / "rtn8")
        timed_certify(subject, options, root / "warm-up")
        cold_times, warm_times = [], []
        for repeat in range(args.repeats):
            cache_dir = root / f"cache-{repeat}"
            cold_s, cold = timed_certify(subject, options, cache_dir)
            warm_s, warm = timed_certify(subject, options, cache_dir)
            if cold["baseline_cache"]["hit"] or not warm["baseline_cache"]["hit"]:
                sys.exit(
                    f"expected a miss then a hit, got {cold['baseline_cache']} then {warm['baseline_cache']}"
                )
            for key in CONCLUSION:
                if warm[key] != cold[key]:
                    sys.exit(f"the warm certificate's {key} differs from the cold one's")
            cold_times.append(cold_s)
            warm_times.append(warm_s)
    cold_s, warm_s = statistics.median(cold_times), statistics.median(warm_times)
    ratio = warm_s / cold_s
    print(
        f"demo certify ({args.windows} windows x {args.seq_len} tokens, {args.repeats} interleaved repeats, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )
    print(
        f"cold (baseline scored) {cold_s:7.3f}s  warm (baseline cached) {warm_s:7.3f}s  "
        f"ratio warm / cold {ratio:.3f}  [{'ok' if ratio <= TARGET else 'ABOVE TARGET'} <= {TARGET}]"
    )


if __name__ == "__main__":
    main()
