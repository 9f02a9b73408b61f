"""A third-party adapter written with hookimpls only, installed next to invarlock-core.

The sample distribution lives in plugins/invarlock-tinylinear (tests-integration/requirements.txt
installs it, and the broken sample next to it). It must show up as a third-party adapter and pass
the same conformance kit as the first-party adapters (which covers loading, resolution, logits,
snapshots and every refusal); what is left here is what only this plugin can know.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from invarlock_tinylinear.config import TinyLinearConfig
from invarlock_tinylinear.model import TinyLinearLM, save_pretrained

from invarlock.adapters import get_adapter
from invarlock.testing import AdapterConformance


def build_checkpoint(directory: Path, seed: int, **config: Any) -> str:
    torch.manual_seed(seed)
    return str(save_pretrained(TinyLinearLM(TinyLinearConfig(**config)), directory))


def listing() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "invarlock.cli", "plugins", "adapters", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


class TestTinyLinearConformance(AdapterConformance):
    adapter_name = "tinylinear"

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, tmp_path_factory: pytest.TempPathFactory) -> str:
        return build_checkpoint(tmp_path_factory.mktemp("tiny"), seed=0)

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, tmp_path_factory: pytest.TempPathFactory) -> str:
        return build_checkpoint(tmp_path_factory.mktemp("other"), seed=1, hidden_size=48, n_layer=3)


def test_listed_as_third_party_and_ready() -> None:
    items = {item["name"]: item for item in listing()["adapters"]}
    tiny = items["tinylinear"]
    assert tiny["origin"] == "third-party"
    assert tiny["group"] == "Third-party"
    assert tiny["distribution"] == "invarlock-tinylinear"
    assert tiny["version"] == "0.1.0"
    assert tiny["status"] == "ready", tiny["reason"]
    assert tiny["backend"] == ["torch", "safetensors"]
    assert tiny["backend_version"] == torch.__version__


def test_logits_through_the_adapter_match_the_model(tmp_path: Path) -> None:
    adapter = get_adapter("tinylinear")
    model = adapter.load_model(build_checkpoint(tmp_path, seed=0))
    input_ids = torch.tensor([[1, 2, 3, 4]])
    logits = adapter.logits(model, {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)})
    assert torch.equal(logits, model(input_ids))
