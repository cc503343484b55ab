"""The ledger writer: records are handed over without waiting and written in batches by a thread.

:meth:`Ledger.record` only appends to a bounded buffer, so the request path never waits for the
database. The writer thread takes what is buffered, writes it in one transaction, and on failure
keeps it and tries again with a growing pause; a retried batch cannot be written twice (records
have unique ids). Only when the buffer is full are new records dropped, and every dropped record
is counted (``dropped``) and logged.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence

from aimi.usage.records import UsageRecord

log = logging.getLogger(__name__)

Writer = Callable[[Sequence[UsageRecord]], None]


class Ledger:
    def __init__(
        self,
        write: Writer,
        *,
        capacity: int = 100_000,
        batch: int = 500,
        interval: float = 0.05,
        max_backoff: float = 30.0,
    ) -> None:
        self._write = write
        self._capacity = capacity
        self._batch = batch
        self._interval = interval
        self._max_backoff = max_backoff
        self._buffer: collections.deque[UsageRecord] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._writing = threading.Lock()  # one batch in flight, from the thread or flush()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.healthy = True

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aimi-usage-ledger", daemon=True)
        self._thread.start()

    def record(self, record: UsageRecord) -> None:
        """Hand a record to the writer; never blocks on the database."""
        with self._lock:
            if self._stopping and (self._thread is None or not self._thread.is_alive()):
                self.dropped += 1  # after stop(): nothing would write it
                return
            if len(self._buffer) >= self._capacity:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("usage ledger buffer full: %d record(s) dropped so far", self.dropped)
                return
            self._buffer.append(record)
            if len(self._buffer) >= self._batch:
                self._wake.notify()

    def _take(self) -> list[UsageRecord]:
        with self._lock:
            return [self._buffer[i] for i in range(min(self._batch, len(self._buffer)))]

    def _forget(self, count: int) -> None:
        with self._lock:
            for _ in range(count):
                self._buffer.popleft()

    def _flush_once(self, wait: float = -1) -> bool:
        """Write one batch; False if the database refused it (the batch stays buffered), or if
        another write held the writer longer than ``wait`` seconds."""
        if not self._writing.acquire(timeout=wait):
            return False
        try:
            return self._write_batch()
        finally:
            self._writing.release()

    def _write_batch(self) -> bool:
        batch = self._take()
        if not batch:
            return True
        try:
            self._write(batch)
        except Exception as exc:
            self.failures += 1
            if self.healthy:
                # The driver's own message, not SQLAlchemy's (which quotes the statement and its rows).
                reason = getattr(exc, "orig", None) or exc
                log.error("usage ledger cannot write (%s); %d record(s) kept for retry", reason, self.pending)
            self.healthy = False
            return False
        if not self.healthy:
            log.warning("usage ledger writing again")
        self.healthy = True
        self._forget(len(batch))
        self.written += len(batch)
        return True

    def _run(self) -> None:
        backoff = self._interval
        failing = False
        while True:
            with self._lock:
                # A full batch is written at once, unless the database is failing: then the pause holds.
                if not self._stopping and (failing or len(self._buffer) < self._batch):
                    self._wake.wait(backoff)
                if self._stopping:
                    return
            if self._flush_once():
                failing, backoff = False, self._interval
                while self.pending >= self._batch and self._flush_once():
                    pass
            else:
                failing, backoff = True, min(self._max_backoff, max(backoff * 2, 0.5))

    def flush(self, deadline: float = 5.0) -> bool:
        """Write everything buffered, trying until ``deadline`` seconds have passed."""
        end = time.monotonic() + deadline
        while self.pending:
            if not self._flush_once(wait=max(0.0, end - time.monotonic())):
                if time.monotonic() >= end:
                    return False
                time.sleep(0.1)
        return True

    def stop(self, deadline: float = 5.0) -> None:
        """Stop the writer and write what is left; what cannot be written is counted as dropped."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        end = time.monotonic() + deadline
        if self._thread is not None:
            self._thread.join(deadline)  # a write stuck in the database is left behind, not waited for
        if not self.flush(max(0.0, end - time.monotonic())):
            lost = self.pending
            with self._lock:
                self._buffer.clear()
                self.dropped += lost
            log.error("usage ledger stopped with the database unreachable: %d record(s) dropped", lost)
