"""The core conformance kit, run on hf_causal_onnx (snapshots declared unsupported)."""

from __future__ import annotations

from typing import Any

import pytest

from invarlock.testing import AdapterConformance


class TestHFCausalONNXConformance(AdapterConformance):
    adapter_name = "hf_causal_onnx"

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, exported: Any) -> str:
        return str(exported["gpt2"].onnx)

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, exported: Any) -> str:
        return str(exported["llama"].onnx)

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls, exported: Any) -> str:
        return str(exported["gpt2"].onnx)
