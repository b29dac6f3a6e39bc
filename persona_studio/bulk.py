"""Helpers for the bulk paths (import, make-dataset) that handle millions of records."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator


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


class Background:
    """Runs submitted calls one at a time, in order, on one worker thread.

    SQLite steps and Arrow kernels run with the GIL released, so on a 2-core machine storing
    one batch overlaps computing the next. The queue is bounded, so memory stays a couple of
    batches deep. A call that raises stops the rest; `wait` and `submit` re-raise it in the
    caller. Always `close` (in a `finally`) before the transaction the calls write into ends."""

    def __init__(self, depth: int = 2):
        import queue
        import threading

        self._q: queue.Queue[tuple[Callable[..., object], tuple[object, ...]] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="persona-studio-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._q.get()) is not None:
            fn, args = item
            if self._error is None:
                try:
                    fn(*args)
                except BaseException as exc:  # handed to the caller by wait/submit
                    self._error = exc
            self._q.task_done()
        self._q.task_done()

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        self._raise()
        self._q.put((fn, args))

    def wait(self) -> None:
        """Until every submitted call has run; re-raises the first error."""
        self._q.join()
        self._raise()

    def close(self) -> None:
        """Stop the thread after the calls already queued (errors are dropped: use `wait`)."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc
