"""The plugin manager: loads ``invarlock`` entry points one at a time and keeps going.

A plugin that fails to import, raises while registering, or implements a hook that does not exist
is recorded with status ``error`` and the host carries on. ``INVARLOCK_DISABLE_PLUGINS=a,b`` (entry
point or distribution names) blocks plugins before they are imported. Two distributions that
register one adapter name make that name an error naming both. What a plugin prints while it is
imported or registers goes to stderr, so ``--json`` output stays clean.

The hooks are called through :meth:`InvarlockPluginManager.call_first`: a plugin that raises for a
request it does not own (another plugin answers once it is left out) is recorded as a fault on that
plugin, warned about once, and skipped; a raise from the owner becomes one :class:`PluginError`
naming the plugin.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from invarlock import PROJECT_NAME, hookspecs
from invarlock.catalogue import FIRST_PARTY, FIRST_PARTY_DISTRIBUTIONS, GROUPS, CatalogueEntry
from invarlock.errors import (
    AdapterNotFoundError,
    DependencyMissingError,
    InvarlockError,
    PluginConflictError,
    PluginError,
    PluginHookError,
)
from invarlock.readiness import Readiness, Status, check_backend, installed_version, platform_supported
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport

DISABLE_ENV = "INVARLOCK_DISABLE_PLUGINS"
HOOK_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith("invarlock_"))


class PluginFaultWarning(UserWarning):
    """A plugin raised in a hook for a request another plugin answered; it was skipped."""


@dataclass(frozen=True)
class PluginFault:
    """A raise of a plugin's hookimpl for a request it did not own (another plugin answered)."""

    hook: str
    error: str
    """``ExceptionType: message``."""
    traceback: str


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
    traceback: str | None = None
    """The full traceback of ``error`` when it was an exception (``invarlock plugins --traceback``)."""
    faults: list[PluginFault] = field(default_factory=list)
    """Raises at call time for requests another plugin answered (this process only)."""


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
    return frozenset(canonicalize_name(part.strip()) for part in raw.split(",") if part.strip())


