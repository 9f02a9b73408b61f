"""``invarlock describe MODEL``: load a model through its adapter and print its description."""

from __future__ import annotations

import argparse
import json
from typing import Any

from invarlock.cli.certify import add_model_options, load_options, quiet_backend_progress

DESCRIBE_SCHEMA = "invarlock.describe/v1"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("describe", help="print a model's structure as its adapter describes it")
    parser.add_argument("model", help="a checkpoint directory or hub id")
    parser.add_argument("--adapter", default="auto", help="adapter name, or auto (default) to resolve it")
    add_model_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_describe_command)


def _describe_command(args: argparse.Namespace) -> int:
    from invarlock.certification import preflight, sides

    quiet_backend_progress()
    options = load_options(args)
    preflight.check_model_location(args.model, "model")
    chosen = sides.choose_adapter(args.model, args.adapter, flag="--adapter", load_options=options)
    model = sides.load_model(chosen, args.model, "model", args.device, options)
    description = chosen.adapter.describe(model)
    if args.json:
        document = {
            "schema": DESCRIBE_SCHEMA,
            "model_id": args.model,
            "adapter": chosen.info(),
            "description": dict(description),
        }
        print(json.dumps(document, indent=2))
        return 0
    print(f"{args.model}  (adapter {chosen.name}: {chosen.resolution.reason})")
    width = max(len(key) for key in description)
    for key, value in description.items():
        print(f"  {key:<{width}}  {_compact(value)}")
    return 0


def _compact(value: Any) -> str:
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        return f"{value[0]} × {len(value)}"
    if isinstance(value, dict):
        return json.dumps(value) if value else "{}"
    return "null" if value is None else str(value)
