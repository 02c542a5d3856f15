"""Desired-state writes the leader makes to twins another worker owns, over the device's own
``twin/update`` topic (the same request an operator sends), answered on the leader's MQTT 5
response topic. The owner applies them in order with the device's reports, so its cached twin
never goes stale and versions stay exact."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from anfang.mqtt_link import MqttLink
from twins.errors import BadRequest, NotFound, SchemaError, TooLarge, TwinError, VersionConflict

log = logging.getLogger(__name__)

_ERRORS: dict[int, type[TwinError]] = {400: BadRequest, 404: NotFound, 409: VersionConflict, 413: TooLarge}


class RemoteTwins:
    """Sends ``twin/update`` requests and resolves them from the replies on :attr:`reply_topic`."""

    def __init__(self, link: MqttLink, reply_topic: str, timeout: float = 10.0) -> None:
        self._link, self.reply_topic, self._timeout = link, reply_topic, timeout
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def set_desired(
        self, site: str, device_id: str, patch: dict[str, Any], expected_version: int | None = None
    ) -> int:
        token = f"leader-{uuid.uuid4().hex}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        body: dict[str, Any] = {"desired": patch, "client_token": token}
        if expected_version is not None:
            body["version"] = expected_version
        self._link.publish(f"anfang/{site}/{device_id}/twin/update", body, response_topic=self.reply_topic)
        try:
            reply = await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise TwinError(
                f"the worker owning {device_id} did not answer within {self._timeout:.0f}s", device_id=device_id
            ) from None
        finally:
            self._pending.pop(token, None)
        if "code" in reply:
            code = int(reply["code"])
            if code == 422:
                raise SchemaError(str(reply.get("message")), path="desired", device_id=device_id)
            raise _ERRORS.get(code, TwinError)(str(reply.get("message")), device_id=device_id)
        return int(reply["version"])

    def on_reply(self, payload: bytes) -> None:
        try:
            reply = json.loads(payload)
            token = reply.get("client_token") if isinstance(reply, dict) else None
            future = self._pending.get(token) if isinstance(token, str) else None
        except (ValueError, UnicodeDecodeError):
            future = None
        if future is None:
            log.info("reply for an unknown or finished desired-state update: %.200r", payload)
        elif not future.done():
            future.set_result(reply)
