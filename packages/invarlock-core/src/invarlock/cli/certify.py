"""``invarlock certify --baseline B --subject S``: exit 0 pass, 1 gate failed, 2 usage or load error."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from invarlock.certification.certificate import to_json
from invarlock.certification.certificate.text import cache_line, distribution_line
from invarlock.certification.datasets import EMBEDDED
from invarlock.certification.evaluation.distribution import DEFAULT_TOP_K
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
from invarlock.config import TEXT_MODEL_KEYS
from invarlock.errors import InvalidLoadOptionError, InvarlockError

DEFAULT_OUT = "invarlock-certificate"


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


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


def add_placement_options(parser: argparse.ArgumentParser) -> None:
    """The load options of both sides beyond device and dtype, and each side's own."""
    parser.add_argument(
        "--device-map",
        help="accelerate placement for both sides: auto, balanced, sequential, or a JSON map "
        '(\'{"model.layers.0": "cpu", ...}\')',
    )
    parser.add_argument(
        "--max-memory",
        help='the most each device may hold, with --device-map (JSON: \'{"0": "20GiB", "cpu": "60GiB"}\')',
    )
    parser.add_argument(
        "--offload-folder", help="where --device-map puts what fits on no device (disk offload)"
    )
    parser.add_argument(
        "--tp-plan",
        metavar="PLAN",
        help="tensor parallelism for both sides: auto (the model's own plan); one process per device, "
        "started with torchrun --nproc-per-node N -m invarlock certify ...",
    )
    for side in ("baseline", "subject"):
        parser.add_argument(
            f"--{side}-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a load option of the {side} only, over the options for both (repeatable; VALUE is read "
            f'as JSON when it parses: dtype=bfloat16, max_memory=\'{{"cpu": "2GiB"}}\', revision=abc123)',
        )


def option_value(text: str) -> Any:
    """A ``KEY=VALUE`` or flag value: JSON when it parses (numbers, true, objects), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def text_option_value(text: str) -> str:
    """The value of a key that is always text: a JSON string's text (``"1234"``), else as written
    (``1234567`` or ``1e5`` stay those characters, never a number)."""
    value = option_value(text)
    return value if isinstance(value, str) else text


def shared_load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The load options both sides get: ``--dtype``, ``--trust-remote-code`` and the placement flags."""
    options = load_options(args)
    if args.device_map is not None:
        options["device_map"] = option_value(args.device_map)
    if args.max_memory is not None:
        max_memory = option_value(args.max_memory)
        if not isinstance(max_memory, dict):
            raise InvalidLoadOptionError(
                f"--max-memory must be a JSON object of device to size, got {args.max_memory!r}; "
                """write it like '{"cpu": "2GiB"}'"""
            )
        options["max_memory"] = max_memory
    if args.offload_folder is not None:
        options["offload_folder"] = args.offload_folder
    if args.tp_plan is not None:
        options["tp_plan"] = option_value(args.tp_plan)
    return options


def side_options(args: argparse.Namespace, side: str) -> Any:
    """One side's adapter, device and load options: the options for both sides, then the side's own
    (``--subject-base``, ``--subject-merge``, ``--SIDE-option KEY=VALUE``, which win)."""
    options = shared_load_options(args)
    device = args.device
    if side == "subject":
        if args.subject_base:
            options["base"] = args.subject_base
        if args.subject_merge:
            options["merge"] = True
    for item in getattr(args, f"{side}_option"):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise InvalidLoadOptionError(
                f"--{side}-option {item!r} is not KEY=VALUE; write it like --{side}-option dtype=bfloat16"
            )
        if key == "device":
            device = text_option_value(value)
        elif key in TEXT_MODEL_KEYS:
            options[key] = text_option_value(value)
        else:
            options[key] = option_value(value)
    from invarlock.certification.sides import SideOptions

    adapter = args.subject_adapter if side == "subject" and args.subject_adapter else args.adapter
    return SideOptions(adapter, device, options)


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
        "--declare-edit",
        metavar="FILE",
        help="YAML or JSON file declaring the subject's structure change (heads pruned, MLP widths, "
        "experts, vocabulary, layers removed): the structure invariant then requires exactly that",
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
        "--top-k",
        type=non_negative_int,
        default=DEFAULT_TOP_K,
        help="baseline tokens kept per scored token for KL, top-1 agreement and Δp; 0: no distribution "
        f"metrics (default: {DEFAULT_TOP_K})",
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
        "--max-kl",
        type=float,
        help="gate: largest allowed upper CI bound of the mean KL(baseline‖subject), nats/token "
        "(default: off)",
    )
    parser.add_argument(
        "--min-top1-agreement",
        type=float,
        help="gate: smallest allowed lower CI bound of the top-1 agreement rate, 0 to 1 (default: off)",
    )
    parser.add_argument(
        "--allow-inconclusive",
        action="store_true",
        help=f"below the gate's minimum evidence ({MIN_WINDOWS} windows, {MIN_TOKENS} scored tokens) write "
        "an INCONCLUSIVE certificate (exit 1) instead of refusing (exit 2)",
    )
    add_model_options(parser)
    add_placement_options(parser)
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="load and score the baseline even when the baseline cache holds it, and store nothing "
        "(cache directory: INVARLOCK_CACHE_DIR, else the platform's user cache)",
    )
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
        "--declare-edit",
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
        "--top-k",
    ),
    "gate": (
        "--max-ratio",
        "--max-kl",
        "--min-top1-agreement",
        "--confidence",
        "--bootstrap",
        "--allow-inconclusive",
    ),
    "loading (both sides; --baseline-option, --subject-option: one side)": (
        "--device",
        "--dtype",
        "--trust-remote-code",
        "--device-map",
        "--max-memory",
        "--offload-folder",
        "--tp-plan",
        "--baseline-option",
        "--subject-option",
        "--no-cache",
    ),
    "output": ("--out", "--json", "--no-color"),
}
HELP_EXAMPLES = (
    "invarlock certify --baseline ./base --subject ./quantized",
    "invarlock certify --baseline ./base --subject ./tuned --dataset eval.jsonl",
    "invarlock certify --baseline ./base --subject ./pruned --declare-edit p.yaml",
    "invarlock certify --baseline ./base --subject ./lora --subject-merge --json",
    "invarlock certify --baseline ./base --subject ./q4 --subject-option device=cpu",
    "invarlock certify --baseline ./big --subject ./pruned --device-map auto",
)


