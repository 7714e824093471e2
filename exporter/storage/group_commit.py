"""Group commit: writes of concurrent callers share statements and commits.

Every table written at request rate (alerts from webhooks, health samples, performance logs)
goes through one of these. A caller hands over its item and waits for the commit that holds
it, so a 2xx still means committed; meanwhile other callers' items join the next batch.

Scheduling is event driven: an arrival starts a batch at once when no batch is in flight (an
idle service adds no delay); while batches are in flight, the next one grows until it holds
``min_overlap`` units and a slot is free, its oldest item has waited ``max_delay``, or a batch
in flight finishes (which starts the next on the same connection: the group commit).

A batch that fails for a data reason is retried item by item, so one bad request cannot sink
the others; any other failure answers the whole batch ``StorageUnavailable`` (a 503: the
sender retries). At shutdown, ``close`` writes what is queued until a deadline; items whose
commit is then still unknown are answered ``StorageUnavailable`` too, never success.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg

from exporter.storage.database import Database, is_outage
from exporter.storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: writes one batch on a connection (in its own transaction) and returns one result per item
BatchWriter = Callable[[asyncpg.Connection, Sequence[T]], Awaitable[Sequence[R]]]


class QueueFull(Exception):
    """The queue is at its bound; the sender should retry shortly."""


class TooLarge(Exception):
    """One item is larger than the whole queue may hold; it can never be accepted."""


class Rejected(Exception):
    """PostgreSQL refused an item for a data reason: the item is at fault, not the service."""


def is_data_error(exc: BaseException) -> bool:
    """Class 22 (data exception) and 23 (integrity) errors are the data's fault."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and sqlstate[:2] in ("22", "23")


@dataclass(frozen=True, slots=True)
class Limits:
    """How batches are formed and how much may wait."""

    #: units (rows) per batch at most; a single larger item still goes alone
    max_batch: int = 10_000
    #: batches in flight at once
    max_concurrent: int = 1
    #: while a batch is in flight, another starts only with at least this many units waiting
    min_overlap: int = 1
    #: ... or once its oldest item waited this long (seconds; 0: only the unit rule)
    max_delay: float = 0.0
    #: units accepted and not yet answered, at most
    max_queued: int = 1_000_000
    #: bytes accepted and not yet answered, at most
    max_queued_bytes: int = 1 << 40


@dataclass(slots=True)
class _Item(Generic[T, R]):
    value: T
    units: int
    nbytes: int
    future: asyncio.Future[R] | None
    queued_at: float
    done: bool = False


