"""The ``invarlock`` command. Subcommands live in sibling modules and import heavy things lazily."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from invarlock.cli.parsing import InvarlockArgumentParser
from invarlock.errors import InvarlockError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, as a shell reports a command stopped by Ctrl-C."""


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show versions of core and plugins, then exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from invarlock.cli import plugins

        print(plugins.version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: main() is then already running, so Ctrl-C while the
    # subcommands' modules load ends with its one line, not a traceback.
    from invarlock.cli import certify, describe, env, plugins, run, verify

    parser = InvarlockArgumentParser(
        prog="invarlock",
        description="Check an edited model checkpoint against its baseline.",
        epilog=env.environment_variables_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    plugins.add_parser(commands)
    describe.add_parser(commands)
    certify.add_parser(commands)
    run.add_parser(commands)
    verify.add_parser(commands)
    env.add_parser(commands)
    return parser


def _show_plugin_faults_plainly() -> None:
    """A plugin fault or an ignored baseline cache entry is reported as one ``invarlock: warning:``
    line, not Python's two-line warning."""
    from invarlock.manager import PluginFaultWarning

    shown = warnings.showwarning
    if getattr(shown, "plain_plugin_faults", False):
        return

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        from invarlock.certification.cache import BaselineCacheWarning

        if issubclass(category, (PluginFaultWarning, BaselineCacheWarning)):
            print(f"invarlock: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *args, **kwargs)

    show.plain_plugin_faults = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # inside the try: a reader that closed the pipe is met here, not at exit
        if "torch.distributed" in sys.modules:  # a rank of torchrun: see end_rank_process
            from invarlock.certification.ranks import end_rank_process

            end_rank_process(code)
        return code
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise
        # `invarlock ... | head` : the reader stopped reading; that is not a failure.
        _discard_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        print("\ninvarlock: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(argv: Sequence[str] | None) -> int:
    _show_plugin_faults_plainly()
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
    except KeyboardInterrupt as exc:
        # Outputs are written all-or-nothing at the end, so an interrupted run leaves none behind.
        activity = getattr(exc, "activity", "")  # progress.Interrupted: what the display was showing
        if activity:
            print(f"\ninvarlock: interrupted while {activity}; nothing written", file=sys.stderr)
        else:
            print(
                f"\ninvarlock: interrupted; {args.command} stopped before it finished and wrote no results",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (so the BrokenPipeError is about it)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no real stdout
        return True


def _discard_stdout() -> None:
    """Point stdout at the null device, so the interpreter's final flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