def _certify_command(args: argparse.Namespace) -> int:
    from invarlock.certification.certificate import write_certificate
    from invarlock.certification.certify import CertifyOptions, certify
    from invarlock.certification.evaluate import WindowSettings
    from invarlock.certification.evaluation.gate import GatePolicy
    from invarlock.certification.preflight import (
        check_distribution_gate,
        check_gate_numbers,
        check_output_directory,
    )
    from invarlock.certification.progress import Progress
    from invarlock.certification.ranks import ranks_for
    from invarlock.certification.structure_change import load as load_structure_change

    quiet_backend_progress()
    check_gate_numbers(args.max_ratio, args.confidence)
    check_distribution_gate(args.max_kl, args.min_top1_agreement, args.top_k)
    structure_change = load_structure_change(args.declare_edit) if args.declare_edit else None
    options = CertifyOptions(
        baseline=side_options(args, "baseline"),
        subject=side_options(args, "subject"),
        dataset=args.dataset,
        split=args.split,
        text_field=args.text_field,
        windows=WindowSettings(
            seq_len=args.seq_len,
            stride=args.stride,
            windows=args.windows,
            seed=args.seed,
            batch_size=args.batch_size,
            top_k=args.top_k,
        ),
        policy=GatePolicy(
            args.max_ratio,
            args.confidence,
            args.bootstrap,
            allow_inconclusive=args.allow_inconclusive,
            max_kl=args.max_kl,
            min_top1_agreement=args.min_top1_agreement,
        ),
        cache=not args.no_cache,
        structure_change=structure_change,
    )
    ranks = ranks_for([options.baseline.load_options, options.subject.load_options])
    certificate: dict[str, Any] = {}
    failure: InvarlockError | None = None
    try:  # on several ranks (torchrun) each rank's failure is every rank's: see certification.ranks
        if ranks.lead:  # only rank 0 writes
            check_output_directory(args.out)
        with Progress(enabled=not args.json and ranks.lead) as progress:
            certificate = certify(
                args.baseline, args.subject, options, progress, command=command_line(args), ranks=ranks
            )
    except InvarlockError as exc:
        failure = exc
    ranks.settle(failure, outcome(certificate))
    paths = ranks.lead_writes(lambda: write_certificate(certificate, args.out))
    if paths is None:  # not rank 0: it writes and prints
        return int(certificate["exit_code"])
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


def outcome(document: dict[str, Any]) -> dict[str, Any]:
    """What every rank must agree on: the verdict, the exit code and the statistics."""
    return {key: document.get(key) for key in ("verdict", "exit_code", "stats", "certificate_id")}


def command_line(args: argparse.Namespace) -> list[str]:
    """The command as typed (``invarlock certify ...``), for the certificate's ``invocation``."""
    typed = getattr(args, "argv", None)
    return ["invarlock", *(typed if typed is not None else sys.argv[1:])]


def placement_lines(document: dict[str, Any]) -> list[str]:
    """Where each part of a side placed by a device map ran (nothing for a side placed whole)."""
    from invarlock.certification.certificate.text import placement_line

    return [
        f"{side} placement: {placement_line(document[side])}"
        for side in ("baseline", "subject")
        if isinstance(document.get(side), dict) and document[side].get("placement")
    ]


def structure_lines(document: dict[str, Any]) -> list[str]:
    """One line per declared structure change made (failures are in the reasons already)."""
    from invarlock.certification.certificate.text import structure_declaration_line

    declared = structure_declaration_line(document)
    if declared is None:
        return []
    made = [c for c in document["structure_delta"]["changes"] if c["status"] == "declared"]
    return [f"structure: {len(made)} change(s) {declared}"]


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
        *([distribution_line(document["distribution"])] if "distribution" in document else []),
        f"baseline cache: {cache_line(document)}",
        *document["reasons"][1:],
        *placement_lines(document),
        *structure_lines(document),
    ]
    # 80 columns, wrapped at spaces only: every line after the verdict indented under it
    return "\n".join(
        wrap_words(line, first="" if index == 0 else "  ", rest="    ") for index, line in enumerate(lines)
    )