class GroupCommit(Generic[T, R]):
    """Shared batches of one kind of write; see the module."""

    def __init__(
        self,
        name: str,
        db: Database,
        write: BatchWriter[T, R],
        limits: Limits = Limits(),
        *,
        units: Callable[[T], int] = lambda _: 1,
        on_commit: Callable[[Sequence[T], Sequence[R]], None] | None = None,
    ) -> None:
        self.name = name
        self.db = db
        self.limits = limits
        self._write = write
        self._units = units
        self._on_commit = on_commit
        self._queue: deque[_Item[T, R]] = deque()
        self._pending_units = 0
        self._flushes: set[asyncio.Task[None]] = set()
        # the batch each flush is writing now, so close() can answer it if the flush hangs
        self._writing: dict[asyncio.Task[None], list[_Item[T, R]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        #: units and bytes accepted and not yet answered (queued and in flight)
        self.queued_units = 0
        self.queued_bytes = 0
        #: callers waiting for their commit
        self.waiting = 0
        self.batches = 0

    # ------------------------------------------------------------------ callers
    async def submit(self, value: T, nbytes: int = 0) -> R:
        """Queue an item and return its result once it is committed.

        Raises QueueFull or TooLarge before queueing, Rejected when the database refuses the
        item, StorageUnavailable when it cannot be committed now.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._enqueue(value, nbytes, future)
        self.waiting += 1
        try:
            # a cancelled caller leaves its item in the batch; the answer is dropped
            return await future
        finally:
            self.waiting -= 1

    def offer(self, value: T, nbytes: int = 0) -> bool:
        """Queue an item nobody waits for (best effort); False when it was not accepted."""
        try:
            self._enqueue(value, nbytes, None)
        except (QueueFull, TooLarge, StorageUnavailable):
            return False
        return True

    def _enqueue(self, value: T, nbytes: int, future: asyncio.Future[R] | None) -> None:
        if self._closing:
            raise StorageUnavailable("the service is shutting down", retry_after=1)
        if future is not None and not self.db.ready:
            raise StorageUnavailable("database is not connected yet")
        units = self._units(value)
        lim = self.limits
        if units > lim.max_queued or nbytes > lim.max_queued_bytes:
            raise TooLarge()
        if (
            self.queued_units + units > lim.max_queued
            or self.queued_bytes + nbytes > lim.max_queued_bytes
        ):
            raise QueueFull()
        self._queue.append(_Item(value, units, nbytes, future, time.monotonic()))
        self._pending_units += units
        self.queued_units += units
        self.queued_bytes += nbytes
        self._schedule()

    # ------------------------------------------------------------------ scheduling
    def _schedule(self) -> None:
        """Start a batch if the rules allow one now, else make sure one starts in time."""
        if not self._queue:
            return
        lim = self.limits
        if len(self._flushes) >= lim.max_concurrent:
            return  # a finishing batch takes what waits: the group commit
        if self._flushes and self._pending_units < lim.min_overlap:
            if lim.max_delay <= 0:
                return
            waited = time.monotonic() - self._queue[0].queued_at
            if waited < lim.max_delay:
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(
                        lim.max_delay - waited, self._on_timer
                    )
                return
        self._start()

    def _on_timer(self) -> None:
        self._timer = None
        self._schedule()

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.create_task(self._flush(self._take()), name=f"{self.name}-flush")
        self._flushes.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("group commit flush failed", exc_info=task.exception())
        if not self._closing or self._queue:
            self._schedule()

    def _take(self) -> list[_Item[T, R]]:
        """Whole items from the head of the queue, up to max_batch units (at least one)."""
        first = self._queue.popleft()
        batch, units = [first], first.units
        while self._queue and units + self._queue[0].units <= self.limits.max_batch:
            item = self._queue.popleft()
            units += item.units
            batch.append(item)
        self._pending_units -= units
        return batch

    # ------------------------------------------------------------------ writing
    async def _flush(self, batch: list[_Item[T, R]]) -> None:
        """Write ``batch``, then keep the connection for what queued up meanwhile."""
        current: list[_Item[T, R]] | None = batch
        try:
            async with self.db.connection() as conn:
                while current is not None:
                    taken, current = current, None
                    await self._write_batch(conn, taken)  # answers `taken` on every path
                    if self._queue:
                        current = self._take()
        except asyncio.CancelledError:
            # shutting down mid-statement: whether it committed is unknown, so never success
            if current is not None:
                self._settle(current, StorageUnavailable("the service is shutting down"))
            raise
        except Exception as exc:
            if current is not None:  # no connection: this batch was never tried
                self._settle(current, exc)

    async def _write_batch(self, conn: asyncpg.Connection, batch: list[_Item[T, R]]) -> None:
        """Write a batch and answer its callers; raises when the connection is unusable."""
        task = asyncio.current_task()
        if task is not None:
            self._writing[task] = batch
        try:
            results = await self._write(conn, [item.value for item in batch])
        except asyncio.CancelledError:
            self._settle(batch, StorageUnavailable("the service is shutting down"))
            raise
        except Exception as exc:
            if not is_data_error(exc) or len(batch) == 1:
                self._settle(batch, exc)
                if not is_data_error(exc):
                    raise
                return
            # one bad item must not fail the others: each on its own
            for i, item in enumerate(batch):
                try:
                    one = await self._write(conn, [item.value])
                except Exception as one_exc:
                    if not is_data_error(one_exc):
                        self._settle(batch[i:], one_exc)
                        raise
                    self._settle([item], one_exc)
                else:
                    self._succeed([item], one)
            return
        finally:
            if task is not None:
                self._writing.pop(task, None)
        self._succeed(batch, results)

    def _succeed(self, batch: list[_Item[T, R]], results: Sequence[R]) -> None:
        if len(self._free(batch)) < len(batch):
            return  # close() answered these already: it could not know they would commit
        self.batches += 1
        if self._on_commit is not None:
            try:
                self._on_commit([item.value for item in batch], results)
            except Exception:
                log.exception("commit hook failed", extra={"writer": self.name})
        for item, result in zip(batch, results, strict=True):
            if item.future is not None and not item.future.done():
                item.future.set_result(result)

    def _settle(self, batch: list[_Item[T, R]], exc: BaseException) -> None:
        """Answer a failed batch: Rejected for data errors, StorageUnavailable otherwise."""
        batch = self._free(batch)
        error: BaseException
        if is_data_error(exc):
            error = Rejected(str(exc))
        elif isinstance(exc, StorageUnavailable):
            error = exc
        else:
            level = logging.INFO if is_outage(exc) else logging.WARNING
            log.log(
                level,
                "batch not committed",
                extra={"writer": self.name, "error": f"{type(exc).__name__}: {exc}"},
            )
            error = StorageUnavailable(f"the batch was not committed: {type(exc).__name__}")
        for item in batch:
            if item.future is not None and not item.future.done():
                item.future.set_exception(error)

    def _free(self, batch: list[_Item[T, R]]) -> list[_Item[T, R]]:
        """Release the room of items not answered yet; returns those items."""
        fresh = [item for item in batch if not item.done]
        for item in fresh:
            item.done = True
            self.queued_units -= item.units
            self.queued_bytes -= item.nbytes
        return fresh

    # ------------------------------------------------------------------ lifetime
    async def close(self, timeout: float) -> None:
        """Stop accepting, write what is queued for up to ``timeout`` seconds, answer everyone.

        Whatever is not committed by then is answered StorageUnavailable (never success).
        """
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue and len(self._flushes) < self.limits.max_concurrent:
            self._start()
        deadline = time.monotonic() + timeout
        while self._flushes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.wait(list(self._flushes), timeout=remaining)
        stuck = list(self._flushes)
        for task in stuck:
            task.cancel()
        if stuck:
            # a flush stuck on a dead server may not even finish its cancellation promptly
            await asyncio.wait(stuck, timeout=2.0)
        for batch in list(self._writing.values()):
            self._settle(batch, StorageUnavailable("the service is shutting down"))
        left = list(self._queue)
        self._queue.clear()
        self._pending_units = 0
        self._settle(left, StorageUnavailable("the service is shutting down"))
