"""``invarlock certify --baseline B --subject S``: exit 0 pass, 1 gate failed, 2 usage or load error."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from invarlock.certification.certificate import to_json
from invarlock.certification.datasets import EMBEDDED
from invarlock.certification.evaluation.gate import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_MAX_RATIO,
    MIN_TOKENS,
    MIN_WINDOWS,
)
from invarlock.certification.evaluation.scoring import DEFAULT_BATCH_SIZE
from invarlock.certification.evaluation.windows import DEFAULT_SEED, DEFAULT_SEQ_LEN, DEFAULT_WINDOWS
from invarlock.cli.parsing import organise_help
from invarlock.cli.style import with_coloured_verdict, wrap_words

DEFAULT_OUT = "invarlock-certificate"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def quiet_backend_progress() -> None:
    """Hugging Face libraries draw their own progress bars while loading; ours say what is happening."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    parser.add_argument(
        "--dtype", help="load dtype: float32, float16, bfloat16 or auto (default: the checkpoint's)"
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the checkpoint's own Python code (off by default)",
    )


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.dtype:
        options["dtype"] = args.dtype
    if args.trust_remote_code:
        options["trust_remote_code"] = True
    return options


def subject_load_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.subject_base:
        options["base"] = args.subject_base
    if args.subject_merge:
        options["merge"] = True
    return options


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "certify",
        help="compare an edited model (subject) with its baseline and write a certificate",
        description="Score baseline and subject on identical windows, compare them with paired statistics, "
        "check invariants and write certificate.json/.md/.html. Exit 0: pass; 1: gate failed; 2: error.",
    )
    parser.add_argument("--baseline", required=True, help="baseline checkpoint (directory or hub id)")
    parser.add_argument("--subject", required=True, help="edited checkpoint to certify")
    parser.add_argument(
        "--adapter",
        default="auto",
        help="adapter for both sides, or auto (default): each side resolved from its own checkpoint",
    )
    parser.add_argument("--subject-adapter", help="adapter for the subject only (overrides --adapter for it)")
    parser.add_argument(
        "--subject-base",
        help="base model of a PEFT adapter subject (overrides its base_model_name_or_path)",
    )
    parser.add_argument(
        "--subject-merge",
        action="store_true",
        help="merge a PEFT adapter subject into its base before scoring (certify merged against unmerged)",
    )
    parser.add_argument(
        "--dataset",
        default=EMBEDDED,
        help=f"{EMBEDDED} (embedded offline corpus, default), a .txt/.jsonl file, or hf:NAME[:CONFIG]",
    )
    parser.add_argument("--split", help="dataset split (pydoc: eval; hf: validation)")
    parser.add_argument(
        "--text-field", default="text", help="JSONL / dataset field holding the text (default: text)"
    )
    parser.add_argument(
        "--seq-len",
        type=positive_int,
        default=DEFAULT_SEQ_LEN,
        help=f"tokens per window (default: {DEFAULT_SEQ_LEN})",
    )
    parser.add_argument(
        "--stride", type=positive_int, help="tokens between window starts (default: --seq-len)"
    )
    parser.add_argument(
        "--windows",
        type=positive_int,
        default=DEFAULT_WINDOWS,
        help=f"number of windows (default: {DEFAULT_WINDOWS})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed for window choice, masking and bootstrap (default: {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"windows per forward pass (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--max-ratio",
        type=float,
        default=DEFAULT_MAX_RATIO,
        help=f"gate: largest allowed upper CI bound of the ppl ratio (default: {DEFAULT_MAX_RATIO})",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=DEFAULT_CONFIDENCE,
        help=f"CI level (default: {DEFAULT_CONFIDENCE})",
    )
    parser.add_argument(
        "--bootstrap",
        type=positive_int,
        default=DEFAULT_BOOTSTRAP,
        help=f"bootstrap resamples (default: {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--allow-inconclusive",
        action="store_true",
        help=f"below the gate's minimum evidence ({MIN_WINDOWS} windows, {MIN_TOKENS} scored tokens) write "
        "an INCONCLUSIVE certificate (exit 1) instead of refusing (exit 2)",
    )
    add_model_options(parser)
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"directory for the certificate files (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the certificate JSON on stdout; no progress"
    )
    parser.add_argument(
        "--no-color", action="store_true", help="no colour (also NO_COLOR=1; never in a pipe)"
    )
    parser.set_defaults(handler=_certify_command)
    organise_help(parser, HELP_GROUPS, HELP_EXAMPLES)


