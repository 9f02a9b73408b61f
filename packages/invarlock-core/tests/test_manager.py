"""The plugin manager: one plugin at a time, failures recorded and never raised."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from invarlock import hookimpl
from invarlock.adapters import Adapter, get_adapter
from invarlock.errors import AdapterNotFoundError, DependencyMissingError, PluginConflictError
from invarlock.manager import InvarlockPluginManager, get_plugin_manager
from invarlock.types import AdapterSpec, Role


def adapter_plugin(adapter: str, extra: str = "", backend: tuple[str, ...] = ()) -> str:
    """Source of a plugin module registering ``adapter``."""
    return f"""
from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, Role

class ThisAdapter(Adapter):
    name = {adapter!r}

@hookimpl
def invarlock_register_adapters():
    return [AdapterSpec({adapter!r}, Role.CAUSAL, ThisAdapter, backend={backend!r})]
{extra}
"""


def records_by_name(manager: InvarlockPluginManager) -> dict[str, Any]:
    return {record.name: record for record in manager.plugin_records.values()}


def adapter_rows(manager: InvarlockPluginManager) -> dict[str, Any]:
    return {record.name: record for record in manager.adapter_records()}


# -- error isolation --------------------------------------------------------------------------


def test_plugin_that_fails_to_import_is_an_error_and_the_rest_load(site: Any) -> None:
    site.add_distribution("invarlock-bad", plugins={"bad": "raise ValueError('boom at import')\n"})
    site.add_distribution("invarlock-good", plugins={"good": adapter_plugin("good_adapter")})
    manager = get_plugin_manager()
    records = records_by_name(manager)
    assert records["bad"].status == "error"
    assert records["bad"].error == "ValueError: boom at import"
    assert records["bad"].distribution == "invarlock-bad"
    assert records["good"].status == "loaded"
    assert isinstance(get_adapter("good_adapter"), Adapter)
    bad_row = adapter_rows(manager)["bad"]
    assert bad_row.readiness.status.value == "error"
    assert "boom at import" in bad_row.readiness.reason
    assert "pip uninstall invarlock-bad" in bad_row.readiness.reason


def test_plugin_that_exits_at_import_does_not_take_the_host_down(site: Any) -> None:
    site.add_distribution("invarlock-exits", plugins={"exits": "raise SystemExit(3)\n"})
    assert records_by_name(get_plugin_manager())["exits"].status == "error"


def test_plugin_that_raises_while_registering_is_unregistered(site: Any) -> None:
    source = """
from invarlock import hookimpl

@hookimpl
def invarlock_register_adapters():
    raise RuntimeError("cannot register")

@hookimpl
def invarlock_describe(model):
    return {"answered": "by a plugin that failed"}
