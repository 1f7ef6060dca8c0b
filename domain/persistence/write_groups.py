"""Writes that arrive while one like them is being written, written together (PostgreSQL).

A database flushes every commit to disk before it answers, and a row every write of a kind
updates (a buyer's wallet) stays locked until then: writes that arrive together pay for that
one after the other. ``WriteGroups`` lets the first write of a key go ahead alone; those that
arrive while it is being written wait and are then written together, in one statement and one
commit, the way a database groups commits. One write at a time sees no difference; many at
once share a round trip, a lock and a flush per group.

A kind of write says how one goes alone (``alone``), how a group goes (``together``: each
write's outcome, or None for one to write again alone), and which orders a write touches: a
group never holds two writes of one order (such a write waits for the next group), so that
each write of a group is decided as if it came alone. A write whose caller stopped waiting
before its group was formed is left out (nothing of it is written). Used only outside a
transaction: inside one, a write is part of the caller's transaction and goes by itself.
"""

from __future__ import annotations

import abc
import asyncio
import weakref
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
W = TypeVar("W")
O = TypeVar("O")  # noqa: E741 - the outcome
Q = TypeVar("Q")


@dataclass
class _Waiting(Generic[W, O]):
    write: W
    outcome: asyncio.Future[O]


class WriteGroups(abc.ABC, Generic[K, W, O]):
    """Per key: whether a write is under way, and the writes waiting for it."""

    limit: ClassVar[int] = 64  # writes in one statement

    def __init__(self) -> None:
        self.writing: set[K] = set()
        self.waiting: dict[K, list[_Waiting[W, O]]] = {}
        self.groups_written = 0  # statements that wrote more than one write (for tests)
        self.tasks: set[asyncio.Task[None]] = set()  # groups being written

    @abc.abstractmethod
    async def alone(self, write: W) -> O: ...

    @abc.abstractmethod
    async def together(self, writes: list[W]) -> list[O | None]: ...

    @abc.abstractmethod
    def orders(self, write: W) -> Iterable[int]: ...

    def after_group(self, outcomes: list[O | None]) -> None:
        """Once a group's statement has committed (e.g. wake the publisher)."""

    async def submit(self, key: K, write: W) -> O:
        if key not in self.writing:
            self.writing.add(key)
            try:
                return await self.alone(write)
            finally:
                self._next(key)
        waiting: _Waiting[W, O] = _Waiting(write, asyncio.get_running_loop().create_future())
        self.waiting.setdefault(key, []).append(waiting)
        return await waiting.outcome

    def _next(self, key: K) -> None:
        """The key's statement ended: write what waits for it, or free the key."""
        queued = self.waiting.pop(key, None)
        if not queued:
            self.writing.discard(key)
            return
        group, later = self._group(queued)
        if later:
            self.waiting[key] = later
        task = asyncio.create_task(self._write(key, group))
        self.tasks.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self.tasks.discard)

    async def _write(self, key: K, group: list[_Waiting[W, O]]) -> None:
        try:
            if len(group) == 1:
                outcomes: list[O | None] = [await self.alone(group[0].write)]
            else:
                outcomes = await self.together([w.write for w in group])
                self.groups_written += 1
                self.after_group(outcomes)
            for waiting, outcome in zip(group, outcomes, strict=True):
                if outcome is None:
                    outcome = await self.alone(waiting.write)
                if not waiting.outcome.done():
                    waiting.outcome.set_result(outcome)
        except Exception as error:  # each waiting write gets it as its own
            for waiting in group:
                if not waiting.outcome.done():
                    waiting.outcome.set_exception(error)
        finally:
            self._next(key)

    def _group(
        self, queued: list[_Waiting[W, O]]
    ) -> tuple[list[_Waiting[W, O]], list[_Waiting[W, O]]]:
        """The next group in arrival order (at most ``limit``, no order twice) and the rest;
        writes whose callers stopped waiting (cancelled) are left out."""
        group: list[_Waiting[W, O]] = []
        later: list[_Waiting[W, O]] = []
        orders: set[int] = set()
        for waiting in queued:
            if waiting.outcome.done():  # its caller gave up waiting: nothing of it is written
                continue
            ids = set(self.orders(waiting.write))
            if len(group) >= self.limit or ids & orders:
                later.append(waiting)
                continue
            group.append(waiting)
            orders |= ids
        return group, later


class PerLoop(Generic[Q]):
    """One ``Q`` per event loop (a queue's futures belong to the loop that made them)."""

    def __init__(self, make: Callable[[], Q]) -> None:
        self._make = make
        self._made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Q] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> Q:
        loop = asyncio.get_running_loop()
        found = self._made.get(loop)
        if found is None:
            found = self._made[loop] = self._make()
        return found

    def existing(self) -> Q | None:
        return self._made.get(asyncio.get_running_loop())
