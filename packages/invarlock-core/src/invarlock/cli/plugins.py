"""``invarlock plugins`` and ``invarlock plugins adapters``: what is installed and what is ready.

Readiness comes from distribution metadata; no backend (torch, transformers...) is imported.
"""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Any

from packaging.utils import canonicalize_name

from invarlock import __version__
from invarlock.catalogue import GROUPS
from invarlock.cli import quantizers
from invarlock.cli.style import PLAIN_WIDTH, wrap_words
from invarlock.errors import AdapterNotFoundError, PluginNotFoundError
from invarlock.listing import ADAPTERS_SCHEMA, adapters_listing, plugins_listing
from invarlock.manager import get_plugin_manager


def add_parser(commands: Any) -> None:
    plugins = commands.add_parser("plugins", help="list plugin distributions and the hooks they implement")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument(
        "--traceback",
        metavar="NAME",
        help="print the full traceback of plugin NAME's failure (and of the faults recorded on it)",
    )
    plugins.set_defaults(handler=_plugins_command)
    sub = plugins.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    adapters = sub.add_parser("adapters", help="list every adapter and whether it is ready here")
    adapters.add_argument("--json", action="store_true", help=f"print JSON ({ADAPTERS_SCHEMA})")
    adapters.add_argument("--explain", metavar="NAME", help="explain one adapter's status in full")
    adapters.set_defaults(handler=_adapters_command)
    quantizers.add_parser(sub)


def version_text() -> str:
    lines = [f"invarlock-core {__version__}"]
    for plugin in plugins_listing()["plugins"]:
        status = "" if plugin["status"] == "loaded" else f" ({plugin['status']})"
        lines.append(f"  {plugin['distribution'] or plugin['name']} {plugin['version'] or '?'}{status}")
    return "\n".join(lines)


# -- rendering ----------------------------------------------------------------------------------

_COLUMNS = ("adapter", "distribution", "backend", "role", "snapshot", "guards", "platform", "status")


def _row(item: dict[str, Any]) -> tuple[str, ...]:
    version = f" {item['version']}" if item["version"] else ""
    backend = item["backend"][0] if item["backend"] else "-"
    if item["backend_version"]:
        backend += f" {item['backend_version']}"
    return (
        item["name"],
        item["distribution"] + version,
        backend,
        item["role"],
        item["snapshot"] or "-",
        item["guards"] or "-",
        ",".join(item["platforms"]) or "any",
        item["status"],
    )


def _follow_up(item: dict[str, Any]) -> str | None:
    if item["install"]:
        return f"-> {item['install']}"
    if item["reason"]:
        return f"-> {item['reason']}"
    return None


_HIDDEN_FIRST = ("backend", "guards", "platform", "role", "snapshot")
"""Columns left out, in this order, until the table fits the terminal; ``--explain`` shows them all."""


def render_table(listing: dict[str, Any], width: int | None = None) -> str:
    """The listing as a table no wider than ``width`` (default: the terminal's, 80 in a pipe)."""
    width = width or shutil.get_terminal_size((PLAIN_WIDTH, 24)).columns
    items = listing["adapters"]
    rows = [_row(item) for item in items]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)] if rows else []
    shown = list(range(len(_COLUMNS)))
    for column in _HIDDEN_FIRST:
        if sum(widths[i] + 2 for i in shown) - 2 <= width:
            break
        shown.remove(_COLUMNS.index(column))
    hidden = [_COLUMNS[i] for i in range(len(_COLUMNS)) if i not in shown]
    fmt = "  ".join(f"{{:<{widths[i]}}}" for i in shown)

    def line(cells: tuple[str, ...]) -> str:
        return fmt.format(*(cells[i] for i in shown)).rstrip()

    out: list[str] = []
    for group in GROUPS:
        members = [(item, row) for item, row in zip(items, rows, strict=True) if item["group"] == group]
        if not members:
            continue
        out += ["", group, line(tuple(c.upper() for c in _COLUMNS))]
        for item, row in members:
            out.append(line(row))
            follow = _follow_up(item)
            if follow:
                out.append(wrap_words(follow, width, "    ", "       "))
    ready = sum(item["status"] == "ready" for item in items)
    out += [""]
    if hidden:
        columns = " and ".join(column.upper() for column in hidden)
        out.append(
            wrap_words(f"({columns} left out to fit {width} columns; --explain NAME shows all.)", width)
        )
    out.append(
        wrap_words(
            f"{ready} of {len(items)} adapters ready. "
            "`invarlock plugins adapters --explain NAME` for details.",
            width,
        )
    )
    return "\n".join(out).lstrip("\n")


