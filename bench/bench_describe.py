"""Benchmark invarlock-hf's describe on full-size published architectures on the meta device.

    python bench/bench_describe.py [--repeats 21]

Each architecture is built from its published dimensions with ``torch.device("meta")`` (no memory,
no weights), then described. Printed per model: the time to build the meta model from its config,
the median time of ``describe_model`` (after one warm-up call), the first call's time, and the
ratio of the median to the 50 ms target; also the time of the whole path, config to description.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from invarlock_hf.testing import PUBLISHED_CONFIGS, build_published

TARGET_MS = 50.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()

    import transformers

    from invarlock_hf.describe import describe_model

    print(f"torch {torch.__version__}, transformers {transformers.__version__}; {args.repeats} repeats")
    worst = 0.0
    for name in PUBLISHED_CONFIGS:
        start = time.perf_counter()
        model = build_published(name)
        build_ms = (time.perf_counter() - start) * 1000

        start = time.perf_counter()
        description = describe_model(model)
        first_ms = (time.perf_counter() - start) * 1000
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            describe_model(model)
            times.append((time.perf_counter() - start) * 1000)
        median_ms = statistics.median(times)
        ratio = median_ms / TARGET_MS
        worst = max(worst, ratio)
        print(
            f"  {name:33s} {description['n_params'] / 1e9:6.2f}B params, {description['n_layer']} layers |"
            f" meta build {build_ms:7.1f} ms | describe median {median_ms:6.2f} ms (first {first_ms:6.2f} ms)"
            f" -> {ratio:.3f}x of the {TARGET_MS:.0f} ms target | config to description"
            f" {build_ms + first_ms:7.1f} ms"
        )
    print(f"worst describe ratio {worst:.3f}x of the target ({'ok' if worst < 1 else 'OVER TARGET'})")


if __name__ == "__main__":
    main()