"""
    site.add_distribution("invarlock-raises", plugins={"raises": source})
    manager = get_plugin_manager()
    record = records_by_name(manager)["raises"]
    assert record.status == "error"
    assert record.error == "RuntimeError: cannot register"
    assert manager.hook.invarlock_describe(model=object()) is None


def test_hookimpl_with_a_parameter_the_spec_lacks_is_an_error() -> None:
    plugin = types.SimpleNamespace(invarlock_describe=hookimpl(lambda model, verbose: None))
    record = InvarlockPluginManager().add_plugin(plugin, "wrong-args")
    assert record.status == "error"
    assert "verbose" in str(record.error)


def test_same_plugin_name_twice_keeps_the_first() -> None:
    manager = InvarlockPluginManager()
    first = manager.add_plugin(types.SimpleNamespace(), "twin")
    second = manager.add_plugin(types.SimpleNamespace(), "twin")
    assert first.status == "loaded"
    assert second.status == "error"
    assert "already registered" in str(second.error)
    assert manager.plugin_records["twin"] is first


def test_entry_point_name_used_by_two_distributions(site: Any) -> None:
    site.add_distribution("invarlock-one", plugins={"same": adapter_plugin("adapter_one")})
    site.add_distribution("invarlock-two", plugins={"same": adapter_plugin("adapter_two")})
    records = list(get_plugin_manager().plugin_records.values())
    same = [r for r in records if r.name == "same"]
    assert sorted(r.status for r in same) == ["error", "loaded"]
    error = next(r for r in same if r.status == "error")
    assert "also used by" in str(error.error)


# -- disabling --------------------------------------------------------------------------------


@pytest.mark.parametrize("disable", ["noisy", "invarlock-noisy", "invarlock_noisy", "other, noisy"])
def test_disabled_plugin_is_never_imported(site: Any, monkeypatch: pytest.MonkeyPatch, disable: str) -> None:
    site.add_distribution("invarlock-noisy", plugins={"noisy": "raise AssertionError('imported')\n"})
    monkeypatch.setenv("INVARLOCK_DISABLE_PLUGINS", disable)
    record = records_by_name(get_plugin_manager())["noisy"]
    assert record.status == "disabled"
    assert "INVARLOCK_DISABLE_PLUGINS" in str(record.error)
    assert "invarlock_noisy_noisy_plugin" not in sys.modules
    row = adapter_rows(get_plugin_manager())["noisy"]
    assert row.readiness.status.value == "disabled"


def test_disabling_a_first_party_distribution_disables_its_adapters(
    site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.add_distribution("invarlock-bnb", "9.0", plugins={"bnb": adapter_plugin("hf_bnb")})
    monkeypatch.setenv("INVARLOCK_DISABLE_PLUGINS", "invarlock-bnb")
    row = adapter_rows(get_plugin_manager())["hf_bnb"]
    assert row.readiness.status.value == "disabled"
    with pytest.raises(DependencyMissingError, match="INVARLOCK_DISABLE_PLUGINS"):
        get_adapter("hf_bnb")


# -- conflicts --------------------------------------------------------------------------------


def test_two_distributions_with_one_adapter_name(site: Any) -> None:
    site.add_distribution("invarlock-first", plugins={"first": adapter_plugin("shared_name")})
    site.add_distribution("invarlock-second", plugins={"second": adapter_plugin("shared_name")})
    manager = get_plugin_manager()
    row = adapter_rows(manager)["shared_name"]
    assert row.readiness.status.value == "error"
    assert "invarlock-first" in row.readiness.reason
    assert "invarlock-second" in row.readiness.reason
    with pytest.raises(PluginConflictError, match="invarlock-first and invarlock-second"):
        get_adapter("shared_name")


# -- misspelled and malformed hookimpls -------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from invarlock import hookimpl\n@hookimpl\ndef invarlock_descibe(model):\n    return None\n",
            "did you mean invarlock_describe?",
        ),
        (
            "from invarlock import hookimpl\n@hookimpl\ndef invarlok_snapshot(model, include, same_device):\n"
            "    return None\n",
            "did you mean invarlock_snapshot?",
        ),
        (
            "from invarlock import hookimpl\n@hookimpl(specname='invarlock_restor')\n"
            "def restore(model, snapshot):\n    return None\n",
            "did you mean invarlock_restore?",
        ),
        (
            "def invarlock_load_modle(adapter, model_id, device, options):\n    return None\n",
            "invarlock_load_model",
        ),
        ("def invarlock_describe(model):\n    return None\n", "without @invarlock.hookimpl"),
    ],
    ids=["typo", "prefix-typo", "specname-typo", "undecorated-typo", "undecorated"],
)
def test_misspelled_hookimpls_are_caught(site: Any, source: str, expected: str) -> None:
    site.add_distribution("invarlock-typo", plugins={"typo": source})
    record = records_by_name(get_plugin_manager())["typo"]
    assert record.status == "error"
    assert expected in str(record.error)


class NotAnAdapter:
    name = "plain"


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ({"name": "dict_adapter"}, "return invarlock.types.AdapterSpec objects"),
        (AdapterSpec("has space", Role.CAUSAL, Adapter), "must be an identifier"),
        (AdapterSpec("string_role", "causal", Adapter), "role must be an invarlock.types.Role"),  # type: ignore[arg-type]
        (AdapterSpec("not_adapter", Role.CAUSAL, NotAnAdapter), "subclass of invarlock.adapters.Adapter"),  # type: ignore[arg-type]
        (AdapterSpec("str_backend", Role.CAUSAL, Adapter, backend="torch"), "tuple of strings"),  # type: ignore[arg-type]
        (AdapterSpec("bounded", Role.CAUSAL, Adapter, backend=("torch>=2",)), "bare distribution name"),
        (AdapterSpec("keys", Role.CAUSAL, Adapter, load_options={"dtype"}), "frozenset of strings"),  # type: ignore[arg-type]
    ],
    ids=["dict", "name", "role", "class", "backend-str", "backend-bounds", "load-options-set"],
)
def test_invalid_adapter_specs_make_the_plugin_an_error(returned: Any, expected: str) -> None:
    plugin = types.SimpleNamespace(invarlock_register_adapters=hookimpl(lambda: [returned]))
    manager = InvarlockPluginManager()
    record = manager.add_plugin(plugin, "invalid")
    assert record.status == "error"
    assert expected in str(record.error)
    assert not manager.is_registered(plugin)


def test_adapter_class_named_for_another_adapter_is_refused() -> None:
    class Named(Adapter):
        name = "other_name"

    plugin = types.SimpleNamespace(
        invarlock_register_adapters=hookimpl(lambda: [AdapterSpec("this_name", Role.CAUSAL, Named)])
    )
    record = InvarlockPluginManager().add_plugin(plugin, "misnamed")
    assert record.status == "error"
    assert "'other_name'" in str(record.error)


def test_a_single_spec_instead_of_a_list_is_accepted() -> None:
    class Single(Adapter):
        name = "single"

    plugin = types.SimpleNamespace(
        invarlock_register_adapters=hookimpl(lambda: AdapterSpec("single", Role.CAUSAL, Single))
    )
    manager = InvarlockPluginManager()
    assert manager.add_plugin(plugin, "single").adapters == ("single",)
    assert manager.adapter_spec("single").adapter_class is Single


# -- lookups ----------------------------------------------------------------------------------


def test_unknown_adapter_suggests_a_close_name() -> None:
    with pytest.raises(AdapterNotFoundError, match="did you mean hf_causal"):
        get_adapter("hf_casual")


def test_in_process_plugin_is_third_party_and_its_distribution_need_not_exist() -> None:
    class Local(Adapter):
        name = "local_adapter"

    plugin = types.SimpleNamespace(
        invarlock_register_adapters=hookimpl(lambda: [AdapterSpec("local_adapter", Role.ANY, Local)])
    )
    manager = get_plugin_manager()
    manager.add_plugin(plugin, "local")
    row = adapter_rows(manager)["local_adapter"]
    assert row.origin == "third-party"
    assert row.group == "Third-party"
    assert row.distribution == "local"
    assert row.readiness.status.value == "ready"


def test_loaded_first_party_distribution_without_the_adapter_says_upgrade(site: Any) -> None:
    site.add_distribution("invarlock-onnx", "0.0.1", plugins={"onnx": "x = 1\n"})
    row = adapter_rows(get_plugin_manager())["hf_causal_onnx"]
    assert row.readiness.status.value == "needs_extra"
    assert row.readiness.install == "pip install --upgrade invarlock-onnx"
    assert row.readiness.reason == "invarlock-onnx 0.0.1 does not provide hf_causal_onnx"


def test_first_party_plugin_that_fails_makes_its_adapters_errors(site: Any) -> None:
    site.add_distribution("invarlock-awq", "9.0", plugins={"awq": "import no_such_module_anywhere\n"})
    manager = get_plugin_manager()
    rows = adapter_rows(manager)
    assert rows["hf_awq"].readiness.status.value == "error"
    assert "No module named 'no_such_module_anywhere'" in rows["hf_awq"].readiness.reason
    assert "awq" not in rows, (
        "a first-party plugin's failure shows on its adapters' rows, not a row of its own"
    )
    with pytest.raises(DependencyMissingError, match="pip install --force-reinstall invarlock-awq"):
        get_adapter("hf_awq")


def test_first_party_adapter_from_its_own_distribution_is_grouped_as_first_party(site: Any) -> None:
    site.add_distribution("invarlock-bnb", "9.0", plugins={"bnb": adapter_plugin("hf_bnb")})
    row = adapter_rows(get_plugin_manager())["hf_bnb"]
    assert (row.origin, row.group, row.version, row.plugin) == ("first-party", "Quantized", "9.0", "bnb")


def test_first_party_name_from_another_distribution_is_third_party(site: Any) -> None:
    site.add_distribution("acme-adapters", plugins={"acme": adapter_plugin("hf_awq")})
    row = adapter_rows(get_plugin_manager())["hf_awq"]
    assert (row.origin, row.group, row.distribution) == ("third-party", "Third-party", "acme-adapters")


def test_third_party_plugins_are_asked_before_first_party_ones(site: Any) -> None:
    answer = (
        "from invarlock import hookimpl\n"
        "@hookimpl\n"
        "def invarlock_describe(model):\n"
        "    return {{'by': {by!r}}}\n"
    )
    site.add_distribution("invarlock-onnx", "9.0", plugins={"onnx": answer.format(by="first-party")})
    site.add_distribution("zz-vendor", plugins={"zz": answer.format(by="third-party")})
    assert get_plugin_manager().hook.invarlock_describe(model=object()) == {"by": "third-party"}
