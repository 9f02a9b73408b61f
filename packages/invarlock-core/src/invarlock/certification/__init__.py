"""The certify/run engine: the half of core that turns two models into judged evidence.

The other half, the plugin frame (:mod:`invarlock.hookspecs`, :mod:`invarlock.manager`,
:mod:`invarlock.adapters`, :mod:`invarlock.description`), knows nothing of this package. The
engine reaches the frame only through :mod:`.sides` (choosing each side's adapter, loading through
it) and :mod:`.context` (the plugin listing a certificate records); every other contact with a model
is a hook call on the chosen :class:`~invarlock.adapters.Adapter`.

Modules:

- :mod:`.certify`: ``certify()``, baseline against subject, the certificate;
- :mod:`.run`: ``run()``, one model before and after an edit, the run report;
- :mod:`.evaluate`: the step both share: score → compare → invariants → judge → evidence;
- :mod:`.sides`, :mod:`.tokenizers`, :mod:`.context`: the seam, the shared-tokenizer check, the
  environment a result records;
- :mod:`.evaluation`: windows, scoring through ``invarlock_logits``, paired statistics, invariants,
  the gate policy (each default lives beside what it configures);
- :mod:`.datasets`, :mod:`.edits`, :mod:`.certificate` (writing JSON, Markdown, HTML),
  :mod:`.progress`.

Nothing here imports torch at import time; scoring and the weight checks import it when called.
"""
