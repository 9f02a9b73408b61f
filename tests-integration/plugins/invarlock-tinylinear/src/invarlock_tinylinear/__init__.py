"""A sample third-party InvarLock adapter for a tiny pure-PyTorch causal LM.

Importing this package imports nothing heavy; ``invarlock_tinylinear.model`` holds the torch code.
"""

__version__ = "0.1.0"
