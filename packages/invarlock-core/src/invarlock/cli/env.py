"""``invarlock env``: what a bug report needs to know about this machine, as one copy-paste block.

Versions come from distribution metadata and adapter status from the listing
(:mod:`invarlock.listing`), so nothing heavy is imported: torch is imported only with ``--torch``
(or when it is already imported in this process), for what only torch can tell (CUDA, MPS, its
CPU capability).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

from invarlock import __version__
from invarlock.certification.progress import CI_ENV
from invarlock.cli.style import NO_COLOR_ENV, wrap_words
from invarlock.listing import adapters_listing, plugins_listing
from invarlock.manager import DISABLE_ENV
from invarlock.network import ALLOW_NETWORK_ENV, network_allowed
from invarlock.quantizers import CACHE_DIR_ENV, accelerator_device_files
from invarlock.readiness import installed_version

ENV_SCHEMA = "invarlock.env/v1"

ENVIRONMENT_VARIABLES = (
    (ALLOW_NETWORK_ENV, "1 allows Hugging Face hub downloads (default: offline)"),
    (DISABLE_ENV, "plugins to turn off, comma-separated (entry-point or distribution names)"),
    (CACHE_DIR_ENV, "cache directory (default: the platform's user cache, ~/.cache/invarlock on Linux)"),
    (NO_COLOR_ENV, "any value turns colour off (as --no-color does; never in a pipe)"),
    (CI_ENV, "set (not 0/false) by CI services: no progress display, as in a pipe"),
)
"""(name, meaning) of every variable InvarLock reads; each name is defined in the
module that reads it. The top-level ``--help`` lists them and ``invarlock env`` shows their values."""

ALWAYS_SHOWN_BACKENDS = (
    "torch",
    "transformers",
    "safetensors",
    "tokenizers",
    "huggingface-hub",
    "accelerate",
)
"""Distributions shown even when no installed adapter names them; each installed adapter's own
backends (its ``AdapterSpec.backend``) are added after these."""

_CPU_FEATURES = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
"""The x86 /proc/cpuinfo flags that decide which CPU kernels torch and the quantization backends use."""


def environment_variables_help() -> str:
    """The ``environment variables:`` block of the top-level ``--help``."""
    width = max(len(name) for name, _ in ENVIRONMENT_VARIABLES)
    rows = [
        wrap_words(meaning, first=f"  {name:<{width}}  ", rest=" " * (width + 4))
        for name, meaning in ENVIRONMENT_VARIABLES
    ]
    return "\n".join(["environment variables:", *rows])


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "env",
        help="print this machine's versions, adapters and settings for a bug report",
        description="Print Python, platform, torch, transformers and every backend's version, every "
        "adapter's status, the network mode and the plugin distributions: paste it into a bug report. "
        "Versions come from package metadata; torch is not imported unless --torch is given.",
    )
    parser.add_argument("--json", action="store_true", help=f"print JSON ({ENV_SCHEMA})")
    parser.add_argument(
        "--torch",
        action="store_true",
        help="also import torch to report CUDA/MPS availability, GPUs and torch's CPU capability (slower)",
    )
    parser.set_defaults(handler=_env_command)


# -- the document -------------------------------------------------------------------------------


def environment_report(*, probe_torch: bool = False) -> dict[str, Any]:
    """The ``invarlock env --json`` document (the schema is docs/schemas/env.v1.json)."""
    adapters = adapters_listing()["adapters"]
    backends = list(ALWAYS_SHOWN_BACKENDS)
    for item in adapters:
        backends += [name for name in item["backend"] if name not in backends]
    return {
        "schema": ENV_SCHEMA,
        "invarlock_core": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {
            "system": platform.platform(),
            "machine": platform.machine(),
            "sys_platform": sys.platform,
            "cpu_count": os.cpu_count(),
            "cpu_features": _cpu_features(),
            "accelerator_device_files": accelerator_device_files(),
        },
        "torch": _torch_section(probe_torch or "torch" in sys.modules),
        "backends": {name: installed_version(name) for name in backends},
        "network": {"allowed": network_allowed(), "variable": ALLOW_NETWORK_ENV},
        "variables": {name: os.environ.get(name) for name, _ in ENVIRONMENT_VARIABLES},
        "plugins": [
            {key: plugin[key] for key in ("name", "distribution", "version", "status", "error")}
            for plugin in plugins_listing()["plugins"]
        ],
        "adapters": [
            {key: item[key] for key in ("name", "distribution", "version", "status", "reason", "install")}
            for item in adapters
        ],
    }


def _cpu_features() -> list[str] | None:
    """The relevant x86 flags from /proc/cpuinfo, in a fixed order; None where there is no such file."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.partition(":")[2].split())
                    return [flag for flag in _CPU_FEATURES if flag in flags]
    except OSError:
        return None
    return []


