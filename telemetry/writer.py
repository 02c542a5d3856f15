"""The batching telemetry writer: a bounded in-memory buffer on the event loop, a worker thread
that encodes and writes batches, and a disk spool that keeps order while the server is away.

Flow per cycle (one at a time, so the spool never sees concurrent access)::

    buffer --(batch_size or flush_interval)--> encode --> spool empty & server up? --> sink
                                                     \\--> otherwise append to spool, then
                                                          replay spool oldest-first when due

``submit`` costs a deque append; it never blocks and never raises. When the buffer is full the
point is dropped and counted (``buffer_dropped``) with a rate-limited ERROR log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType

from telemetry.lineproto import Point, encode_many
from telemetry.sinks import SinkRejected, SinkUnavailable, TelemetrySink
from telemetry.spool import Spool, SpoolError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WriterStats:
    """Counters of the writer (cumulative since start) and its current backlog."""

    submitted: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    buffer_dropped: int = 0
    spool_dropped: int = 0
    rejected: int = 0
    invalid: int = 0
    write_errors: int = 0
    buffered: int = 0
    spool_lines: int = 0
    spool_bytes: int = 0
    server_up: bool = True

    def as_counters(self) -> dict[str, float]:
        """Numeric view for ``platform_health`` (prefixed ``telemetry_``)."""
        return {f"telemetry_{k}": float(v) for k, v in asdict(self).items()}


class WriterCore:
    """The synchronous half: encode, write or spool, replay. Runs in one worker thread at a time."""

    def __init__(
        self,
        sink: TelemetrySink,
        spool: Spool | None,
        stats: WriterStats,
        *,
        batch_size: int,
        clock: Callable[[], float] = time.monotonic,
        min_backoff: float = 0.2,
        max_backoff: float = 15.0,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.stats = stats
        self.batch_size = batch_size
        self.clock = clock
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._backoff = min_backoff
        self._retry_at = 0.0
        self._spool_io_dropped = 0
        self._refresh()

    def _refresh(self) -> None:
        if self.spool is not None:
            self.stats.spool_lines = self.spool.lines
            self.stats.spool_bytes = self.spool.bytes
            self.stats.spool_dropped = self.spool.dropped_lines + self._spool_io_dropped

    def _mark_down(self, exc: SinkUnavailable) -> None:
        self.stats.write_errors += 1
        if self.stats.server_up:
            log.warning("telemetry sink %s unavailable, spooling: %s", self.sink.name, exc)
        self.stats.server_up = False
        self._retry_at = self.clock() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)

    def _mark_up(self) -> None:
        if not self.stats.server_up:
            log.warning("telemetry sink %s is back", self.sink.name)
        self.stats.server_up = True
        self._backoff = self.min_backoff

    @property
    def retry_due(self) -> bool:
        """Whether a spool replay should be attempted now."""
        return self.clock() >= self._retry_at

    @property
    def backlog(self) -> bool:
        """Whether points wait in the spool."""
        return bool(self.spool)

    def _send(self, lines: list[str]) -> None:
        """Write one batch; a batch the server rejects outright is dropped (counted, logged)."""
        try:
            self.sink.write(lines)
        except SinkRejected as exc:
            self.stats.rejected += len(lines)
            log.error("telemetry sink %s REJECTED %d points, dropping them: %s", self.sink.name, len(lines), exc)
            return
        self.stats.written += len(lines)

    def flush(self, points: list[Point]) -> None:
        """Deliver one batch of points (called from the worker thread)."""
        lines, invalid = encode_many(points)
        self.stats.invalid += invalid
        if lines:
            if self.spool is None:
                try:
                    self._send(lines)
                    self._mark_up()
                except SinkUnavailable as exc:
                    self._mark_down(exc)
                    self.stats.buffer_dropped += len(lines)
                    log.error("telemetry DROPPED %d points: no spool configured and %s", len(lines), exc)
            elif self.spool or not self.retry_due:
                self._to_spool(lines)  # keep order behind the backlog (or wait out the backoff)
            else:
                try:
                    self._send(lines)
                    self._mark_up()
                except SinkUnavailable as exc:
                    self._mark_down(exc)
                    self._to_spool(lines)
        if self.spool and self.retry_due:
            self.replay()
        self._refresh()

    def _to_spool(self, lines: list[str]) -> None:
        assert self.spool is not None
        try:
            self.spool.append(lines)
            self.stats.spooled += len(lines)
        except SpoolError as exc:
            self._spool_io_dropped += len(lines)
            log.error("telemetry DROPPED %d points: %s", len(lines), exc)

    def replay(self, max_batches: int = 50) -> None:
        """Send spooled segments oldest-first; each is deleted only once the server accepted it."""
        if self.spool is None:
            return
        for _ in range(max_batches):
            segments = self.spool.peek(self.batch_size)
            if not segments:
                break
            lines = self.spool.read(segments)
            try:
                self._send(lines)
            except SinkUnavailable as exc:
                self._mark_down(exc)
                break
            self._mark_up()
            self.stats.replayed += len(lines)
            self.spool.ack(segments)
        self._refresh()

    def spool_everything(self, points: list[Point]) -> None:
        """Shutdown path: put unsent points on disk (fast, local) to be sent at next start."""
        lines, invalid = encode_many(points)
        self.stats.invalid += invalid
        if not lines:
            return
        if self.spool is not None:
            self._to_spool(lines)
            self._refresh()
        else:
            with contextlib.suppress(SinkUnavailable):
                self._send(lines)


class TelemetryWriter:
    """Async front of the writer: ``submit`` on the loop, ``run()`` in the platform's TaskGroup.

    Use either ``await writer.run()`` (returns after :meth:`stop`, having flushed) or
    ``async with writer:`` which owns the run task and stops it on exit.
    """

    def __init__(
        self,
        sink: TelemetrySink,
        *,
        spool: Spool | None = None,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        max_buffer: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_size < 1 or max_buffer < 1 or flush_interval <= 0:
            raise ValueError("batch_size, max_buffer must be >= 1 and flush_interval > 0")
        self.stats = WriterStats()
        self.core = WriterCore(sink, spool, self.stats, batch_size=batch_size, clock=clock)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._buffer: deque[Point] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._cycle = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._last_drop_log = float("-inf")

    @property
    def sink(self) -> TelemetrySink:
        """The sink this writer delivers to."""
        return self.core.sink

    def submit(self, point: Point) -> bool:
        """Queue a point without blocking; False (and counted) when the buffer is full."""
        buffer = self._buffer
        if len(buffer) >= self.max_buffer:
            self.stats.buffer_dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 10.0:
                self._last_drop_log = now
                log.error(
                    "telemetry buffer full (%d points): DROPPING points, %d dropped so far",
                    self.max_buffer,
                    self.stats.buffer_dropped,
                )
            return False
        buffer.append(point)
        self.stats.submitted += 1
        if len(buffer) == self.batch_size:
            self._wake.set()
        return True

    def _take_batch(self) -> list[Point]:
        buffer = self._buffer
        count = min(len(buffer), self.batch_size)
        return [buffer.popleft() for _ in range(count)]

    async def _cycle_once(self) -> None:
        batch = self._take_batch()
        if batch or (self.core.backlog and self.core.retry_due):
            await asyncio.to_thread(self.core.flush, batch)
        self.stats.buffered = len(self._buffer)
        async with self._cycle:
            self._cycle.notify_all()

    async def run(self) -> None:
        """Deliver batches until :meth:`stop`; then flush what is left (spooling it if needed)."""
        try:
            while not self._stopping:
                if len(self._buffer) < self.batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                self._wake.clear()
                await self._cycle_once()
            while self._buffer:
                await self._cycle_once()
        except asyncio.CancelledError:
            # Cancelled by the TaskGroup: no more awaiting; park the remainder on disk.
            self.core.spool_everything(list(self._buffer))
            self._buffer.clear()
            raise
        finally:
            self.stats.buffered = len(self._buffer)
            self.core.sink.close()

    def stop(self) -> None:
        """Ask :meth:`run` to flush and return."""
        self._stopping = True
        self._wake.set()

    async def wait_until(self, predicate: Callable[[WriterStats], bool], within: float) -> WriterStats:
        """Wait (up to ``within`` s) until ``predicate(stats)`` holds after a writer cycle."""
        async with asyncio.timeout(within):
            async with self._cycle:
                await self._cycle.wait_for(lambda: predicate(self.stats))
        return self.stats

    async def __aenter__(self) -> TelemetryWriter:
        self._task = asyncio.create_task(self.run(), name="telemetry-writer")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._task is not None:
            await self._task
            self._task = None
