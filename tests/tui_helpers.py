"""Helpers for Pilot tests: wait on a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from textual.pilot import Pilot


async def wait_until(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await pilot.pause(0.05)
        await asyncio.sleep(0)


def screen_text(pilot: Pilot) -> str:
    """Everything on screen, as plain text (what a user would read)."""
    from textual.widgets import Static

    parts = []
    for w in pilot.app.screen.query(Static):
        parts.append(str(w.render()))
    return "\n".join(parts)
