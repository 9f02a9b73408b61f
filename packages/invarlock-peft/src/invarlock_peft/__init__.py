"""InvarLock adapter for PEFT fine-tunes (LoRA, DoRA, IA3...) loaded over their base model (``hf_peft``)."""
