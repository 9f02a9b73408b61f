"""Colour for the verdict, only where it can be seen: a terminal, no ``NO_COLOR``, no ``--no-color``.

Colour comes from rich (installed alongside transformers, so present wherever a model is scored),
imported only when colour is wanted: ``plugins adapters`` and every pipe never pay for it, and
where rich is absent the output is plain. rich also knows which colours the terminal supports
(``TERM``, ``COLORTERM``, Windows consoles), which hand-written escape codes would not.
"""

from __future__ import annotations

import os
import textwrap
from typing import IO

PLAIN_WIDTH = 80
"""The width of output that is not drawn to the terminal's own width (a pipe, a bug report)."""

NO_COLOR_ENV = "NO_COLOR"
"""Any non-empty value turns colour off (https://no-color.org)."""

VERDICT_STYLES = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow"}


def colour_wanted(stream: IO[str], *, no_color: bool = False) -> bool:
    """Whether text written to ``stream`` may be coloured: never in a pipe or file, never with
    ``--no-color`` or ``NO_COLOR``, never on a ``TERM=dumb`` terminal."""
    if no_color or os.environ.get(NO_COLOR_ENV) or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def with_coloured_verdict(text: str, verdict: str, stream: IO[str], *, no_color: bool = False) -> str:
    """``text`` with its leading ``verdict`` word coloured for ``stream``, or unchanged where colour
    is not wanted (or rich is not installed)."""
    if (
        verdict not in VERDICT_STYLES
        or not text.startswith(verdict)
        or not colour_wanted(stream, no_color=no_color)
    ):
        return text
    try:
        from rich.console import Console
        from rich.text import Text
    except ImportError:
        return text
    console = Console(file=stream, highlight=False, soft_wrap=True, emoji=False, markup=False)
    with console.capture() as captured:
        console.print(Text.assemble((verdict, VERDICT_STYLES[verdict]), text[len(verdict) :]), end="")
    return captured.get()


def wrap_words(text: str, width: int = PLAIN_WIDTH, first: str = "", rest: str = "") -> str:
    """``text`` wrapped to ``width`` at spaces only: a command, a path or a name is never split.
    ``first`` starts the first line, ``rest`` every other."""
    return textwrap.fill(
        text,
        width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
