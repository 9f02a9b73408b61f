"""``invarlock verify CERTIFICATE [--baseline B --subject S]``: exit 0 match, 1 mismatch, 2 error."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="re-hash the checkpoints a certificate is about and say whether they are the same files",
        description="Hash both sides' files again (no model is loaded) and compare them with the "
        "certificate's manifests; also recompute certificate_id from the certificate's contents. "
        "Exit 0: both sides match; 1: something differs; 2: error.",
    )
    parser.add_argument("certificate", help="certificate.json, or the directory holding it")
    parser.add_argument("--baseline", help="the baseline checkpoint (default: where the certificate says)")
    parser.add_argument("--subject", help="the subject checkpoint (default: where the certificate says)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.set_defaults(handler=_verify_command)


def _verify_command(args: argparse.Namespace) -> int:
    from invarlock.certification.verify import summary, verify

    result = verify(args.certificate, {"baseline": args.baseline, "subject": args.subject})
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        print(summary(result))
    return 0 if result["matches"] else 1
