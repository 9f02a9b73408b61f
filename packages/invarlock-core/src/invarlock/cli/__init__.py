"""The ``invarlock`` command. Subcommands live in sibling modules and import heavy things lazily."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from invarlock.cli import certify, describe, plugins, run, verify
from invarlock.errors import InvarlockError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show versions of core and plugins, then exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(plugins.version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invarlock",
        description="Check an edited model checkpoint against its baseline.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    plugins.add_parser(commands)
    describe.add_parser(commands)
    certify.add_parser(commands)
    run.add_parser(commands)
    verify.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except InvarlockError as exc:
        print(f"invarlock: error [{exc.code}]: {exc}", file=sys.stderr)
        return EXIT_USAGE
