"""The core conformance kit, run on gguf (inference-only: snapshots declared unsupported)."""

from __future__ import annotations

from typing import Any

import pytest

from invarlock.testing import AdapterConformance


class TestGGUFConformance(AdapterConformance):
    adapter_name = "gguf"

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, gguf_files: Any) -> str:
        return str(gguf_files["Q8_0"])

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, other_gguf: Any) -> str:
        return str(other_gguf)

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls, gguf_files: Any) -> str:
        return str(gguf_files["Q8_0"])
