"""InvarLock adapter for causal LMs exported to ONNX and run by ONNX Runtime (``hf_causal_onnx``)."""
