"""Raises at import, as a plugin with a bug or a missing dependency would."""

raise RuntimeError("invarlock-broken fails at import on purpose")
