"""Commands to devices: publish with a correlation id, wait for the device's answer, record the outcome.

The answer arrives in an ingest batch (``cmd/{name}/result``); :meth:`CommandDesk.finish` resolves the
waiting sender and returns the records to commit with that batch. An unanswered command times out: it is
recorded as such and announced on ``_platform/commands/{id}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from anfang.counters import Counters
from anfang.ingest import Outcome
from anfang.mqtt_link import MqttLink
from registry.records import CommandRecord, DeviceInfo
from registry.store import TwinStore
from twins import topics
from twins.errors import BadRequest
from twins.hooks import CommandResult

__all__ = ["CommandDesk"]

log = logging.getLogger(__name__)


class CommandDesk:
    """Commands this worker sent and is waiting for."""

    def __init__(
        self,
        link: MqttLink,
        store: TwinStore,
        counters: Counters,
        device: Callable[[str], Awaitable[DeviceInfo]],
        timeout: float = 10.0,
    ) -> None:
        self.link, self.store, self.counters, self._device, self.timeout = link, store, counters, device, timeout
        self._pending: dict[str, tuple[asyncio.Future[CommandResult], CommandRecord]] = {}

    def finish(self, outcome: Outcome, now: float) -> list[CommandRecord]:
        """Resolve the commands a batch answered; their records, to commit with the batch."""
        records = []
        for answer in outcome.answers:
            pending = self._pending.pop(answer.reply.id, None)
            if pending is None:
                log.info("result for unknown or finished command %s from %s", answer.reply.id, answer.device_id)
                continue
            future, sent = pending
            status = "ok" if answer.reply.ok else "error"
            records.append(
                CommandRecord(
                    sent.id, sent.device_id, sent.name, sent.args, status, answer.reply.result, sent.created_at, now
                )
            )
            if not future.done():
                future.set_result(CommandResult(sent.id, answer.reply.ok, answer.reply.result, answer.reply.error))
        return records

    async def send(
        self, device_id: str, name: str, args: dict[str, Any], timeout: float | None = None
    ) -> CommandResult:
        """Send ``name`` to a device and wait for its answer (or the time-out)."""
        info = await self._device(device_id)
        if not topics.ID_RE.match(name):
            raise BadRequest(f"invalid command name {name!r}")
        wait = self.timeout if timeout is None else timeout
        now = time.time()
        record = CommandRecord(uuid.uuid4().hex, device_id, name, args, "sent", None, now, None)
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._pending[record.id] = (future, record)
        # publish first (a gate should not wait on the database to open); the record follows, and
        # never overwrites an answer that was recorded before it
        self.link.publish(
            topics.command_topic(info.site, device_id, name),
            {"id": record.id, "args": args, "ts": now, "timeout": wait},
        )
        self.counters.commands_sent += 1
        try:
            await self.store.record_command_sent(record)
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            self._pending.pop(record.id, None)
            return await self._timed_out(info, record, wait)

    async def _timed_out(self, info: DeviceInfo, record: CommandRecord, wait: float) -> CommandResult:
        self.counters.commands_timed_out += 1
        log.warning(
            "command %s %s to %s timed out after %.1fs",
            record.name,
            record.id,
            record.device_id,
            wait,
            extra={"device": record.device_id},
        )
        done = time.time()
        timed_out = CommandRecord(
            record.id, record.device_id, record.name, record.args, "timeout", None, record.created_at, done
        )
        await self.store.commit([], commands=[timed_out])
        self.link.publish(
            topics.platform_topic(info.site, f"commands/{record.id}"),
            {"id": record.id, "device_id": record.device_id, "name": record.name, "status": "timeout", "ts": done},
        )
        return CommandResult(record.id, False, {}, "timed out", timed_out=True)
