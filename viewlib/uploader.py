"""The view library uploader: captures into the outbox, and the outbox to the server.

:class:`ViewLibUploader` is a :class:`twins.hooks.PlatformHandler`: the platform hands it device
events on its own dispatch queue, so access decisions never wait for it. A face, vehicle or person
capture with an image from a camera that has a view library code becomes one GA/T 1400 object in
the outbox (encrypted). Its :meth:`~ViewLibUploader.run` task registers the platform with the
server, keeps the registration alive, uploads due objects in batches and deletes each one the
server accepted; anything else is retried with backoff until ``max_age_s``. A server that is down
only delays uploads: the outbox is in the database, so a restart picks up where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import timedelta, timezone

from prometheus_client.core import Metric
from tortoise.backends.base.client import BaseDBAsyncClient

from anfang.config import ConfigError, ViewLibSettings
from community.crypto import FieldCipher
from telemetry.metrics import counter, gauge
from twins.hooks import DeviceEvent, PlatformActions, TwinChange
from viewlib.client import ViewLibClient
from viewlib.errors import AuthRefused, OutboxError, ServerRejected, ViewLibError
from viewlib.gat1400 import CAPTURE_EVENTS, CaptureError, build_object, capture_from_event
from viewlib.store import OutboxRow, ViewLibOutbox

__all__ = ["ViewLibUploader", "open_uploader"]

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 2 * 1024 * 1024
_HOUSEKEEPING_S = 3600.0
_ERROR_LOG_EVERY_S = 60.0


def backoff(failures: int, low: float, high: float) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row (pure)."""
    return float(min(high, low * 2.0 ** max(failures - 1, 0)))


