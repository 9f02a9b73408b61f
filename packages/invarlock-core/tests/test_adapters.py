"""The adapter API: class names from the catalogue, and every method going through the hooks."""

from __future__ import annotations

import json
import os
import types
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest

import invarlock.adapters
from invarlock import hookimpl
from invarlock.adapters import Adapter, get_adapter, resolve_adapter
from invarlock.catalogue import FIRST_PARTY
from invarlock.errors import (
    AdapterNotFoundError,
    DependencyMissingError,
    DescriptionError,
    NetworkDisabledError,
    PluginHookError,
    SnapshotMismatchError,
    UnsupportedOperationError,
)
from invarlock.manager import PluginFaultWarning, get_plugin_manager
from invarlock.types import AdapterSpec, Resolution, Role, SnapshotSupport


def installed(distribution: str) -> bool:
    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


class ToyModel:
    """A model object only the toy plugin recognises."""

    def __init__(self, model_id: str, options: dict[str, Any]) -> None:
        self.model_id = model_id
        self.options = options
        self.hub_offline_during_load = os.environ.get("HF_HUB_OFFLINE")


def toy_description(model: ToyModel) -> dict[str, Any]:
    return {
        "model_type": "toy",
        "model_class": "ToyModel",
        "role": "causal",
        "architecture_known": True,
        "n_layer": 1,
        "heads_per_layer": [2],
        "kv_heads_per_layer": [2],
        "mlp_dims": [8],
        "hidden_size": 4,
        "vocab_size": 10,
        "n_params": 100,
        "dtype": "float32",
        "device": "cpu",
        "device_map": None,
        "tying": {},
        "encoder_decoder": None,
        "moe": None,
        "quantization": None,
    }


class ToyAdapter(Adapter):
    name = "toy"


class FrozenToyAdapter(Adapter):
    name = "frozen_toy"


class ToyPlugin:
    """An in-process plugin: loads ToyModels, describes them, refuses to load from the hub."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def invarlock_register_adapters(self) -> list[AdapterSpec]:
        return [
            AdapterSpec("toy", Role.CAUSAL, ToyAdapter),
            AdapterSpec("frozen_toy", Role.CAUSAL, FrozenToyAdapter, snapshot=SnapshotSupport.NO),
        ]

    @hookimpl
    def invarlock_load_model(self, adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any:
        if adapter not in ("toy", "frozen_toy"):
            return None
        if not Path(model_id).is_dir():
            raise OSError(f"{model_id} is not a local folder and offline mode is on")  # as the hub does
        return ToyModel(model_id, options)

    @hookimpl
    def invarlock_describe(self, model: Any) -> Any:
        if not isinstance(model, ToyModel):
            return None
        if model.options.get("broken_description"):
            return {**toy_description(model), "n_layer": "one"}
        return toy_description(model)

    @hookimpl
    def invarlock_snapshot(self, model: Any, include: Any, same_device: bool) -> Any:
        self.calls.append("snapshot")
        return {"weights": 1} if isinstance(model, ToyModel) else None

    @hookimpl
    def invarlock_resolve_adapter(self, model_id: str) -> Resolution | None:
        return Resolution("toy", "it is a toy") if model_id.endswith(".toy") else None


class QuantizationWrapper:
    """Adds a quantization block to another plugin's description, as a quantization plugin does."""

    @hookimpl(wrapper=True)
    def invarlock_describe(self, model: Any) -> Any:
        description = yield
        if description is not None and model.options.get("quantized"):
            description["quantization"] = {"method": "toyquant", "bits": 4}
        return description


@pytest.fixture
def toy(isolated: None) -> ToyPlugin:
    plugin = ToyPlugin()
    get_plugin_manager().add_plugin(plugin, "toy")
    return plugin


# -- the seed's class names -------------------------------------------------------------------


@pytest.mark.skipif(installed("invarlock-bnb"), reason="invarlock-bnb is installed in this environment")
def test_missing_distribution_import_error_names_the_pip_install() -> None:
    with pytest.raises(ImportError, match="pip install invarlock-bnb") as caught:
        from invarlock.adapters import HF_BNB_Adapter  # noqa: F401
    assert isinstance(caught.value, DependencyMissingError)


