"""``invarlock plugins quantizers``: every quantization method the installed libraries register.

The rows come from plugins (:mod:`invarlock.quantizers`); this module renders them. Nothing heavy
is imported here; a listing that is not cached yet imports the backends inside the plugins.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from invarlock import __version__
from invarlock.quantizers import QuantizerListing, QuantizerStatus, quantization_methods

QUANTIZERS_SCHEMA = "invarlock.plugins.quantizers/v1"


def add_parser(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "quantizers", help="list every quantization method transformers knows and whether it works here"
    )
    parser.add_argument("--json", action="store_true", help=f"print JSON ({QUANTIZERS_SCHEMA})")
    parser.add_argument(
        "--refresh", action="store_true", help="ask the plugins again instead of reading the cached answer"
    )
    parser.set_defaults(handler=_quantizers_command)


def quantizers_listing(listing: QuantizerListing) -> dict[str, Any]:
    """The JSON document (the schema is docs/schemas/plugins-quantizers.v1.json)."""
    return {
        "schema": QUANTIZERS_SCHEMA,
        "invarlock_core": __version__,
        "platform": sys.platform,
        "cached": listing.cached,
        "errors": list(listing.errors),
        "methods": [row.as_json() for row in listing.methods],
    }


_COLUMNS = ("method", "library", "status", "adapter")


def render_table(document: dict[str, Any]) -> str:
    rows = [
        (
            item["method"],
            item["library"],
            item["status"],
            f"{item['adapter']} ({item['adapter_status']})" if item["adapter"] else "-",
        )
        for item in document["methods"]
    ]
    errors = [f"error: {error}" for error in document["errors"]]
    if not rows:
        return "\n".join(
            [
                "No plugin lists quantization methods. invarlock-hf lists transformers' methods: "
                "pip install invarlock-hf",
                *errors,
            ]
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*(c.upper() for c in _COLUMNS)).rstrip()]
    for item, row in zip(document["methods"], rows, strict=True):
        out.append(fmt.format(*row).rstrip())
        follow = item["install"] if item["status"] in ("needs_extra", "adapter") and item["install"] else None
        out.append(f"    -> {follow}" if follow else f"    {item['reason']}")
    counts = Counter(item["status"] for item in document["methods"])
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in QuantizerStatus if counts[s.value])
    out += ["", f"{len(rows)} methods: {summary}."]
    return "\n".join(out + errors)


def _quantizers_command(args: argparse.Namespace) -> int:
    document = quantizers_listing(quantization_methods(refresh=args.refresh))
    print(json.dumps(document, indent=2) if args.json else render_table(document))
    return 1 if document["errors"] else 0
