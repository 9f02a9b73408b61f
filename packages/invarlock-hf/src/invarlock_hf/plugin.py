"""The invarlock-hf plugin: registers hf_causal, hf_mlm, hf_seq2seq and hf_auto.

Imports nothing heavy: torch and transformers are imported inside the hookimpls.
"""

from __future__ import annotations

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, Role

BACKEND = ("transformers", "torch")


class HF_Causal_Adapter(Adapter):
    name = "hf_causal"


class HF_MLM_Adapter(Adapter):
    name = "hf_mlm"


class HF_Seq2Seq_Adapter(Adapter):
    name = "hf_seq2seq"


class HF_Auto_Adapter(Adapter):
    name = "hf_auto"


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec("hf_causal", Role.CAUSAL, HF_Causal_Adapter, BACKEND, notes="AutoModelForCausalLM"),
        AdapterSpec("hf_mlm", Role.MASKED_LM, HF_MLM_Adapter, BACKEND, notes="AutoModelForMaskedLM"),
        AdapterSpec("hf_seq2seq", Role.SEQ2SEQ, HF_Seq2Seq_Adapter, BACKEND, notes="AutoModelForSeq2SeqLM"),
        AdapterSpec(
            "hf_auto", Role.ANY, HF_Auto_Adapter, BACKEND, notes="picks the adapter from the checkpoint"
        ),
    ]
