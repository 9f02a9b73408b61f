"""The listing of plugins and adapters as data: what ``invarlock plugins [adapters] --json`` prints
and what every certificate and report records. Readiness comes from distribution metadata; no
backend (torch, transformers...) is imported.
"""

from __future__ import annotations

import sys
from typing import Any

from invarlock import __version__
from invarlock.manager import AdapterRecord, get_plugin_manager

ADAPTERS_SCHEMA = "invarlock.plugins.adapters/v1"
PLUGINS_SCHEMA = "invarlock.plugins/v1"

__all__ = ["ADAPTERS_SCHEMA", "PLUGINS_SCHEMA", "adapter_item", "adapters_listing", "plugins_listing"]


def adapter_item(record: AdapterRecord) -> dict[str, Any]:
    """One adapter as the JSON listing shows it (the schema is docs/schemas/plugins-adapters.v1.json)."""
    readiness = record.readiness
    return {
        "name": record.name,
        "group": record.group,
        "role": record.role.value,
        "origin": record.origin,
        "distribution": record.distribution,
        "version": record.version,
        "plugin": record.plugin,
        "backend": list(record.backend),
        "backend_version": readiness.backend_version,
        "snapshot": record.snapshot.value if record.snapshot else None,
        "guards": record.guards.value if record.guards else None,
        "platforms": list(record.platforms),
        "status": readiness.status.value,
        "reason": readiness.reason or None,
        "missing": list(readiness.missing),
        "install": readiness.install,
        "notes": record.notes or None,
    }


def adapters_listing() -> dict[str, Any]:
    return {
        "schema": ADAPTERS_SCHEMA,
        "invarlock_core": __version__,
        "platform": sys.platform,
        "adapters": [adapter_item(r) for r in get_plugin_manager().adapter_records()],
    }


def plugins_listing() -> dict[str, Any]:
    return {
        "schema": PLUGINS_SCHEMA,
        "invarlock_core": __version__,
        "plugins": [
            {
                "name": r.name,
                "distribution": r.distribution,
                "version": r.version,
                "status": r.status,
                "error": r.error,
                "hooks": list(r.hooks),
                "adapters": list(r.adapters),
                "faults": [{"hook": f.hook, "error": f.error} for f in r.faults],
            }
            for r in sorted(get_plugin_manager().plugin_records.values(), key=lambda r: r.name)
        ],
    }
