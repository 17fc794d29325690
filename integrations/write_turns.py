"""A lock taken in turns, where an urgent caller goes before the others waiting."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WriteTurns:
    """A lock where urgent callers (a webhook waiting to answer) go before the others waiting (the
    workers), however long those waited: the one holding it is never interrupted, so an urgent
    caller waits for at most the current holder and the urgent callers before it."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._busy = False
        self._urgent = 0  # urgent callers waiting
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """How many callers are waiting for a turn."""
        with self._cond:
            return self._waiting

    @contextmanager
    def turn(self, urgent: bool) -> Iterator[None]:
        with self._cond:
            self._urgent += urgent
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: not self._busy and (urgent or not self._urgent))
            finally:
                self._urgent -= urgent
                self._waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