def _torch_section(probe: bool) -> dict[str, Any]:
    section: dict[str, Any] = {"version": installed_version("torch"), "probed": False}
    if not probe or section["version"] is None:
        return section
    try:
        import torch
    except Exception as exc:  # a broken torch install is exactly what a bug report must show
        return {**section, "probed": True, "import_error": f"{type(exc).__name__}: {exc}"}
    cuda = bool(torch.cuda.is_available())
    mps = getattr(torch.backends, "mps", None)
    return {
        **section,
        "probed": True,
        "import_error": None,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_available": bool(mps is not None and mps.is_available()),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


# -- rendering ----------------------------------------------------------------------------------


def render_text(report: dict[str, Any]) -> str:
    """The copy-paste block, every line within 80 columns (wrapped at spaces only)."""
    python, machine, torch = report["python"], report["platform"], report["torch"]

    def row(label: str, value: str) -> str:
        return wrap_words(value, first=f"{label:<15}", rest=" " * 15)

    lines = [
        f"invarlock-core {report['invarlock_core']}",
        row("python", f"{python['version']} ({python['implementation']}, {python['executable']})"),
        row("platform", f"{machine['system']} ({machine['machine']})"),
        row("cpu", f"{machine['cpu_count']} cores; features: {_features(machine['cpu_features'])}"),
        row("gpu devices", ", ".join(machine["accelerator_device_files"]) or "none"),
        row("torch", _torch_line(torch)),
    ]
    if torch.get("cpu_capability"):
        lines.append(row("torch cpu", f"{torch['cpu_capability']} kernels, {torch['threads']} threads"))
    network = report["network"]
    allowed = "on" if network["allowed"] else f"off (set {network['variable']}=1 to allow hub downloads)"
    lines.append(row("network", allowed))
    lines += ["", "backends"]
    lines += [f"  {name:<22} {version or 'not installed'}" for name, version in report["backends"].items()]
    lines += ["", "plugins"]
    for plugin in report["plugins"] or [{"name": "(none)", "distribution": None}]:
        version = f" {plugin['version']}" if plugin.get("version") else ""
        status = f"  {plugin['status']}" if plugin.get("status") else ""
        lines.append(
            wrap_words(f"{plugin['name']:<14} {plugin['distribution'] or '-'}{version}{status}", first="  ")
        )
        if plugin.get("error"):
            lines.append(wrap_words(f"error: {plugin['error']}", first="    ", rest="      "))
    lines += ["", "adapters"]
    for item in report["adapters"]:
        version = f" {item['version']}" if item["version"] else ""
        follow = item["install"] or item["reason"]
        lines.append(f"  {item['name']:<16} {item['status']:<12} {item['distribution']}{version}")
        if follow and item["status"] != "ready":
            lines.append(wrap_words(follow, first="    -> ", rest="       "))
    lines += ["", "variables"]
    lines += [
        wrap_words(value if value is not None else "(unset)", first=f"  {name:<26} ", rest=" " * 29)
        for name, value in report["variables"].items()
    ]
    return "\n".join(lines)


def _features(features: list[str] | None) -> str:
    if features is None:
        return "unknown (no /proc/cpuinfo)"
    return " ".join(features) or "none of " + ", ".join(_CPU_FEATURES[:3]) + "..."


def _torch_line(torch: dict[str, Any]) -> str:
    if torch["version"] is None:
        return "not installed"
    if not torch["probed"]:
        return f"{torch['version']} (not imported; `--torch` adds CUDA, MPS, CPU kernels)"
    if torch["import_error"]:
        return f"{torch['version']}, fails to import: {torch['import_error']}"
    if torch["cuda_available"]:
        accelerator = f"CUDA {torch['cuda_version']}: {', '.join(torch['gpus'])}"
    elif torch["mps_available"]:
        accelerator = "MPS available"
    else:
        built = f" (built for CUDA {torch['cuda_version']})" if torch["cuda_version"] else ""
        accelerator = f"no CUDA or MPS device{built}"
    return f"{torch['version']}, {accelerator}"


def _env_command(args: argparse.Namespace) -> int:
    report = environment_report(probe_torch=args.torch)
    print(json.dumps(report, indent=2) if args.json else render_text(report))
    return 0
