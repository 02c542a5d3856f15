"""A small blocking MQTT client for operators' CLI commands (``anfang twin get/set``).

It uses the same MQTT API as any service: ``twin/get`` -> ``twin/document`` and
``twin/update`` -> ``twin/update/accepted|rejected``, matched by ``client_token``.
"""

from __future__ import annotations

import json
import queue
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from twins.topics import ROOT


class OperatorError(Exception):
    """The request failed: not connected, rejected (with code) or no answer in time."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class OperatorClient:
    def __init__(self, host: str, port: int, username: str, password: str, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._replies: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._connected: queue.Queue[int] = queue.Queue()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"anfang-cli-{uuid.uuid4().hex[:8]}")
        self._client.username_pw_set(username, password)
        self._client.on_connect = lambda c, u, f, rc, p: self._connected.put(rc.value)
        self._client.on_message = self._on_message
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise OperatorError(f"cannot reach the MQTT broker at {host}:{port}: {exc}") from None
        self._client.loop_start()
        try:
            rc = self._connected.get(timeout=timeout)
        except queue.Empty:
            raise OperatorError("no answer from the MQTT broker") from None
        if rc != 0:
            self.close()
            raise OperatorError(f"the MQTT broker refused the operator account (reason {rc})")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(body, dict):
            self._replies.put((msg.topic, body))

    def _request(self, site: str, device: str, verb: str, body: dict[str, Any], replies: list[str]) -> dict[str, Any]:
        token = uuid.uuid4().hex
        base = f"{ROOT}/{site}/{device}/twin"
        for reply in replies:
            self._client.subscribe(f"{base}/{reply}", qos=1)
        self._client.publish(f"{base}/{verb}", json.dumps({**body, "client_token": token}), qos=1)
        while True:
            try:
                topic, answer = self._replies.get(timeout=self._timeout)
            except queue.Empty:
                raise OperatorError(f"no answer from the platform for {device} within {self._timeout:.0f}s") from None
            if answer.get("client_token") != token:
                continue
            if topic.endswith("/rejected"):
                raise OperatorError(f"rejected: {answer.get('code')} {answer.get('message')}", answer.get("code"))
            return answer

    def get(self, site: str, device: str) -> dict[str, Any]:
        return self._request(site, device, "get", {}, ["document", "update/rejected"])

    def update(
        self, site: str, device: str, desired: dict[str, Any], version: int | None = None, ttl: float | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"desired": desired}
        if version is not None:
            body["version"] = version
        if ttl is not None:
            body["ttl"] = ttl
        return self._request(site, device, "update", body, ["update/accepted", "update/rejected"])

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs (dotted keys nest; values are JSON when they parse, else strings)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