HELP_GROUPS = {
    "models": (
        "--baseline",
        "--subject",
        "--adapter",
        "--subject-adapter",
        "--subject-base",
        "--subject-merge",
    ),
    "evaluation windows": (
        "--dataset",
        "--split",
        "--text-field",
        "--seq-len",
        "--stride",
        "--windows",
        "--seed",
        "--batch-size",
    ),
    "gate": ("--max-ratio", "--confidence", "--bootstrap", "--allow-inconclusive"),
    "loading": ("--device", "--dtype", "--trust-remote-code"),
    "output": ("--out", "--json", "--no-color"),
}
HELP_EXAMPLES = (
    "invarlock certify --baseline ./base --subject ./quantized",
    "invarlock certify --baseline ./base --subject ./tuned --dataset eval.jsonl",
    "invarlock certify --baseline ./base --subject ./pruned --max-ratio 1.05",
    "invarlock certify --baseline ./base --subject ./lora --subject-merge --json",
)


def _certify_command(args: argparse.Namespace) -> int:
    from invarlock.certification.certificate import write_certificate
    from invarlock.certification.certify import CertifyOptions, certify
    from invarlock.certification.evaluate import WindowSettings
    from invarlock.certification.evaluation.gate import GatePolicy
    from invarlock.certification.preflight import check_gate_numbers, check_output_directory
    from invarlock.certification.progress import Progress

    quiet_backend_progress()
    check_gate_numbers(args.max_ratio, args.confidence)
    check_output_directory(args.out)
    options = CertifyOptions(
        adapter=args.adapter,
        subject_adapter=args.subject_adapter,
        dataset=args.dataset,
        split=args.split,
        text_field=args.text_field,
        windows=WindowSettings(
            seq_len=args.seq_len,
            stride=args.stride,
            windows=args.windows,
            seed=args.seed,
            batch_size=args.batch_size,
        ),
        device=args.device,
        load_options=load_options(args),
        subject_load_options=subject_load_options(args),
        policy=GatePolicy(
            args.max_ratio, args.confidence, args.bootstrap, allow_inconclusive=args.allow_inconclusive
        ),
    )
    with Progress(enabled=not args.json) as progress:
        certificate = certify(args.baseline, args.subject, options, progress, command=command_line(args))
    paths = write_certificate(certificate, args.out)
    if args.json:
        sys.stdout.write(to_json(certificate))
    else:
        print(
            with_coloured_verdict(
                summary(certificate), certificate["verdict"], sys.stdout, no_color=args.no_color
            )
        )
        for kind, path in paths.items():
            print(f"  {kind + ':':<10}{path}")
    return int(certificate["exit_code"])


def command_line(args: argparse.Namespace) -> list[str]:
    """The command as typed (``invarlock certify ...``), for the certificate's ``invocation``."""
    typed = getattr(args, "argv", None)
    return ["invarlock", *(typed if typed is not None else sys.argv[1:])]


def summary(document: dict[str, Any]) -> str:
    stats, gate = document["stats"], document["gate"]
    low, high = stats["ci"]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = [
        f"{document['verdict']}: ppl ratio {fmt(stats['ratio'])} "
        f"({stats['confidence']:.0%} CI {fmt(low)}–{fmt(high)})",
        f"gate: {gate['rule']}",
        f"baseline ppl {fmt(stats['baseline_ppl'])}, subject ppl {fmt(stats['subject_ppl'])}, "
        f"{stats['windows']} windows, {stats['tokens']} tokens",
        *document["reasons"][1:],
    ]
    # 80 columns, wrapped at spaces only: every line after the verdict indented under it
    return "\n".join(
        wrap_words(line, first="" if index == 0 else "  ", rest="    ") for index, line in enumerate(lines)
    )
