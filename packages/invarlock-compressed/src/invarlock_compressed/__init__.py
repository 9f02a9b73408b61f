"""InvarLock adapter hf_compressed: compressed-tensors (llm-compressor) checkpoints."""
