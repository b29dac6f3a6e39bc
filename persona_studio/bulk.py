"""Helpers for the bulk paths (import, make-dataset) that handle millions of records."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector. Bulk paths allocate millions of lists and tuples
    (CSV rows, columns) that never form cycles; each allocation burst would trigger a collection
    that walks every live container, ~30% of an import's time. Reference counting still frees
    everything; collection resumes (and catches up) when the block ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
