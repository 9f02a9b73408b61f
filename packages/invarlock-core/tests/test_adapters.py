"""The adapter API: class names from the catalogue, and every method going through the hooks."""

from __future__ import annotations

import os
import types
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
)
from invarlock.manager import get_plugin_manager
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


def test_with_network_allowed_the_backend_error_is_unchanged(
    toy: ToyPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVARLOCK_ALLOW_NETWORK", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(OSError, match="someorg/some-model"):
        get_adapter("toy").load_model("someorg/some-model")


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


def test_resolve_adapter(toy: ToyPlugin) -> None:
    assert resolve_adapter("model.toy") == Resolution("toy", "it is a toy")
    with pytest.raises(AdapterNotFoundError, match="name an adapter explicitly"):
        resolve_adapter("model.other")


def test_adapter_without_a_name_is_refused() -> None:
    with pytest.raises(AdapterNotFoundError, match="needs a name"):
        Adapter()
