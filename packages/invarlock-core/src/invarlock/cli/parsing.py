"""The argument parser every ``invarlock`` command uses: no abbreviations, and a mistyped option or
command is one line that names the closest real one, exit 2.

Subcommand parsers are made with ``add_subparsers().add_parser(...)``, which builds them with the
parent's class, so setting this class on the top-level parser covers every command.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

EXIT_USAGE = 2

_INVALID_CHOICE = re.compile(r"invalid choice: '?(?P<value>[^' ]+)'?")


class InvarlockArgumentParser(argparse.ArgumentParser):
    """``allow_abbrev`` is off (``--max-r`` is not ``--max-ratio``); errors say what was meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._arguments_seen: list[str] = []
        self.examples: tuple[str, ...] = ()
        """Command lines shown, as typed, at the end of ``--help`` (see :func:`organise_help`)."""

    def format_help(self) -> str:
        text = super().format_help()
        if self.examples:
            text += "\nexamples:\n" + "".join(f"  {example}\n" for example in self.examples)
        return text

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._arguments_seen = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(args, namespace)
        # Report a mistyped option here, with this (sub)command's own options to suggest from; left
        # to the top-level parser it would be "unrecognized arguments" with the top-level usage.
        unknown = self._unknown_options(extras)
        if unknown:
            self.error(self._unknown_option_message(unknown[0]))
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        # argparse checks required options before it reports unknown ones, so `--subjet S` would
        # read "the following arguments are required: --subject": the typo is the real cause.
        unknown = self._unknown_options(self._arguments_seen)
        if unknown:
            message = self._unknown_option_message(unknown[0])
        else:
            message = self._with_choice_suggestion(message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    # -- what was meant -------------------------------------------------------------------------

    def _command_names(self) -> set[str]:
        names: set[str] = set()
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                names.update(action.choices)
        return names

    def _unknown_options(self, tokens: Sequence[str]) -> list[str]:
        """Option-shaped tokens this parser does not know, up to ``--`` or its subcommand's name
        (what follows a subcommand is that subcommand's to judge)."""
        commands = self._command_names()
        unknown: list[str] = []
        for token in tokens:
            if token == "--" or token in commands:
                break
            if not token.startswith("-") or token == "-" or self._negative_number_matcher.match(token):
                continue
            name = token.split("=", 1)[0]
            if name not in self._option_string_actions:
                unknown.append(name)
        return unknown

    def _unknown_option_message(self, option: str) -> str:
        known = [name for name in self._option_string_actions if name.startswith("--")]
        # an abbreviation names the options it begins (--max-r: --max-ratio, not the closer --max-kl)
        completions = [name for name in known if name.startswith(option)]
        close = difflib.get_close_matches(
            option, completions or known, n=1, cutoff=0.6 if not completions else 0
        )
        if close:
            return f"unknown option {option}; did you mean {close[0]}?"
        return f"unknown option {option}; `{self.prog} --help` lists the options"

    def _with_choice_suggestion(self, message: str) -> str:
        """A mistyped subcommand: "unknown command X; did you mean Y?" instead of the full list."""
        for action in self._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            match = _INVALID_CHOICE.search(message)
            if not match or not message.startswith(f"argument {argparse._get_action_name(action)}: "):
                continue
            value = match.group("value")
            close = difflib.get_close_matches(value, sorted(action.choices), n=1, cutoff=0.6)
            if close:
                return f"unknown command {value}; did you mean {close[0]}?"
            return f"unknown command {value}; `{self.prog} --help` lists the commands"
        return message


def organise_help(
    parser: argparse.ArgumentParser, groups: Mapping[str, Sequence[str]], examples: Sequence[str] = ()
) -> None:
    """Show ``parser``'s options under titled groups in ``--help`` (in the order given), then
    ``examples``. The options are added as usual first; this only changes how help lays them out.
    A name that is not one of the parser's options raises ``KeyError`` when the parser is built."""
    by_name = {name: action for action in parser._actions for name in action.option_strings}
    for title, names in groups.items():
        group = parser.add_argument_group(title)
        for name in names:
            action = by_name[name]
            parser._optionals._group_actions.remove(action)
            group._group_actions.append(action)
    if isinstance(parser, InvarlockArgumentParser):
        parser.examples = tuple(examples)
