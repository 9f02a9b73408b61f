"""Wall time of a certify with accelerate disk offload against the same certify in memory.

    python bench/bench_certify_offload.py [--repeats 3] [--windows 32]

The committed demo model (demo/model) is the baseline and its 8-bit round-to-nearest edit the
subject. The same certify runs two ways in one process, interleaved (memory, offloaded, memory,
...) so load from other processes hits both alike:

    memory     both sides loaded whole on the CPU
    offloaded  --device-map auto with max_memory {"cpu": --cpu-memory}: the embeddings stay on the
               CPU, the decoder layers are read from disk on every forward pass

Printed: median seconds of each, the ratio offloaded / memory, and the largest relative difference
of the certificate's statistics between the two (the scores must agree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
STATS = ("baseline_ppl", "subject_ppl", "ratio", "mean_delta_log_loss")


def make_subject(work: Path) -> Path:
    import shutil

    from invarlock.adapters import get_adapter
    from invarlock.certification.edits.quant_rtn import apply_quant_rtn

    baseline = ROOT / "demo" / "model"
    model = get_adapter("hf_causal").load_model(baseline, device="cpu")
    apply_quant_rtn(model, bitwidth=8, group_size=16)
    target = work / "rtn8"
    model.save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(baseline / name, target / name)
    return target


def certify_once(
    subject: Path, work: Path, windows: int, offload: dict[str, Any] | None
) -> tuple[float, Any]:
    from invarlock.certification.certify import CertifyOptions, certify
    from invarlock.certification.evaluate import WindowSettings

    options = CertifyOptions.for_both(
        "auto",
        "cpu",
        offload or {},
        windows=WindowSettings(windows=windows, seq_len=128),
        cache=False,  # every run scores the baseline: a cache hit would time only the subject
    )
    started = time.perf_counter()
    certificate = certify(str(ROOT / "demo" / "model"), str(subject), options)
    return time.perf_counter() - started, certificate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--cpu-memory", default="3MB", help="max_memory for the CPU (default: 3MB)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        subject = make_subject(work)
        offload = {
            "device_map": "auto",
            "max_memory": {"cpu": args.cpu_memory},
            "offload_folder": str(work / "offload"),
        }
        times: dict[str, list[float]] = {"memory": [], "offloaded": []}
        certificates: dict[str, Any] = {}
        for _ in range(args.repeats):
            for name, extra in (("memory", None), ("offloaded", offload)):
                seconds, certificates[name] = certify_once(subject, work, args.windows, extra)
                times[name].append(seconds)
    placement = certificates["offloaded"]["baseline"]["placement"]
    if not placement or not {"cpu", "disk"} <= set(placement):
        print(
            f"the model was not split between CPU and disk ({placement}); change --cpu-memory",
            file=sys.stderr,
        )
        return 1
    memory, offloaded = (statistics.median(times[name]) for name in ("memory", "offloaded"))
    differences = {
        key: abs(certificates["offloaded"]["stats"][key] - certificates["memory"]["stats"][key])
        / max(abs(certificates["memory"]["stats"][key]), 1e-12)
        for key in STATS
    }
    print(f"placement (offloaded baseline): {json.dumps(placement)}")
    print(f"memory     {memory:8.2f} s (median of {args.repeats})")
    print(f"offloaded  {offloaded:8.2f} s")
    print(f"ratio offloaded / memory: {offloaded / memory:.2f}")
    print(f"largest relative difference of {', '.join(STATS)}: {max(differences.values()):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
