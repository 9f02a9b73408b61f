"""InvarLock adapter for GPTQ quantized causal language models (``hf_gptq``), run by gptqmodel.

What GPTQ shares with AWQ (invarlock-awq) lives in invarlock-packed; this package states what is
GPTQ's own (:mod:`invarlock_gptq.family`).
"""
