"""A real ``anfang run`` (embedded broker, SQLite) on a data directory that outlives it, SIGKILLed and
started again: the harness of the rule-state restart tests (issue 17 item 3)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from process_kit import PlatformProcess, cli, operator_credentials
from testkit import Device, free_port


def register(env: dict[str, str], tmp: Path, devices: dict[str, str]) -> dict[str, str]:
    """Register the devices in one ``anfang site load`` (one process start, not one per device);
    returns each device's secret."""
    plan = {
        "site": env["ANFANG_SITE"],
        "devices": [
            {"id": dev, "kind": kind, "position": [10 * i, 0]} for i, (dev, kind) in enumerate(devices.items())
        ],
    }
    (tmp / "site.json").write_text(json.dumps(plan), encoding="utf-8")
    cli(env, tmp, "site", "load", "site.json", "--secrets-out", str(tmp / "secrets.json"))
    secrets: dict[str, str] = json.loads((tmp / "secrets.json").read_text(encoding="utf-8"))
    return {dev: secrets[dev] for dev in devices}


class Site:
    """One ``anfang run`` with ``rules`` (YAML text) and ``devices`` (id → kind), registered once."""

    def __init__(self, tmp: Path, rules: str, devices: dict[str, str]) -> None:
        (tmp / "rules").mkdir()
        (tmp / "rules" / "state.yaml").write_text(rules, encoding="utf-8")
        self.port = free_port()
        self.env = {
            "ANFANG_DATA_DIR": str(tmp / "data"),
            "ANFANG_EMBEDDED_BROKER": "true",
            "ANFANG_BROKER_BIND": f"127.0.0.1:{self.port}",
            "ANFANG_RULES_DIR": str(tmp / "rules"),
            "ANFANG_SITE": "youzheng",
            "ANFANG_LOG_LEVEL": "INFO",
        }
        self.tmp = tmp
        self.db = tmp / "data" / "anfang.db"
        self.secrets = register(self.env, tmp, devices)
        self.platform: PlatformProcess | None = None
        self.clients: list[Device] = []

    async def start(self) -> tuple[Device, ...]:
        """Start the platform; a connected operator (on the alarm and notify topics), then each device."""
        self.platform = PlatformProcess(self.env, self.tmp)
        await asyncio.to_thread(self.platform.start, 60)
        op = Device("127.0.0.1", self.port, *operator_credentials(self.env), client_id=f"op-{uuid.uuid4().hex[:6]}")
        devices = [
            Device("127.0.0.1", self.port, dev, secret, site="youzheng", client_id=dev)
            for dev, secret in self.secrets.items()
        ]
        self.clients += [op, *devices]
        for client in (op, *devices):
            assert await client.connect() == 0
        await op.subscribe("anfang/youzheng/alarms/+", "anfang/youzheng/notify/guards")
        return (op, *devices)

    def kill(self) -> None:
        """SIGKILL the platform (and drop the test's clients)."""
        for client in self.clients:
            client.close()
        self.clients.clear()
        assert self.platform is not None
        self.platform.kill()

    def close(self) -> None:
        """Stop what is still running."""
        for client in self.clients:
            client.close()
        if self.platform is not None:
            self.platform.stop()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return list(conn.execute(sql).fetchall())

    async def until(self, sql: str, test: Callable[[list[tuple[Any, ...]]], bool], timeout: float = 15) -> None:
        """Wait until the platform (another process) has written what ``test`` looks for."""
        async with asyncio.timeout(timeout):
            while not test(self.rows(sql)):  # noqa: ASYNC110 - another process writes it; nothing to wait on
                await asyncio.sleep(0.05)  # the platform writes rule state once per tick


def event(data: dict[str, Any]) -> dict[str, Any]:
    """A device event's payload (published on ``events/<type>``)."""
    return {"id": uuid.uuid4().hex, "ts": time.time(), "data": data}


async def alarm(op: Device, rule_id: str, timeout: float) -> dict[str, Any]:
    """The next alarm of this rule on the alarm topic (the platform may raise its own alarms too)."""
    async with asyncio.timeout(timeout):
        while True:
            _topic, doc = await op.expect(r"/alarms/", timeout=timeout)
            if isinstance(doc, dict) and doc.get("rule_id") == rule_id:
                return doc


async def notified(op: Device, text: str, timeout: float = 15) -> list[str]:
    """Wait for the guards' notification ``text``; the texts seen up to it, in order."""
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while text not in seen:
            _topic, doc = await op.expect(r"/notify/guards$", timeout=timeout)
            seen.append(str(doc.get("text")) if isinstance(doc, dict) else "")
    return seen
