"""InvarLock adapter for bitsandbytes 8-bit and 4-bit causal language models (``hf_bnb``)."""
