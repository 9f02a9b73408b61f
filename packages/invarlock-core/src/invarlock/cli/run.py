"""``invarlock run --config FILE.yaml``: edit, evaluate against the unedited model, restore on failure."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from invarlock.certification.certificate import to_json


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="apply an edit from a YAML config and evaluate it against the unedited model",
        description="Load, describe, snapshot, edit, evaluate against the unedited model; restore and "
        "verify bit for bit when the gate fails; write evaluation.report.json. "
        "Exit 0: pass; 1: gate failed; 2: error.",
    )
    parser.add_argument("--config", required=True, help="the run configuration (YAML)")
    parser.add_argument(
        "--out", help="directory for evaluation.report.json (default: the config's output.dir)"
    )
    parser.add_argument("--json", action="store_true", help="print the report JSON on stdout; no progress")
    parser.add_argument(
        "--no-color", action="store_true", help="no colour (also NO_COLOR=1; never in a pipe)"
    )
    parser.set_defaults(handler=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    from invarlock.certification.certificate import write_report
    from invarlock.certification.preflight import check_output_directory
    from invarlock.certification.progress import Progress
    from invarlock.certification.ranks import ranks_for
    from invarlock.certification.run import run
    from invarlock.cli.certify import quiet_backend_progress, summary
    from invarlock.cli.style import with_coloured_verdict
    from invarlock.config import load_config, load_options
    from invarlock.errors import InvarlockError

    quiet_backend_progress()
    config = load_config(args.config)
    ranks = ranks_for([load_options(config)], flag="model.tp_plan")
    out = args.out or config["output"]["dir"]
    report: dict[str, Any] = {}
    failure: InvarlockError | None = None
    try:  # on several ranks (torchrun) each rank's failure is every rank's: see certification.ranks
        if ranks.lead:  # only rank 0 writes
            check_output_directory(out, "--out" if args.out else "output.dir")
        with Progress(enabled=not args.json and ranks.lead) as progress:
            report = run(config, source=args.config, progress=progress, ranks=ranks)
    except InvarlockError as exc:
        failure = exc
    ranks.settle(failure, {key: report.get(key) for key in ("verdict", "exit_code", "stats", "restore")})
    path = ranks.lead_writes(lambda: write_report(report, out))
    if path is None:  # not rank 0: it writes and prints
        return int(report["exit_code"])
    if args.json:
        sys.stdout.write(to_json(report))
    else:
        print(with_coloured_verdict(summary(report), report["verdict"], sys.stdout, no_color=args.no_color))
        restore = report["restore"]
        if restore["performed"]:
            print(f"  restored: {restore['detail']}")
        print(f"  report:   {path}")
    return int(report["exit_code"])
