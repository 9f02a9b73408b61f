"""The core conformance kit, run for each of the four adapters on a tiny model of every family."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from invarlock.testing import AdapterConformance
from invarlock_hf.plugin import AUTO_CLASSES
from invarlock_hf.testing import AUTO_CLASS, CAUSAL_FAMILIES, MASKED_LM_FAMILIES, SEQ2SEQ_FAMILIES

ADAPTER_OF_AUTO_CLASS = {auto_class: adapter for adapter, auto_class in AUTO_CLASSES.items()}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    families = getattr(metafunc.cls, "families", None)
    if families and "family" in metafunc.fixturenames:
        metafunc.parametrize("family", families, scope="class")


class _OnEveryFamily(AdapterConformance):
    families: ClassVar[tuple[str, ...]]

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls, family: str, checkpoints: Any) -> str:
        return str(checkpoints.path(family))

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls, family: str, checkpoints: Any) -> str:
        """The same family with another vocabulary size: same tensor names, other shapes."""
        return str(checkpoints.path(family, variant=True))

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls, gpt2_with_tokenizer: str) -> str:
        return gpt2_with_tokenizer

    @pytest.fixture(scope="class")
    @classmethod
    def expected_resolution(cls, family: str) -> str:
        """auto picks the adapter of the family's model class (hf_auto itself is never the answer)."""
        return ADAPTER_OF_AUTO_CLASS[AUTO_CLASS[family]]


class TestHFCausal(_OnEveryFamily):
    adapter_name = "hf_causal"
    families = CAUSAL_FAMILIES


class TestHFMLM(_OnEveryFamily):
    adapter_name = "hf_mlm"
    families = MASKED_LM_FAMILIES


class TestHFSeq2Seq(_OnEveryFamily):
    adapter_name = "hf_seq2seq"
    families = SEQ2SEQ_FAMILIES


class TestHFAuto(_OnEveryFamily):
    adapter_name = "hf_auto"
    families = CAUSAL_FAMILIES + MASKED_LM_FAMILIES + SEQ2SEQ_FAMILIES


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
class TestHFCausalOnCUDA(_OnEveryFamily):
    """The kit on CUDA: same_device snapshots stay on the GPU, logits come back to the CPU."""

    adapter_name = "hf_causal"
    families = ("gpt2", "llama", "qwen2_moe")
    device = "cuda"
    # cuBLAS may pick another float32 kernel for another batch size (TF32 stays off by default).
    batch_invariance_atol = 1e-5
