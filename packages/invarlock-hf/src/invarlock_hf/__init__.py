"""InvarLock adapters for Hugging Face transformers models (PyTorch)."""