def render_explanation(item: dict[str, Any]) -> str:
    lines = [f"{item['name']} ({item['group']}, {item['origin']})"]
    for key in (
        "distribution",
        "version",
        "plugin",
        "role",
        "snapshot",
        "guards",
        "status",
        "reason",
        "install",
        "notes",
    ):
        value = item[key]
        if value:
            lines.append(f"  {key + ':':<14}{value}")
    if item["backend"]:
        lines.append(
            f"  {'backend:':<14}{', '.join(item['backend'])} ({item['backend_version'] or 'not installed'})"
        )
    lines.append(f"  {'platforms:':<14}{', '.join(item['platforms']) or 'any'}")
    if item["missing"]:
        lines.append(f"  {'missing:':<14}{', '.join(item['missing'])}")
    return "\n".join(lines)


# -- commands -----------------------------------------------------------------------------------


def _adapters_command(args: argparse.Namespace) -> int:
    listing = adapters_listing()
    if args.explain:
        matches = [item for item in listing["adapters"] if item["name"] == args.explain]
        if not matches:
            get_plugin_manager().adapter_spec(args.explain)  # raises with a suggestion
            raise AdapterNotFoundError(f"no adapter named {args.explain!r} is listed")
        print(json.dumps(matches[0], indent=2) if args.json else render_explanation(matches[0]))
        return 0
    print(json.dumps(listing, indent=2) if args.json else render_table(listing))
    return 0


def _traceback_command(name: str) -> int:
    records = [r for key, r in get_plugin_manager().plugin_records.items() if name in (key, r.name)]
    records = records or [
        r
        for r in get_plugin_manager().plugin_records.values()
        if r.distribution and canonicalize_name(r.distribution) == canonicalize_name(name)
    ]
    if not records:
        known = sorted(r.name for r in get_plugin_manager().plugin_records.values())
        raise PluginNotFoundError(
            f"no plugin named {name!r} is installed; `invarlock plugins` lists them"
            + (f" ({', '.join(known)})" if known else "")
        )
    for record in records:
        texts = [record.traceback] if record.traceback else []
        texts += [fault.traceback for fault in record.faults]
        if texts:
            print("\n".join(text.rstrip("\n") for text in texts))
        elif record.error:
            print(f"plugin {record.name} is {record.status} without an exception to trace: {record.error}")
        else:
            print(f"plugin {record.name} is {record.status}; it has raised nothing in this process")
    return 0


def _plugins_command(args: argparse.Namespace) -> int:
    if args.traceback:
        return _traceback_command(args.traceback)
    listing = plugins_listing()
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing["plugins"]:
        print("No plugins installed. `invarlock plugins adapters` shows what can be installed.")
        return 0
    for plugin in listing["plugins"]:
        version = f" {plugin['version']}" if plugin["version"] else ""
        print(f"{plugin['name']}  {plugin['distribution'] or '-'}{version}  [{plugin['status']}]")
        if plugin["error"]:
            print(f"    error: {plugin['error']} (`invarlock plugins --traceback {plugin['name']}`)")
        for fault in plugin["faults"]:
            print(f"    fault in {fault['hook']}: {fault['error']}")
        if plugin["hooks"]:
            print(f"    hooks: {', '.join(plugin['hooks'])}")
        if plugin["adapters"]:
            print(f"    adapters: {', '.join(plugin['adapters'])}")
    return 0