def _describe_exception(exc: BaseException) -> str:
    """``Type: message`` on one line (the lines of a multi-line message joined)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _hookimpl_code(function: Any) -> Any:
    return getattr(getattr(function, "__func__", function), "__code__", None)


def _same_distribution(a: str, b: str) -> bool:
    return canonicalize_name(a) == canonicalize_name(b)


def _is_first_party(distribution: str | None) -> bool:
    return distribution is not None and canonicalize_name(distribution) in FIRST_PARTY_DISTRIBUTIONS


def _not_a_hook(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(HOOK_NAMES), n=1)
    if close:
        return f"which is not an InvarLock hook; did you mean {close[0]}?"
    return "which is not an InvarLock hook; docs/hooks.md lists the hooks"


def _spec_problem(spec: Any) -> str | None:
    """Why ``spec`` is not a usable :class:`AdapterSpec`, or None."""
    from invarlock.adapters import Adapter

    if not isinstance(spec, AdapterSpec):
        return f"got {type(spec).__name__}; return invarlock.types.AdapterSpec objects"
    if not isinstance(spec.name, str) or not spec.name.isidentifier():
        return f"name {spec.name!r} must be an identifier such as my_adapter"
    if not isinstance(spec.role, Role):
        return f"{spec.name}: role must be an invarlock.types.Role, not {spec.role!r}"
    if not isinstance(spec.snapshot, SnapshotSupport) or not isinstance(spec.guards, GuardSupport):
        return f"{spec.name}: snapshot and guards must be SnapshotSupport and GuardSupport values"
    if not isinstance(spec.resolves, bool):
        return f"{spec.name}: resolves must be True or False, not {spec.resolves!r}"
    if spec.load_options is not None and not (
        isinstance(spec.load_options, frozenset) and all(isinstance(k, str) for k in spec.load_options)
    ):
        return f"{spec.name}: load_options must be None or a frozenset of strings, not {spec.load_options!r}"
    if not (isinstance(spec.adapter_class, type) and issubclass(spec.adapter_class, Adapter)):
        return f"{spec.name}: adapter_class must be a subclass of invarlock.adapters.Adapter"
    if spec.adapter_class.name not in ("", spec.name):
        return (
            f"{spec.name}: adapter_class {spec.adapter_class.__name__} is named {spec.adapter_class.name!r}"
        )
    for field_name in ("backend", "platforms"):
        value = getattr(spec, field_name)
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            return f"{spec.name}: {field_name} must be a tuple of strings, not {value!r}"
    for backend in spec.backend:
        try:
            plain = Requirement(backend)
        except InvalidRequirement:
            plain = None
        if plain is None or str(plain) != plain.name:
            return (
                f"{spec.name}: backend {backend!r} must be a bare distribution name (bounds go in pyproject)"
            )
    return None


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
        # pluggy asks the last-registered plugin first: registering first-party plugins first lets a
        # third-party plugin answer for its own models before the generic Hugging Face one does.
        ordered = sorted(
            entry_points(group=PROJECT_NAME),
            key=lambda e: (not _is_first_party(e.dist.name if e.dist else None), e.name),
        )
        for ep in ordered:
            distribution = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            clash = self.plugin_records.get(ep.name)
            if clash is not None:
                if clash.distribution != distribution:
                    self._record(
                        PluginRecord(
                            ep.name,
                            distribution,
                            version,
                            "error",
                            f"entry point {ep.name} is also used by {clash.distribution}; "
                            "uninstall one of the two distributions",
                        )
                    )
                continue
            names = {canonicalize_name(ep.name)}
            if distribution:
                names.add(canonicalize_name(distribution))
            if names & disabled:
                self._record(
                    PluginRecord(ep.name, distribution, version, "disabled", f"disabled by {DISABLE_ENV}")
                )
                continue
            try:
                with contextlib.redirect_stdout(sys.stderr):  # a print at import must not corrupt --json
                    module = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must not take the host down
                self._record(
                    PluginRecord(
                        ep.name,
                        distribution,
                        version,
                        "error",
                        _describe_exception(exc),
                        traceback=_traceback_text(exc),
                    )
                )
                continue
            self.add_plugin(module, ep.name, distribution=distribution, version=version)

    def _record(self, record: PluginRecord) -> PluginRecord:
        """Keep ``record``; a second plugin under a taken name is kept beside the first."""
        key = record.name
        if key in self.plugin_records:
            key = f"{record.name} ({record.distribution or 'in-process'})"
        self.plugin_records[key] = record
        return record

    def add_plugin(
        self,
        plugin: Any,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginRecord:
        """Register one plugin object and its adapters; failures are recorded, never raised."""
        if name in self.plugin_records:
            return self._record(
                PluginRecord(
                    name, distribution, version, "error", f"a plugin named {name} is already registered"
                )
            )
        record = self._record(PluginRecord(name, distribution, version, "loaded"))
        try:
            self._check_hook_names(plugin, name)
            self.register(plugin, name=name)
            with contextlib.redirect_stdout(sys.stderr):
                specs = self._call_registration(plugin, name)
        except Exception as exc:
            if self.is_registered(plugin):
                self.unregister(plugin)
            record.status, record.error = "error", _describe_exception(exc)
            if not isinstance(exc, PluginError):  # our own refusals need no traceback
                record.traceback = _traceback_text(exc)
            return record
        record.hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(plugin) or []))
        record.adapters = tuple(spec.name for spec in specs)
        for spec in specs:
            self._add_spec(replace(spec, distribution=distribution or spec.distribution or name), name)
        return record

    def _check_hook_names(self, plugin: Any, name: str) -> None:
        """Refuse a plugin whose hook names are misspelled or that forgot ``@hookimpl``.

        pluggy would register a misspelled hookimpl as a hook nobody calls, and ignore an
        undecorated function silently; either way the adapter would quietly not work.
        """
        for attr in dir(plugin):
            opts = self.parse_hookimpl_opts(plugin, attr)
            if opts is not None:
                hook_name = opts.get("specname") or attr
                if hook_name not in HOOK_NAMES:
                    raise PluginError(f"plugin {name} implements {hook_name}, {_not_a_hook(hook_name)}")
            elif attr.startswith("invarlock_") and callable(getattr(plugin, attr, None)):
                if attr in HOOK_NAMES:
                    raise PluginError(
                        f"plugin {name} defines {attr} without @invarlock.hookimpl, so it would never "
                        "be called; decorate it with @hookimpl"
                    )
                raise PluginError(f"plugin {name} defines {attr}, {_not_a_hook(attr)}")

    @staticmethod
    def _call_registration(plugin: Any, name: str) -> list[AdapterSpec]:
        register = getattr(plugin, "invarlock_register_adapters", None)
        if register is None:
            return []
        returned = register()
        if isinstance(returned, AdapterSpec):
            returned = [returned]
        specs = list(returned or [])
        for spec in specs:
            problem = _spec_problem(spec)
            if problem:
                raise PluginError(
                    f"plugin {name} returned an invalid adapter from invarlock_register_adapters: {problem}"
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

    # -- calling hooks ------------------------------------------------------------------------

    def call_first(self, hook_name: str, *, owner: str | None = None, **kwargs: Any) -> Any:
        """Call a first-result hook so that one plugin's bug cannot answer for another's model.

        An :class:`InvarlockError` from a plugin is its answer and propagates. Any other exception is
        traced to the plugin whose hookimpl raised. If that plugin is ``owner`` (the plugin that
        registered the adapter named in the request), or no other plugin answers once it is left
        out, the raise becomes one :class:`PluginError` naming the plugin. Otherwise the raise is
        recorded on the plugin (:attr:`PluginRecord.faults`, warned about once) and the answer of
        the next plugin is returned.

        :param owner: the plugin that owns the request when it is known: the one that registered the
            adapter named in a load request, or the adapter that loaded the model.
        :returns: the first non-None result, or None when no plugin answers.
        """
        caller = getattr(self.hook, hook_name)
        skipped: list[tuple[str, Exception]] = []
        while True:
            try:
                result = caller(**kwargs)
            except InvarlockError:
                raise
            except Exception as exc:
                culprit, wrapper = self._raising_plugin(hook_name, exc)
                if culprit is None:  # not raised inside a hookimpl (pluggy itself, a bad argument)
                    raise
                if culprit == owner or wrapper:
                    # A wrapper edits every answer: leaving it out would return an answer it meant
                    # to change, so its raise is never skipped.
                    raise self._plugin_failed(culprit, hook_name, exc, "") from exc
                skipped.append((culprit, exc))
                caller = self.subset_hook_caller(hook_name, [self.get_plugin(name) for name, _ in skipped])
                continue
            if skipped and result is None:
                first_culprit, first_error = skipped[0]
                raise self._plugin_failed(
                    first_culprit, hook_name, first_error, ", and no other plugin answers for this request"
                ) from first_error
            for skipped_plugin, error in skipped:
                self._record_fault(skipped_plugin, hook_name, error)
            return result

    def plugin_of_adapter(self, adapter: str) -> str | None:
        """The name of the plugin that registered ``adapter``, if one did."""
        return self._spec_plugin.get(adapter)

    def _raising_plugin(self, hook_name: str, exc: BaseException) -> tuple[str | None, bool]:
        """The plugin whose hookimpl is the innermost one on ``exc``'s traceback, and whether that
        hookimpl is a wrapper."""
        impls = {}
        for impl in getattr(self.hook, hook_name).get_hookimpls():
            code = _hookimpl_code(impl.function)
            if code is not None:
                impls[code] = (impl.plugin_name, bool(impl.wrapper or impl.hookwrapper))
        found: tuple[str | None, bool] = (None, False)
        tb = exc.__traceback__
        while tb is not None:
            found = impls.get(tb.tb_frame.f_code, found)
            tb = tb.tb_next
        return found

    def _plugin_failed(self, plugin: str, hook_name: str, exc: Exception, context: str) -> PluginHookError:
        return PluginHookError(
            f"plugin {plugin}{self._distribution_words(plugin)} failed in {hook_name}{context} "
            f"({_describe_exception(exc)}); report it to the plugin's authors or disable it with "
            f"{DISABLE_ENV}={plugin} (`invarlock plugins --traceback {plugin}` shows where)"
        )

    def _distribution_words(self, plugin: str) -> str:
        record = self.plugin_records.get(plugin)
        return f" ({record.distribution})" if record is not None and record.distribution else ""

    def _record_fault(self, plugin: str, hook_name: str, exc: Exception) -> None:
        record = self.plugin_records.get(plugin)
        if record is None:
            return
        first = not record.faults
        record.faults.append(PluginFault(hook_name, _describe_exception(exc), _traceback_text(exc)))
        if first:
            warnings.warn(
                f"plugin {plugin}{self._distribution_words(plugin)} failed in {hook_name} "
                f"({_describe_exception(exc)}) for a request another plugin answered; it was skipped "
                "(further faults of this plugin are recorded without a warning)",
                PluginFaultWarning,
                stacklevel=3,
            )

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
            readiness = self.catalogue_readiness(entry)
            if readiness.status is Status.ERROR:
                fix = f"fix it or reinstall it: pip install --force-reinstall {entry.distribution}"
            elif readiness.install:
                fix = f"run: {readiness.install}"
            else:
                fix = "choose another adapter from `invarlock plugins adapters`"
            raise DependencyMissingError(f"adapter {name} is unavailable: {readiness.reason}; {fix}")
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
        """Every adapter in listing order: installed ones, first-party ones that are not installed,
        and a row for each third-party plugin that failed to load or is disabled (its adapters are
        unknown, but the listing must show that something is wrong)."""
        records = [self._installed_record(spec) for spec in self._specs.values()]
        installed = set(self._specs)
        records += [self._catalogue_record(e) for e in FIRST_PARTY.values() if e.adapter not in installed]
        records += [
            self._unloaded_plugin_record(plugin)
            for plugin in self.plugin_records.values()
            if plugin.status != "loaded" and not _is_first_party(plugin.distribution)
        ]
        first_party_order = list(FIRST_PARTY)
        records.sort(
            key=lambda r: (
                GROUPS.index(r.group),
                first_party_order.index(r.name) if r.origin == "first-party" else len(first_party_order),
                r.name,
            )
        )
        return records

    def _installed_record(self, spec: AdapterSpec) -> AdapterRecord:
        distribution = str(spec.distribution)
        entry = FIRST_PARTY.get(spec.name)
        first_party = entry is not None and _same_distribution(entry.distribution, distribution)
        plugin = self._spec_plugin.get(spec.name)
        if spec.name in self._conflicts:
            readiness = Readiness(Status.ERROR, self._conflict_message(spec.name))
        else:
            readiness = check_backend(spec)
            faults = self.plugin_records[plugin].faults if plugin in self.plugin_records else []
            if faults:
                note = (
                    f"plugin {plugin} failed {len(faults)} time(s) in this process for requests other "
                    f"plugins answered, first in {faults[0].hook} ({faults[0].error})"
                )
                readiness = replace(readiness, reason="; ".join(filter(None, (readiness.reason, note))))
        version = self.plugin_records[plugin].version if plugin in self.plugin_records else None
        return AdapterRecord(
            name=spec.name,
            group=entry.group if first_party and entry else GROUPS[-1],
            role=spec.role,
            origin="first-party" if first_party else "third-party",
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

    def installed_adapters(self) -> frozenset[str]:
        """Names of the adapters loaded plugins registered (conflicting ones included)."""
        return frozenset(self._specs)

    def catalogue_readiness(self, entry: CatalogueEntry) -> Readiness:
        """Why a first-party adapter that no loaded plugin provides cannot be used, and the fix."""
        plugin = self._plugin_of_distribution(entry.distribution)
        if plugin is not None and plugin.status == "disabled":
            return Readiness(
                Status.DISABLED,
                f"{plugin.name} is disabled by {DISABLE_ENV}; remove it from there to use {entry.adapter}",
            )
        if plugin is not None and plugin.status == "error":
            return Readiness(
                Status.ERROR, f"plugin {plugin.name} ({entry.distribution}) failed: {plugin.error}"
            )
        if not platform_supported(entry.platforms):
            return Readiness(
                Status.UNSUPPORTED,
                f"{entry.adapter} runs on {', '.join(entry.platforms)} only (this is {sys.platform})",
            )
        if plugin is not None:  # installed and loaded, but a version that predates this adapter
            installed = f"{entry.distribution} {plugin.version}" if plugin.version else entry.distribution
            return Readiness(
                Status.NEEDS_EXTRA,
                f"{installed} does not provide {entry.adapter}",
                (entry.distribution,),
                f"pip install --upgrade {entry.distribution}",
            )
        return Readiness(
            Status.NEEDS_EXTRA,
            f"{entry.distribution} is not installed",
            (entry.distribution,),
            entry.install_command,
        )

    def _catalogue_record(self, entry: CatalogueEntry) -> AdapterRecord:
        plugin = self._plugin_of_distribution(entry.distribution)
        return AdapterRecord(
            name=entry.adapter,
            group=entry.group,
            role=entry.role,
            origin="first-party",
            distribution=entry.distribution,
            version=plugin.version if plugin else None,
            plugin=plugin.name if plugin else None,
            readiness=self.catalogue_readiness(entry),
            platforms=entry.platforms,
        )

    def _unloaded_plugin_record(self, plugin: PluginRecord) -> AdapterRecord:
        distribution = plugin.distribution or plugin.name
        if plugin.status == "disabled":
            readiness = Readiness(Status.DISABLED, f"plugin {plugin.name} is disabled by {DISABLE_ENV}")
        else:
            readiness = Readiness(
                Status.ERROR,
                f"plugin {plugin.name} ({distribution}) failed, so its adapters are unavailable: "
                f"{plugin.error}; fix it or run: pip uninstall {distribution}",
            )
        return AdapterRecord(
            name=plugin.name,
            group=GROUPS[-1],
            role=Role.ANY,
            origin="third-party",
            distribution=distribution,
            version=plugin.version,
            plugin=plugin.name,
            readiness=readiness,
            notes="a plugin that did not load; the adapters it provides are unknown",
        )

    def _plugin_of_distribution(self, distribution: str) -> PluginRecord | None:
        for record in self.plugin_records.values():
            if record.distribution and _same_distribution(record.distribution, distribution):
                return record
        return None

    def _conflict_message(self, name: str) -> str:
        claimants = self._conflicts[name]
        if len(set(claimants)) == 1:
            return f"adapter {name} is registered twice by {claimants[0]}; reinstall it"
        return f"adapter {name} is registered by both {' and '.join(claimants)}; uninstall one of them"


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
