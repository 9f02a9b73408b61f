"""The plugin manager: loads ``invarlock`` entry points one at a time and keeps going.

A plugin that fails to import, raises while registering, or implements a hook that does not exist
is recorded with status ``error`` and the host carries on. ``INVARLOCK_DISABLE_PLUGINS=a,b`` (entry
point or distribution names) blocks plugins before they are imported. Two distributions that
register one adapter name make that name an error naming both.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any

import pluggy
from packaging.utils import canonicalize_name

from invarlock import PROJECT_NAME, hookspecs
from invarlock.catalogue import FIRST_PARTY, FIRST_PARTY_DISTRIBUTIONS, GROUPS, CatalogueEntry
from invarlock.errors import (
    AdapterNotFoundError,
    DependencyMissingError,
    PluginConflictError,
    PluginError,
)
from invarlock.readiness import Readiness, Status, check_backend, installed_version, platform_supported
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport

DISABLE_ENV = "INVARLOCK_DISABLE_PLUGINS"
HOOK_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith("invarlock_"))


@dataclass
class PluginRecord:
    """One entry point of the ``invarlock`` group (or a plugin registered in-process)."""

    name: str
    distribution: str | None
    version: str | None
    status: str
    """``loaded``, ``error`` or ``disabled``."""
    error: str | None = None
    hooks: tuple[str, ...] = ()
    adapters: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdapterRecord:
    """One row of ``invarlock plugins adapters``: an adapter and whether it can run here."""

    name: str
    group: str
    role: Role
    origin: str
    """``first-party`` or ``third-party``."""
    distribution: str
    version: str | None
    plugin: str | None
    readiness: Readiness
    backend: tuple[str, ...] = ()
    snapshot: SnapshotSupport | None = None
    guards: GuardSupport | None = None
    platforms: tuple[str, ...] = ()
    notes: str = ""
    spec: AdapterSpec | None = field(default=None, compare=False)


def disabled_plugins() -> frozenset[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return frozenset(canonicalize_name(part) for part in raw.split(",") if part.strip())


def _describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class InvarlockPluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.plugin_records: dict[str, PluginRecord] = {}
        self._specs: dict[str, AdapterSpec] = {}
        self._spec_plugin: dict[str, str] = {}
        self._conflicts: dict[str, tuple[str, ...]] = {}

    # -- loading ------------------------------------------------------------------------------

    def load_entrypoints(self) -> None:
        """Import and register every plugin of the entry-point group, one at a time."""
        disabled = disabled_plugins()
        for ep in sorted(entry_points(group=PROJECT_NAME), key=lambda e: e.name):
            distribution = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in self.plugin_records:
                continue
            names = {canonicalize_name(ep.name)}
            if distribution:
                names.add(canonicalize_name(distribution))
            if names & disabled:
                self.plugin_records[ep.name] = PluginRecord(
                    ep.name, distribution, version, "disabled", f"disabled by {DISABLE_ENV}"
                )
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the host down
                self.plugin_records[ep.name] = PluginRecord(
                    ep.name, distribution, version, "error", _describe_exception(exc)
                )
                continue
            self.add_plugin(module, ep.name, distribution=distribution, version=version)

    def add_plugin(
        self,
        plugin: Any,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginRecord:
        """Register one plugin object and its adapters; failures are recorded, never raised."""
        record = PluginRecord(name, distribution, version, "loaded")
        self.plugin_records[name] = record
        try:
            self._check_hook_names(plugin, name)
            self.register(plugin, name=name)
        except Exception as exc:
            record.status, record.error = "error", _describe_exception(exc)
            return record
        try:
            specs = self._call_registration(plugin, name)
        except Exception as exc:
            self.unregister(plugin)
            record.status, record.error = "error", _describe_exception(exc)
            return record
        record.hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(plugin) or []))
        record.adapters = tuple(spec.name for spec in specs)
        for spec in specs:
            self._add_spec(replace(spec, distribution=distribution or spec.distribution or name), name)
        return record

    @staticmethod
    def _check_hook_names(plugin: Any, name: str) -> None:
        for attr in dir(plugin):
            if attr.startswith("invarlock_") and attr not in HOOK_NAMES and callable(getattr(plugin, attr)):
                close = difflib.get_close_matches(attr, HOOK_NAMES, n=1)
                hint = f"; did you mean {close[0]}?" if close else "; see docs/hooks.md for the hooks"
                raise PluginError(f"plugin {name} defines {attr}, which is not an InvarLock hook{hint}")

    @staticmethod
    def _call_registration(plugin: Any, name: str) -> list[AdapterSpec]:
        register = getattr(plugin, "invarlock_register_adapters", None)
        if register is None:
            return []
        specs = list(register() or [])
        for spec in specs:
            if not isinstance(spec, AdapterSpec):
                raise PluginError(
                    f"plugin {name} returned {type(spec).__name__} from invarlock_register_adapters; "
                    "return invarlock.types.AdapterSpec objects"
                )
        return specs

    def _add_spec(self, spec: AdapterSpec, plugin_name: str) -> None:
        existing = self._specs.get(spec.name)
        if existing is None:
            self._specs[spec.name] = spec
            self._spec_plugin[spec.name] = plugin_name
            return
        claimants = self._conflicts.get(spec.name, (str(existing.distribution),))
        self._conflicts[spec.name] = (*claimants, str(spec.distribution))

    # -- queries ------------------------------------------------------------------------------

    def adapter_spec(self, name: str) -> AdapterSpec:
        """The installed spec for ``name``; raises with what to do when there is none."""
        if name in self._conflicts:
            raise PluginConflictError(self._conflict_message(name))
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        entry = FIRST_PARTY.get(name)
        if entry is not None:
            record = self._plugin_of_distribution(entry.distribution)
            if record is not None and record.status == "disabled":
                raise DependencyMissingError(
                    f"adapter {name} is disabled by {DISABLE_ENV}; remove "
                    f"{record.name} from it to use {name}"
                )
            if record is not None and record.status == "error":
                raise DependencyMissingError(
                    f"adapter {name} is unavailable because plugin {record.name} "
                    f"({entry.distribution}) failed: {record.error}; reinstall it with "
                    f"pip install --force-reinstall {entry.distribution}"
                )
            raise DependencyMissingError(
                f"adapter {name} is provided by {entry.distribution}, which is not installed; "
                f"run: {entry.install_command}"
            )
        known = sorted(set(self._specs) | set(FIRST_PARTY))
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise AdapterNotFoundError(
            f"no adapter named {name!r} is known; {hint}run `invarlock plugins adapters` to list them"
        )

    def require_ready(self, name: str) -> AdapterSpec:
        """The spec for ``name`` if its backend can run here; raises with the fix otherwise."""
        spec = self.adapter_spec(name)
        readiness = check_backend(spec)
        if readiness.status is Status.NEEDS_EXTRA:
            raise DependencyMissingError(
                f"adapter {name} cannot load models: {readiness.reason}; run: {readiness.install}"
            )
        if readiness.status is Status.UNSUPPORTED:
            raise DependencyMissingError(
                f"adapter {name} is unsupported here: {readiness.reason}; choose another adapter "
                "from `invarlock plugins adapters`"
            )
        return spec

    def adapter_records(self) -> list[AdapterRecord]:
        """Every adapter, installed or only known from the first-party catalogue, in listing order."""
        records = [self._installed_record(spec) for spec in self._specs.values()]
        installed = set(self._specs)
        records += [self._catalogue_record(e) for e in FIRST_PARTY.values() if e.adapter not in installed]
        first_party_order = list(FIRST_PARTY)
        records.sort(
            key=lambda r: (
                GROUPS.index(r.group),
                first_party_order.index(r.name) if r.name in FIRST_PARTY else len(first_party_order),
                r.name,
            )
        )
        return records

    def _installed_record(self, spec: AdapterSpec) -> AdapterRecord:
        distribution = str(spec.distribution)
        entry = FIRST_PARTY.get(spec.name)
        first_party = entry is not None and entry.distribution == distribution
        if spec.name in self._conflicts:
            readiness = Readiness(Status.ERROR, self._conflict_message(spec.name))
        else:
            readiness = check_backend(spec)
        plugin = self._spec_plugin.get(spec.name)
        version = self.plugin_records[plugin].version if plugin in self.plugin_records else None
        return AdapterRecord(
            name=spec.name,
            group=entry.group if first_party and entry else GROUPS[-1],
            role=spec.role,
            origin="first-party" if distribution in FIRST_PARTY_DISTRIBUTIONS else "third-party",
            distribution=distribution,
            version=version or installed_version(distribution),
            plugin=plugin,
            readiness=readiness,
            backend=spec.backend,
            snapshot=spec.snapshot,
            guards=spec.guards,
            platforms=spec.platforms,
            notes=spec.notes,
            spec=spec,
        )

    def _catalogue_record(self, entry: CatalogueEntry) -> AdapterRecord:
        plugin = self._plugin_of_distribution(entry.distribution)
        if plugin is not None and plugin.status in ("error", "disabled"):
            status = Status.ERROR if plugin.status == "error" else Status.DISABLED
            readiness = Readiness(status, plugin.error or "")
        elif not platform_supported(entry.platforms):
            readiness = Readiness(
                Status.UNSUPPORTED,
                f"{entry.adapter} runs on {', '.join(entry.platforms)} only (this is {sys.platform})",
            )
        else:
            readiness = Readiness(
                Status.NEEDS_EXTRA,
                f"{entry.distribution} is not installed",
                (entry.distribution,),
                entry.install_command,
            )
        return AdapterRecord(
            name=entry.adapter,
            group=entry.group,
            role=entry.role,
            origin="first-party",
            distribution=entry.distribution,
            version=plugin.version if plugin else None,
            plugin=plugin.name if plugin else None,
            readiness=readiness,
            platforms=entry.platforms,
        )

    def _plugin_of_distribution(self, distribution: str) -> PluginRecord | None:
        wanted = canonicalize_name(distribution)
        for record in self.plugin_records.values():
            if record.distribution and canonicalize_name(record.distribution) == wanted:
                return record
        return None

    def _conflict_message(self, name: str) -> str:
        claimants = " and ".join(self._conflicts[name])
        return f"adapter {name} is registered by both {claimants}; uninstall one of them"


_manager: InvarlockPluginManager | None = None


def get_plugin_manager() -> InvarlockPluginManager:
    """The process-wide plugin manager, with entry points loaded on first use."""
    global _manager
    if _manager is None:
        manager = InvarlockPluginManager()
        manager.load_entrypoints()
        _manager = manager
    return _manager


def reset_plugin_manager(plugins: Iterable[tuple[str, Any]] = ()) -> InvarlockPluginManager:
    """Rebuild the manager from entry points, plus in-process ``(name, plugin)`` pairs (tests)."""
    global _manager
    _manager = None
    manager = get_plugin_manager()
    for name, plugin in plugins:
        manager.add_plugin(plugin, name)
    return manager