def test_every_catalogue_class_name_is_importable_or_names_its_install() -> None:
    for entry in FIRST_PARTY.values():
        if installed(entry.distribution):
            continue
        with pytest.raises(DependencyMissingError, match=f"pip install {entry.distribution}"):
            getattr(invarlock.adapters, entry.class_name)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="HF_Nope_Adapter"):
        invarlock.adapters.HF_Nope_Adapter  # noqa: B018
    assert "HF_Auto_Adapter" in dir(invarlock.adapters)


def test_class_name_resolves_to_the_installed_plugins_class(site: Any) -> None:
    plugin = """
from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, Role

class HF_GPTQ_Adapter(Adapter):
    name = "hf_gptq"

@hookimpl
def invarlock_register_adapters():
    return [AdapterSpec("hf_gptq", Role.CAUSAL, HF_GPTQ_Adapter)]
"""
    site.add_distribution("invarlock-gptq", "9.9", plugins={"gptq": plugin})
    from invarlock.adapters import HF_GPTQ_Adapter

    assert HF_GPTQ_Adapter.__module__ == "invarlock_gptq_gptq_plugin"
    assert HF_GPTQ_Adapter().name == "hf_gptq"


# -- loading ----------------------------------------------------------------------------------


def test_load_model_defaults_trust_remote_code_to_false(toy: ToyPlugin, tmp_path: Path) -> None:
    model = ToyAdapter().load_model(tmp_path)
    assert model.options == {"trust_remote_code": False}
    model = ToyAdapter().load_model(tmp_path, trust_remote_code=True, dtype="float16")
    assert model.options == {"trust_remote_code": True, "dtype": "float16"}


