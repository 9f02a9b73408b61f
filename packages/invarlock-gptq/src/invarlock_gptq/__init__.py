"""InvarLock adapter for GPTQ quantized causal language models (``hf_gptq``), run by gptqmodel.

Also home of what GPTQ and AWQ (invarlock-awq) share: both are packed-integer formats loaded
through transformers and gptqmodel (:mod:`invarlock_gptq.family`, ``.loading``, ``.checkpoint``,
``.kernels``).
"""
