"""InvarLock adapter for AWQ quantized causal language models (``hf_awq``), run by gptqmodel.

Loading, checking and describing are shared with invarlock-gptq through invarlock-packed (both
formats are packed integer tensors loaded through transformers and gptqmodel); this package states
what is AWQ's own (:mod:`invarlock_awq.family`).
"""
