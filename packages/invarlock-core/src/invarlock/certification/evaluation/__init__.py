"""Evaluation: deterministic windows, scoring through adapters, paired statistics and the gate."""
