"""The sweep: every model type the installed transformers maps to a causal-LM, masked-LM, seq2seq
or image-text-to-text head, built on the meta device from its default config and described.

Each type ends ``described``, ``refused: FIELD: WHY`` (describe says what it could not derive) or
``error``; types transformers itself cannot build from their default config are recorded as
``not built``. The test fails on any description that contradicts the module shapes
(:func:`invarlock_hf.testing.structure_contradictions`) and on any describe error. The counts are
printed (``pytest -s``) for the closing note.
"""

from __future__ import annotations

import collections
import gc
import time
import warnings

from invarlock_hf.testing import sweep_model_types, sweep_record


def test_every_model_type_is_described_or_refused_without_contradiction() -> None:
    start = time.perf_counter()
    statuses: dict[str, str] = {}
    contradictions: dict[str, list[str]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # default configs warn about their own settings
        try:
            for kind, model_type in sweep_model_types():
                key = f"{kind}:{model_type}"
                status, problems, _ = sweep_record(kind, model_type)
                statuses[key] = status
                if problems:
                    contradictions[key] = problems
                # Each model is freed before the next is built. What survives the collection
                # (transformers' modules, imported as the sweep goes) is frozen, so the next
                # collection scans only the objects of one model, not every object so far: it
                # halved the sweep's CPU time.
                gc.collect()
                gc.freeze()
        finally:
            gc.unfreeze()  # the frozen objects go back to the collector for the rest of the session
    counts = collections.Counter(status.split(":", 1)[0] for status in statuses.values())
    seconds = time.perf_counter() - start
    print(f"\nsweep over {len(statuses)} (kind, model type) pairs in {seconds:.0f} s: {dict(counts)}")
    for key, status in statuses.items():
        if not status.startswith("described"):
            print(f"  {key}: {status}")
    assert counts["described"] > 0
    errors = {key: status for key, status in statuses.items() if status.startswith("error")}
    assert not errors, errors
    assert not contradictions, contradictions
