"""InvarLock adapter for GGUF checkpoints scored by llama.cpp itself through llama-cpp-python (``gguf``)."""
