"""The first-party adapters core knows by name, so a missing one is listed with its install command.

Everything else about an adapter (backend, capabilities, notes) comes from the plugin's own
:class:`~invarlock.types.AdapterSpec` once its distribution is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from invarlock.types import Role

GROUPS = ("Hugging Face (PyTorch)", "Quantized", "Inference-only", "Third-party")
"""Listing order of adapter groups, as in the capability matrix."""


@dataclass(frozen=True)
class CatalogueEntry:
    adapter: str
    class_name: str
    distribution: str
    role: Role
    group: str
    platforms: tuple[str, ...] = ()

    @property
    def entry_point(self) -> str:
        """The entry-point name of the distribution's plugin (``invarlock-bnb`` → ``bnb``)."""
        return self.distribution.removeprefix("invarlock-")

    @property
    def install_command(self) -> str:
        return f"pip install {self.distribution}"


_HF, _QUANT, _INFER = GROUPS[0], GROUPS[1], GROUPS[2]
_LINUX = ("linux",)

FIRST_PARTY: dict[str, CatalogueEntry] = {
    entry.adapter: entry
    for entry in (
        CatalogueEntry("hf_causal", "HF_Causal_Adapter", "invarlock-hf", Role.CAUSAL, _HF),
        CatalogueEntry("hf_mlm", "HF_MLM_Adapter", "invarlock-hf", Role.MASKED_LM, _HF),
        CatalogueEntry("hf_seq2seq", "HF_Seq2Seq_Adapter", "invarlock-hf", Role.SEQ2SEQ, _HF),
        CatalogueEntry("hf_auto", "HF_Auto_Adapter", "invarlock-hf", Role.ANY, _HF),
        CatalogueEntry("hf_peft", "HF_PEFT_Adapter", "invarlock-peft", Role.ANY, _HF),
        CatalogueEntry("hf_bnb", "HF_BNB_Adapter", "invarlock-bnb", Role.CAUSAL, _QUANT, _LINUX),
        CatalogueEntry("hf_awq", "HF_AWQ_Adapter", "invarlock-awq", Role.CAUSAL, _QUANT, _LINUX),
        CatalogueEntry("hf_gptq", "HF_GPTQ_Adapter", "invarlock-gptq", Role.CAUSAL, _QUANT, _LINUX),
        CatalogueEntry("hf_compressed", "HF_Compressed_Adapter", "invarlock-compressed", Role.CAUSAL, _QUANT),
        CatalogueEntry("hf_causal_onnx", "HF_Causal_ONNX_Adapter", "invarlock-onnx", Role.CAUSAL, _INFER),
        CatalogueEntry("gguf", "GGUF_Adapter", "invarlock-gguf", Role.CAUSAL, _INFER),
    )
}

BY_CLASS_NAME: dict[str, CatalogueEntry] = {e.class_name: e for e in FIRST_PARTY.values()}
FIRST_PARTY_DISTRIBUTIONS = frozenset(e.distribution for e in FIRST_PARTY.values())