def test_load_model_runs_offline_and_restores_the_environment(
    toy: ToyPlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("INVARLOCK_ALLOW_NETWORK", raising=False)
    assert get_adapter("toy").load_model(tmp_path).hub_offline_during_load == "1"
    assert "HF_HUB_OFFLINE" not in os.environ


def test_uncached_hub_id_offline_names_the_network_switch(
    toy: ToyPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INVARLOCK_ALLOW_NETWORK", raising=False)
    with pytest.raises(NetworkDisabledError, match="INVARLOCK_ALLOW_NETWORK=1") as caught:
        get_adapter("toy").load_model("someorg/some-model")
    assert isinstance(caught.value.__cause__, OSError)


def test_with_network_allowed_the_backend_error_is_the_owners_plugin_error(
    toy: ToyPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVARLOCK_ALLOW_NETWORK", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    expected = r"^plugin toy failed in invarlock_load_model \(OSError: "
    with pytest.raises(PluginHookError, match=expected) as caught:
        get_adapter("toy").load_model("someorg/some-model")
    assert isinstance(caught.value.__cause__, OSError)
    assert "\n" not in str(caught.value)


def test_load_model_checks_readiness_first(site: Any) -> None:
    plugin = """
from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, Role

class Needy(Adapter):
    name = "needy"

@hookimpl
def invarlock_register_adapters():
    return [AdapterSpec("needy", Role.CAUSAL, Needy, backend=("absentengine",))]

@hookimpl
def invarlock_load_model(adapter, model_id, device, options):
    raise AssertionError("must not be called")
"""
    site.add_distribution("acme-needy", plugins={"needy": plugin}, requires=["absentengine>=2"])
    with pytest.raises(DependencyMissingError, match='pip install "absentengine>=2"'):
        get_adapter("needy").load_model("anything")


def test_adapter_nobody_answers_for(tmp_path: Path) -> None:
    get_plugin_manager().add_plugin(
        types.SimpleNamespace(
            invarlock_register_adapters=hookimpl(lambda: [AdapterSpec("mute", Role.ANY, Adapter)])
        ),
        "mute",
    )
    with pytest.raises(AdapterNotFoundError, match="no installed plugin answers for adapter mute"):
        get_adapter("mute").load_model(tmp_path)


# -- operations keyed by the model ------------------------------------------------------------


def test_describe_is_validated(toy: ToyPlugin, tmp_path: Path) -> None:
    adapter = get_adapter("toy")
    assert adapter.describe(adapter.load_model(tmp_path))["model_type"] == "toy"
    broken = adapter.load_model(tmp_path, broken_description=True)
    with pytest.raises(DescriptionError, match="'n_layer' is str, expected int"):
        adapter.describe(broken)


def test_wrapper_adds_to_another_plugins_description(toy: ToyPlugin, tmp_path: Path) -> None:
    get_plugin_manager().add_plugin(QuantizationWrapper(), "toyquant")
    adapter = get_adapter("toy")
    assert adapter.describe(adapter.load_model(tmp_path))["quantization"] is None
    quantized = adapter.load_model(tmp_path, quantized=True)
    assert adapter.describe(quantized)["quantization"] == {"method": "toyquant", "bits": 4}


def test_model_nobody_recognises(toy: ToyPlugin) -> None:
    with pytest.raises(AdapterNotFoundError, match=r"builtins\.object"):
        get_adapter("toy").describe(object())


def test_snapshot_operations_go_to_the_plugin_that_recognises_the_model(
    toy: ToyPlugin, tmp_path: Path
) -> None:
    # Operations are keyed by the model, not by the adapter object they are called through: a
    # declared "snapshot: no" is the plugin's promise, held by the conformance kit, not a core gate.
    model = get_adapter("toy").load_model(tmp_path)
    assert get_adapter("frozen_toy").snapshot(model) == {"weights": 1}
    assert toy.calls == ["snapshot"]


def test_snapshot_no_is_refused_by_the_plugin_that_recognises_the_model(
    isolated: None, tmp_path: Path
) -> None:
    # The decision (docs/hooks.md, "Snapshot and restore"): the plugin raises, through any adapter.
    class FrozenPlugin(ToyPlugin):
        @hookimpl
        def invarlock_snapshot(self, model: Any, include: Any, same_device: bool) -> Any:
            if isinstance(model, ToyModel):
                raise UnsupportedOperationError("toy models cannot be snapshotted; run guards eval-only")
            return None

    get_plugin_manager().add_plugin(FrozenPlugin(), "frozen")
    model = get_adapter("frozen_toy").load_model(tmp_path)
    for name in ("frozen_toy", "toy"):
        with pytest.raises(UnsupportedOperationError, match=r"^toy models cannot be snapshotted"):
            get_adapter(name).snapshot(model)


def test_resolve_adapter(toy: ToyPlugin) -> None:
    assert resolve_adapter("model.toy") == Resolution("toy", "it is a toy")
    with pytest.raises(AdapterNotFoundError, match="name an adapter explicitly"):
        resolve_adapter("model.other")


@pytest.mark.skipif(installed("invarlock-hf"), reason="invarlock-hf is installed in this environment")
def test_no_resolver_installed_names_its_install(toy: ToyPlugin) -> None:
    with pytest.raises(AdapterNotFoundError) as caught:
        resolve_adapter("model.other")
    assert str(caught.value) == (
        "no installed plugin can choose an adapter for model.other; hf_auto (invarlock-hf), the "
        "first-party adapter that chooses per checkpoint, is unavailable: invarlock-hf is not installed "
        "(pip install invarlock-hf); or name an adapter explicitly (`invarlock plugins adapters` lists them)"
    )


HF_STAND_IN = """
from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, Resolution, Role

class Auto(Adapter):
    name = "hf_auto"

@hookimpl
def invarlock_register_adapters():
    return [AdapterSpec("hf_auto", Role.ANY, Auto, resolves=True)]

@hookimpl
def invarlock_resolve_adapter(model_id):
    return Resolution("hf_causal", "always")
"""


@pytest.mark.skipif(installed("invarlock-hf"), reason="invarlock-hf is installed in this environment")
def test_with_the_resolver_disabled_the_cli_says_so_instead_of_install(
    site: Any, cli: Any, tmp_path: Path
) -> None:
    site.add_distribution("invarlock-hf", "0.1.0", plugins={"hf": HF_STAND_IN})
    (tmp_path / "base").mkdir()
    (tmp_path / "subject").mkdir()
    env = {**site.env, "INVARLOCK_DISABLE_PLUGINS": "invarlock-hf"}
    done = cli(
        "certify", "--baseline", str(tmp_path / "base"), "--subject", str(tmp_path / "subject"), env=env
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"invarlock: error [adapter_not_found]: no installed plugin can choose an adapter for "
        f"{tmp_path / 'base'}; hf_auto (invarlock-hf), the first-party adapter that chooses per checkpoint, "
        "is unavailable: hf is disabled by INVARLOCK_DISABLE_PLUGINS; remove it from there to use hf_auto; "
        "or name an adapter explicitly (`invarlock plugins adapters` lists them)\n"
    )
    assert "pip install" not in done.stderr


def test_adapter_without_a_name_is_refused() -> None:
    with pytest.raises(AdapterNotFoundError, match="needs a name"):
        Adapter()


# -- isolation at call time -------------------------------------------------------------------
# A fault of a plugin that does not own the request is recorded on it and skipped; a raise of the
# owner is one PluginHookError naming it. The faulty plugins raise for every request, as a plugin
# with a bug does.


class FaultyPlugin:
    """Raises a plain exception from every model-keyed and resolution hook, for every request."""

    @hookimpl
    def invarlock_resolve_adapter(self, model_id: str) -> Resolution | None:
        raise KeyError("architectures")

    @hookimpl
    def invarlock_describe(self, model: Any) -> Any:
        raise AttributeError("'object' has no attribute 'config'")

    @hookimpl
    def invarlock_snapshot(self, model: Any, include: Any, same_device: bool) -> Any:
        raise TypeError("unhashable type: 'list'")


class FaultyAdapter(Adapter):
    name = "faulty_adapter"


class FaultyWithAdapter(FaultyPlugin):
    @hookimpl
    def invarlock_register_adapters(self) -> list[AdapterSpec]:
        return [AdapterSpec("faulty_adapter", Role.CAUSAL, FaultyAdapter)]


class RefusingPlugin:
    """Raises an InvarLock error: a deliberate answer, never skipped."""

    @hookimpl
    def invarlock_restore(self, model: Any, snapshot: Any) -> Any:
        raise SnapshotMismatchError("the snapshot is of another model; take one of this model")


class FaultyWrapper:
    @hookimpl(wrapper=True)
    def invarlock_describe(self, model: Any) -> Any:
        description = yield
        raise ValueError("wrapper bug")
        return description  # pragma: no cover


class OwnerBug(ToyPlugin):
    """The toy plugin with a bug in its own describe."""

    @hookimpl
    def invarlock_describe(self, model: Any) -> Any:
        if not isinstance(model, ToyModel):
            return None
        return {}["n_layer"]


@pytest.fixture
def toy_model(isolated: None, tmp_path: Path) -> ToyModel:
    get_plugin_manager().add_plugin(ToyPlugin(), "toy")
    model: ToyModel = get_adapter("toy").load_model(tmp_path)
    return model


def faulty() -> None:
    get_plugin_manager().add_plugin(FaultyPlugin(), "faulty")  # registered last: asked first


def test_a_fault_for_a_model_the_plugin_does_not_own_is_skipped_and_recorded(toy_model: ToyModel) -> None:
    faulty()
    with pytest.warns(
        PluginFaultWarning, match=r"plugin faulty failed in invarlock_describe \(AttributeError"
    ):
        description = get_adapter("toy").describe(toy_model)
    assert description["model_type"] == "toy"
    faults = get_plugin_manager().plugin_records["faulty"].faults
    assert [(f.hook, f.error) for f in faults] == [
        ("invarlock_describe", "AttributeError: 'object' has no attribute 'config'")
    ]
    assert "test_adapters.py" in faults[0].traceback


def test_a_plugins_fault_is_warned_about_once_and_every_fault_recorded(toy_model: ToyModel) -> None:
    faulty()
    adapter = get_adapter("toy")
    with pytest.warns(PluginFaultWarning):
        adapter.describe(toy_model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        adapter.describe(toy_model)
        assert adapter.snapshot(toy_model) == {"weights": 1}
    faults = get_plugin_manager().plugin_records["faulty"].faults
    assert [f.hook for f in faults] == ["invarlock_describe", "invarlock_describe", "invarlock_snapshot"]


def test_a_fault_in_resolution_lets_the_next_plugin_choose(toy_model: ToyModel) -> None:
    faulty()
    with pytest.warns(PluginFaultWarning, match="invarlock_resolve_adapter"):
        assert resolve_adapter("model.toy") == Resolution("toy", "it is a toy")


def test_the_faulty_plugins_adapters_show_the_fault_in_the_listing(toy_model: ToyModel) -> None:
    manager = get_plugin_manager()
    manager.add_plugin(FaultyWithAdapter(), "faulty")
    with pytest.warns(PluginFaultWarning):
        get_adapter("toy").describe(toy_model)
    rows = {record.name: record for record in manager.adapter_records()}
    assert rows["toy"].readiness.reason == ""
    assert rows["faulty_adapter"].readiness.status.value == "ready"
    assert rows["faulty_adapter"].readiness.reason == (
        "plugin faulty failed 1 time(s) in this process for requests other plugins answered, first in "
        "invarlock_describe (AttributeError: 'object' has no attribute 'config')"
    )


def test_a_raise_from_the_owner_is_one_error_naming_the_plugin(isolated: None, tmp_path: Path) -> None:
    get_plugin_manager().add_plugin(OwnerBug(), "toy")
    faulty()
    adapter = get_adapter("toy")
    model = adapter.load_model(tmp_path)
    with pytest.raises(PluginHookError) as caught:
        adapter.describe(model)
    message = str(caught.value)
    assert caught.value.code == "plugin_hook_failed"
    assert message.startswith("plugin toy failed in invarlock_describe (KeyError: 'n_layer')")
    assert "invarlock plugins --traceback toy" in message
    assert "\n" not in message
    assert isinstance(caught.value.__cause__, KeyError)
    # The faulty plugin was asked first and skipped for the toy model; the owner's raise is not a fault.
    assert get_plugin_manager().plugin_records["toy"].faults == []


def test_a_raise_nobody_else_answers_for_names_the_raising_plugin(toy_model: ToyModel) -> None:
    faulty()
    with pytest.raises(PluginHookError, match=r"^plugin faulty failed in invarlock_describe, and no other"):
        get_adapter("toy").describe(object())


def test_a_wrapper_that_raises_is_never_skipped(toy_model: ToyModel) -> None:
    get_plugin_manager().add_plugin(FaultyWrapper(), "wrapper")
    with pytest.raises(PluginHookError, match=r"^plugin wrapper failed in invarlock_describe \(ValueError"):
        get_adapter("toy").describe(toy_model)


def test_an_invarlock_error_from_a_plugin_is_its_answer(toy_model: ToyModel) -> None:
    get_plugin_manager().add_plugin(RefusingPlugin(), "refusing")
    with pytest.raises(SnapshotMismatchError, match="another model"):
        get_adapter("toy").restore(toy_model, {"weights": 1})
    assert get_plugin_manager().plugin_records["refusing"].faults == []


# -- the command line -----------------------------------------------------------------------------

PRINTS_AT_IMPORT = """
print("hello from a chatty plugin")
from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, Role

class Chatty(Adapter):
    name = "chatty"

@hookimpl
def invarlock_register_adapters():
    print("registering chatty")
    return [AdapterSpec("chatty", Role.CAUSAL, Chatty)]
"""

FAILS_AT_IMPORT = """
def helper():
    raise ImportError("libfoo.so.3: cannot open shared object file")

helper()
"""


def test_a_plugin_that_prints_at_import_leaves_json_clean(site: Any, cli: Any) -> None:
    site.add_distribution("acme-chatty", plugins={"chatty": PRINTS_AT_IMPORT})
    for args in (("plugins", "adapters", "--json"), ("plugins", "--json")):
        done = cli(*args, env=site.env)
        assert done.returncode == 0, done.stderr
        json.loads(done.stdout)
        assert "hello from a chatty plugin" in done.stderr
        assert "registering chatty" in done.stderr


def test_plugins_traceback_shows_the_file_and_line(site: Any, cli: Any) -> None:
    site.add_distribution("acme-fragile", plugins={"fragile": FAILS_AT_IMPORT})
    listed = cli("plugins", env=site.env)
    assert "invarlock plugins --traceback fragile" in listed.stdout
    for name in ("fragile", "acme-fragile"):
        done = cli("plugins", "--traceback", name, env=site.env)
        assert done.returncode == 0, done.stderr
        assert "Traceback (most recent call last)" in done.stdout
        assert 'acme_fragile_fragile_plugin.py", line 3, in helper' in done.stdout
        assert "ImportError: libfoo.so.3: cannot open shared object file" in done.stdout


def test_plugins_traceback_of_an_unknown_plugin(site: Any, cli: Any) -> None:
    done = cli("plugins", "--traceback", "nosuch", env=site.env)
    assert done.returncode == 2
    assert done.stderr.startswith("invarlock: error [plugin_not_found]: no plugin named 'nosuch'")
    assert done.stderr.count("\n") == 1