class ViewLibUploader:
    """Uploads the site's captures to a GA/T 1400 view library (see module docstring)."""

    def __init__(
        self,
        settings: ViewLibSettings,
        outbox: ViewLibOutbox,
        client: ViewLibClient,
        *,
        clock: Callable[[], float] = time.time,
        poll_s: float = 5.0,
    ) -> None:
        self.settings, self.outbox, self.client = settings, outbox, client
        self._tz = timezone(timedelta(hours=settings.utc_offset_h))
        self._clock, self._poll_s = clock, poll_s
        self._wake = asyncio.Event()
        self.registered = False
        self.register_failures = 0
        self._register_at = 0.0
        self._keepalive_at = 0.0
        self._housekeeping_at = 0.0
        self._last_error_log = 0.0
        self._unmapped_seen: set[str] = set()
        self.stored = self.delivered = self.retried = self.given_up = 0
        self.bad_captures = self.unmapped = self.store_errors = self.auth_refusals = 0
        self.pending = 0
        self.round_done = asyncio.Event()  # set after every round of run (for observers such as tests)

    # --- PlatformHandler: captures into the outbox -------------------------------------------------
    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        kind = CAPTURE_EVENTS.get(event.type)
        if kind is None or kind not in self.settings.kinds or not event.data.get("image_jpeg_b64"):
            return
        code = self.settings.devices.get(event.device_id)
        if code is None:
            self.unmapped += 1
            if event.device_id not in self._unmapped_seen:
                self._unmapped_seen.add(event.device_id)
                log.warning("viewlib: %s has no view library code (viewlib.devices): its captures are not uploaded",
                            event.device_id, extra={"device": event.device_id})  # fmt: skip
            return
        try:
            capture = capture_from_event(
                event.type, event.id, event.ts, event.data, code, max_image_bytes=MAX_IMAGE_BYTES
            )
        except CaptureError as exc:
            self.bad_captures += 1
            log.warning("viewlib: capture %s of %s not uploaded: %s", event.id, event.device_id, exc.reason,
                        extra={"device": event.device_id})  # fmt: skip
            return
        if capture is None:
            return
        object_id, obj = build_object(capture, self._tz)
        try:
            await self.outbox.add(kind, object_id, obj, self._clock())
        except OutboxError as exc:
            self.store_errors += 1
            self._log_error("viewlib: capture %s of %s lost: %s", event.id, event.device_id, exc, level=logging.ERROR)
            return
        self.stored += 1
        self._wake.set()

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        return None

    # --- the outbox to the server ------------------------------------------------------------------
    async def run(self) -> None:
        """Register, keep alive, upload, until cancelled; then unregister."""
        try:
            while True:
                self._wake.clear()
                try:
                    delay = await self.step()
                except OutboxError as exc:
                    self._log_error("viewlib: outbox unavailable: %s (retrying)", exc)
                    delay = self._poll_s
                self.round_done.set()
                if delay > 0:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
                    # that arrives as it times out, and the task would never stop
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
        finally:
            if self.registered:
                with contextlib.suppress(ViewLibError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self.client.system("UnRegister")
                        log.info("viewlib: unregistered from %s", self.client.base_url)
                self.registered = False

    async def step(self) -> float:
        """One round; returns the seconds until the next one is needed (0: at once)."""
        now = self._clock()
        if not self.registered and not await self._register(now):
            return max(0.0, self._register_at - now)
        if now >= self._keepalive_at:
            try:
                await self.client.system("Keepalive")
            except ViewLibError as exc:
                self._lost(exc)
                return 0.0
            self._keepalive_at = now + self.settings.keepalive_s
            self.register_failures = 0
        if now >= self._housekeeping_at:
            self._housekeeping_at = now + _HOUSEKEEPING_S
            if expired := await self.outbox.expire(now - self.settings.max_age_s):
                self.given_up += expired
                log.error("viewlib: %d captures could not be uploaded within %.0f s and were given up",
                          expired, self.settings.max_age_s)  # fmt: skip
        rows = await self.outbox.due(now, self.settings.batch)
        more = len(rows) == self.settings.batch
        by_kind: dict[str, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            by_kind[row.kind].append(row)
        for batch in by_kind.values():
            if not await self._upload(batch, now):
                return 0.0
        self.pending = await self.outbox.pending()
        return 0.0 if more else min(self._poll_s, max(0.0, self._keepalive_at - now))

    async def _register(self, now: float) -> bool:
        if now < self._register_at:
            return False
        try:
            await self.client.system("Register")
        except ViewLibError as exc:
            self.register_failures += 1
            wait = backoff(self.register_failures, self.settings.retry_min_s, self.settings.retry_max_s)
            self._register_at = now + wait
            if isinstance(exc, AuthRefused):
                self.auth_refusals += 1
                log.error("viewlib: %s refused to register platform %s: wrong viewlib.username or password "
                          "(ANFANG_VIEWLIB_PASSWORD); retrying in %.0f s", self.client.base_url,
                          self.client.device_id, wait)  # fmt: skip
            else:
                self._log_error(
                    "viewlib: cannot register with %s: %s (retrying in %.0f s)", exc.where, exc.reason, wait
                )
            return False
        if self.register_failures:
            log.info("viewlib: %s reachable again", self.client.base_url)
        log.info("viewlib: registered with %s as %s", self.client.base_url, self.client.device_id)
        # failures are forgiven once the server accepts a keep-alive or an upload, not on registration alone
        self.registered, self._register_at = True, 0.0
        self._keepalive_at = now + self.settings.keepalive_s
        return True

    def _lost(self, exc: ViewLibError) -> None:
        """The server went away or forgot us: register again (the outbox keeps everything)."""
        # backoff even for a 401: a server that forgets us after every registration must not be hammered
        self.registered = False
        self.register_failures += 1
        self._register_at = self._clock() + backoff(
            self.register_failures, self.settings.retry_min_s, self.settings.retry_max_s
        )
        self._log_error("viewlib: lost %s: %s (registering again)", exc.where, exc.reason)

    async def _upload(self, rows: list[OutboxRow], now: float) -> bool:
        """Upload one kind's due rows; ``False`` when the server is gone (nothing was counted against them)."""
        ids = [r.object_id for r in rows]
        try:
            statuses = await self.client.upload(rows[0].kind, [r.obj for r in rows], ids)
        except ServerRejected as exc:
            statuses, error = {}, exc.reason
        except ViewLibError as exc:
            self._lost(exc)
            return False
        else:
            error = "no status for it in the answer"
        accepted = [r.id for r in rows if (s := statuses.get(r.object_id)) is not None and s.ok]
        await self.outbox.delete(accepted)
        self.delivered += len(accepted)
        if accepted:
            self.register_failures = 0
        for r in rows:
            status = statuses.get(r.object_id)
            if status is not None and status.ok:
                continue
            why = f"StatusCode {status.code}: {status.text}" if status is not None else error
            wait = backoff(r.attempts + 1, self.settings.retry_min_s, self.settings.retry_max_s)
            await self.outbox.retry_at([r.id], now + wait, why)
            self.retried += 1
            self._log_error("viewlib: %s %s not accepted (%s); retrying in %.0f s", r.kind, r.object_id, why, wait)
        if accepted:
            log.debug("viewlib: %d %s objects uploaded", len(accepted), rows[0].kind)
        return True

    def _log_error(self, msg: str, *args: object, level: int = logging.WARNING) -> None:
        """Log a failure, at most once a minute (an outage must not flood the log)."""
        if time.monotonic() - self._last_error_log >= _ERROR_LOG_EVERY_S:
            self._last_error_log = time.monotonic()
            log.log(level, msg, *args)

    def metrics(self) -> Iterable[Metric]:
        """The uploader on ``/metrics``."""
        yield counter("viewlib_stored", "Captures stored for the police view library.", self.stored)
        yield counter("viewlib_delivered", "Captures the police view library accepted.", self.delivered)
        yield counter("viewlib_retried", "Uploads of a capture the view library did not accept (retried).",
                      self.retried)  # fmt: skip
        yield counter("viewlib_given_up", "Captures given up after viewlib.max_age_s.", self.given_up)
        yield counter("viewlib_bad_captures", "Capture events with an unusable image or box.", self.bad_captures)
        yield gauge("viewlib_pending", "Captures waiting in the view library outbox.", self.pending)
        yield gauge("viewlib_registered", "1 while registered with the view library.", int(self.registered))


def read_password(settings: ViewLibSettings) -> str:
    """The digest password: ``password`` (ANFANG_VIEWLIB_PASSWORD) or the first line of ``password_file``."""
    if settings.password is not None:
        return settings.password
    assert settings.password_file is not None  # the settings validate that one of them is set
    try:
        return settings.password_file.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError) as exc:
        raise ConfigError(f"viewlib.password_file {settings.password_file}: cannot read a password ({exc})") from None


@contextlib.asynccontextmanager
async def open_uploader(
    settings: ViewLibSettings, conn: BaseDBAsyncClient, site: str, cipher: FieldCipher, *, poll_s: float = 5.0
) -> AsyncIterator[ViewLibUploader]:
    """The site's uploader on the registry database's connection, its HTTP client closed at exit."""
    assert settings.url is not None and settings.device_id is not None  # validated when enabled
    client = ViewLibClient(
        settings.url,
        settings.device_id,
        settings.username or settings.device_id,
        read_password(settings),
        timeout_s=settings.timeout_s,
    )
    try:
        yield ViewLibUploader(settings, ViewLibOutbox(conn, site, cipher), client, poll_s=poll_s)
    finally:
        await client.aclose()
