"""The batching telemetry writer: a bounded in-memory buffer on the event loop, a worker thread
that encodes and writes batches, and a disk spool that keeps order while the server is away.

Flow per cycle (one at a time, so the spool never sees concurrent access)::

    buffer --(batch_size or flush_interval)--> encode --> spool empty & server up? --> sink
                                                     \\--> otherwise append to spool, then
                                                          replay spool oldest-first when due

``submit`` costs a deque append; it never blocks and never raises. When the buffer is full the
point is dropped and counted (``buffer_dropped``) with a rate-limited ERROR log.

When the spool cannot take a batch (its cap reached, or the disk full) and the server is up, the
fresh batch goes straight to the server instead of pushing older points out or being dropped.
``run`` supervises its own cycles: an unexpected error is logged, counted in ``restarts``, and the
loop carries on after a pause; :meth:`TelemetryWriter.health` says how the writer is doing.
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
from telemetry.sinks import SinkMisconfigured, SinkRejected, SinkUnavailable, TelemetrySink
from telemetry.spool import Spool, SpoolError
from telemetry.throttle import LogThrottle

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
    quarantined: int = 0
    restarts: int = 0
    buffered: int = 0
    spool_lines: int = 0
    spool_bytes: int = 0
    server_up: bool = True
    misconfigured: bool = False
    running: bool = False
    last_error: str = ""

    @property
    def dropped(self) -> int:
        """Points lost for good: buffer full, spool cap or disk, no spool."""
        return self.buffer_dropped + self.spool_dropped

    def as_counters(self) -> dict[str, float]:
        """Numeric view for ``platform_health`` (prefixed ``telemetry_``)."""
        return {f"telemetry_{k}": float(v) for k, v in asdict(self).items() if not isinstance(v, str)}


@dataclass(frozen=True, slots=True)
class WriterHealth:
    """How the writer is doing: ``state`` is ``ok``, ``spooling`` (server unreachable: an outage the spool
    rides out), ``misconfigured`` (settings that cannot work), ``dropping`` (points lost since the last
    look) or ``stopped``; ``ready`` is False for the last three."""

    state: str
    detail: str

    @property
    def ready(self) -> bool:
        """Whether the platform may call itself ready as far as telemetry goes."""
        return self.state in ("ok", "spooling")


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
        self._lost = 0  # points lost outside the spool's own cap: disk full, or no spool
        self._drop_log = LogThrottle(clock=clock)
        self._config_log = LogThrottle(60.0, clock=clock)
        self._refresh()

    def _refresh(self) -> None:
        if self.spool is not None:
            self.stats.spool_lines = self.spool.lines
            self.stats.spool_bytes = self.spool.bytes
            self.stats.quarantined = self.spool.quarantined_lines
            self.stats.spool_dropped = self.spool.dropped_lines + self._lost
        else:
            self.stats.spool_dropped = self._lost

    def _mark_down(self, exc: SinkUnavailable | SinkMisconfigured) -> None:
        self.stats.write_errors += 1
        self.stats.last_error = str(exc)
        if isinstance(exc, SinkMisconfigured):
            if not self.stats.misconfigured or self._config_log.due():
                log.error("telemetry sink %s cannot work with these settings, spooling: %s", self.sink.name, exc)
            self.stats.misconfigured = True
            self._backoff = self.max_backoff  # a setting does not fix itself within seconds
        elif self.stats.server_up:
            log.warning("telemetry sink %s unavailable, spooling: %s", self.sink.name, exc)
        self.stats.server_up = False
        self._retry_at = self.clock() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)

    def _mark_up(self) -> None:
        if not self.stats.server_up:
            log.warning("telemetry sink %s is back", self.sink.name)
        self.stats.server_up = True
        self.stats.misconfigured = False
        self.stats.last_error = ""
        self._backoff = self.min_backoff

    def _drop(self, count: int, why: str) -> None:
        self._lost += count
        if self._drop_log.due():
            log.error("telemetry DROPPED points: %s (%d more drops not logged)", why,
                      self._drop_log.take_suppressed())  # fmt: skip

    @property
    def retry_due(self) -> bool:
        """Whether a spool replay should be attempted now."""
        return self.clock() >= self._retry_at

    @property
    def backlog(self) -> bool:
        """Whether points wait in the spool."""
        return bool(self.spool)

    def _send(self, lines: list[str]) -> bool:
        """Write one batch; True when the server took it, False when it refused the data (counted and
        logged). Raises when the server is not usable."""
        try:
            self.sink.write(lines)
        except SinkRejected as exc:
            self.stats.rejected += len(lines)
            log.error("telemetry sink %s REJECTED %d points: %s", self.sink.name, len(lines), exc)
            return False
        self.stats.written += len(lines)
        return True

    def _try_send(self, lines: list[str]) -> bool:
        """Send now, whatever the backoff; False (server marked down) when it is not usable."""
        try:
            self._send(lines)
        except (SinkUnavailable, SinkMisconfigured) as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    def flush(self, points: list[Point]) -> None:
        """Deliver one batch of points (called from the worker thread)."""
        lines, invalid = encode_many(points)
        self.stats.invalid += invalid
        if lines:
            self._deliver(lines)
        if self.spool and self.retry_due:
            self.replay()
        self._refresh()

    def _deliver(self, lines: list[str]) -> None:
        if self.spool is None:
            if not self._try_send(lines):
                self.stats.buffer_dropped += len(lines)
                self._drop(0, f"{len(lines)} points, no spool configured and {self.stats.last_error}")
            return
        if not self.spool and self.retry_due and self._try_send(lines):
            return
        # behind the backlog (order kept) — unless the spool cannot take it without losing points:
        # then a server that is up gets the fresh batch directly, whatever the backoff said
        size = sum(len(line) + 1 for line in lines)
        if not self.spool.fits(size) and self._try_send(lines):
            return
        if not self._to_spool(lines) and not self._try_send(lines):
            self._drop(len(lines), f"{len(lines)} points, the spool cannot take them and {self.stats.last_error}")

    def _to_spool(self, lines: list[str]) -> bool:
        assert self.spool is not None
        try:
            self.spool.append(lines)
        except SpoolError as exc:
            self.stats.last_error = str(exc)
            return False
        self.stats.spooled += len(lines)
        return True

    def replay(self, max_batches: int = 50) -> None:
        """Send spooled segments oldest-first; each is deleted only once the server accepted it.

        Damaged segments are quarantined; a request the server refuses is retried segment by segment
        and only the refused segments are quarantined.
        """
        if self.spool is None:
            return
        for _ in range(max_batches):
            segments, lines = self.spool.read_sound(self.spool.peek(self.batch_size))
            if not segments:
                if not self.spool:
                    break
                continue  # all damaged and quarantined: look at the next ones
            try:
                taken = self._send(lines)
                if not taken and len(segments) > 1:
                    for segment in segments:
                        if self._send(self.spool.read([segment])):
                            self.stats.replayed += segment.lines
                            self.spool.ack([segment])
                        else:
                            self.spool.quarantine(segment, "refused by the server")
                    self._mark_up()
                    continue
            except (SinkUnavailable, SinkMisconfigured) as exc:
                self._mark_down(exc)
                break
            self._mark_up()
            if taken:
                self.stats.replayed += len(lines)
                self.spool.ack(segments)
            else:
                self.spool.quarantine(segments[0], "refused by the server")
        self._refresh()

    def spool_everything(self, points: list[Point]) -> None:
        """Shutdown path: put unsent points on disk (fast, local) to be sent at next start."""
        lines, invalid = encode_many(points)
        self.stats.invalid += invalid
        if not lines:
            return
        if self.spool is not None:
            if not self._to_spool(lines):
                self._drop(len(lines), f"{len(lines)} points, {self.stats.last_error}")
            self._refresh()
        else:
            with contextlib.suppress(SinkUnavailable, SinkMisconfigured):
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
        self._drop_log = LogThrottle()
        self._dropped_seen = 0
        self.restart_pause = 1.0

    @property
    def sink(self) -> TelemetrySink:
        """The sink this writer delivers to."""
        return self.core.sink

    def submit(self, point: Point) -> bool:
        """Queue a point without blocking; False (and counted) when the buffer is full."""
        buffer = self._buffer
        if len(buffer) >= self.max_buffer:
            self.stats.buffer_dropped += 1
            if self._drop_log.due():
                self._drop_log.take_suppressed()
                log.error("telemetry buffer full (%d points): DROPPING points, %d dropped so far",
                          self.max_buffer, self.stats.buffer_dropped)  # fmt: skip
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
            try:
                await asyncio.to_thread(self.core.flush, batch)
            except Exception:
                # the points of a cycle that failed half-way are parked on disk (or counted as lost)
                await asyncio.to_thread(self.core.spool_everything, batch)
                raise
        self.stats.buffered = len(self._buffer)
        async with self._cycle:
            self._cycle.notify_all()

    async def _cycles(self) -> None:
        while not self._stopping:
            if len(self._buffer) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            await self._cycle_once()
        while self._buffer:
            await self._cycle_once()

    async def run(self) -> None:
        """Deliver batches until :meth:`stop`; then flush what is left (spooling it if needed).

        Supervised: an unexpected error in a cycle is logged with its traceback, counted in
        ``restarts``, and the cycles start again after ``restart_pause`` seconds.
        """
        self.stats.running = True
        try:
            while True:
                try:
                    await self._cycles()
                    return
                except Exception as exc:
                    self.stats.restarts += 1
                    self.stats.last_error = f"writer restarted after {type(exc).__name__}: {exc}"[:300]
                    log.exception("telemetry writer failed (restart %d); starting it again", self.stats.restarts)
                    await asyncio.sleep(self.restart_pause)
        except asyncio.CancelledError:
            # Cancelled by the TaskGroup: no more awaiting; park the remainder on disk.
            self.core.spool_everything(list(self._buffer))
            self._buffer.clear()
            raise
        finally:
            self.stats.running = False
            self.stats.buffered = len(self._buffer)
            self.core.sink.close()

    async def check(self) -> None:
        """Ask the server whether the settings can work; raises :class:`SinkMisconfigured` naming what is wrong."""
        await asyncio.to_thread(self.core.sink.check)

    def readiness(self) -> str:
        """``ok`` while telemetry can be delivered (an outage the spool rides out included), else what is wrong:
        settings the server refuses, or a writer that is not running."""
        if not self.stats.running:
            return "the telemetry writer is not running"
        if self.stats.misconfigured:
            return f"misconfigured: {self.stats.last_error}"
        return "ok"

    def health(self) -> WriterHealth:
        """The writer's state now (see :class:`WriterHealth`); ``dropping`` while points were lost since
        the previous call."""
        stats = self.stats
        dropped = stats.dropped
        since, self._dropped_seen = dropped - self._dropped_seen, dropped
        if not stats.running:
            return WriterHealth("stopped", "the telemetry writer is not running")
        if stats.misconfigured:
            return WriterHealth("misconfigured", stats.last_error)
        if since > 0:
            return WriterHealth("dropping", f"{since} points dropped ({dropped} in all)")
        if not stats.server_up:
            return WriterHealth("spooling", f"{stats.spool_lines} points spooled: {stats.last_error}")
        return WriterHealth("ok", f"{stats.written} points written")

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
        self.stats.running = True  # from now on; run() clears it when it ends
        self._task = asyncio.create_task(self.run(), name="telemetry-writer")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._task is not None:
            await self._task
            self._task = None
