"""Duration timers survive a worker's death: two ``anfang run`` workers of one site on Mosquitto and
PostgreSQL, each with its OWN data directory (as on two hosts). Worker A arms a ``for:`` timer and is
SIGKILLed before it is due; worker B takes the site's lease and raises the alarm when the timer is due:
``standby`` takes over before the due time, ``late`` starts only once the timer is overdue and fires
it at once."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from process_kit import (
    PlatformProcess,
    add_device,
    fresh_postgres_database,
    operator_credentials,
    site_env,
    start_mosquitto,
)
from testkit import Device, free_port

FOR_S = 4.0
RULE = f"""
rules:
  - id: door-held
    description: the door stays open
    when: [{{twin: {{kind: door_lock, field: door, to: open}}}}]
    for: {FOR_S:g}s
    then: [{{raise_alarm: {{kind: door_held_open, severity: medium, subject: "{{{{ device.id }}}}", message: held}}}}]
"""


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_postgres_database("anfang_takeover") as url:
        yield url


async def pending_timer(pg: asyncpg.Connection, timeout: float = 15) -> float:
    """The due time of the site's ``for`` timer, once a worker has written it."""
    async with asyncio.timeout(timeout):
        while True:
            due = await pg.fetchval(
                "SELECT due FROM rule_timers WHERE site = 'youzheng' AND key LIKE 'for|door-held|%'"
            )
            if due is not None:
                return float(due)
            await asyncio.sleep(0.05)  # the worker writes its timers once per tick, in another process


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("b_starts", ["standby", "late"])
async def test_a_for_timer_armed_by_a_killed_worker_fires_in_the_next_worker_on_another_data_dir(
    tmp_path: Path, pg_url: str, b_starts: str
) -> None:
    port = free_port()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "held.yaml").write_text(RULE, encoding="utf-8")
    # what the workers of a site share (from the deployment, not a data directory): database, broker,
    # platform account, key for personal data, rules
    base = site_env(
        port,
        pg_url,
        {
            "ANFANG_MQTT_PASSWORD": secrets.token_urlsafe(24),
            "ANFANG_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "ANFANG_RULES_DIR": str(tmp_path / "rules"),
        },
    )
    env_a = {**base, "ANFANG_DATA_DIR": str(tmp_path / "host-a")}
    env_b = {**base, "ANFANG_DATA_DIR": str(tmp_path / "host-b")}
    secret = add_device(env_a, tmp_path, "door-b1-u1", "door_lock")
    broker = start_mosquitto(env_a, tmp_path, port)
    first, second = PlatformProcess(env_a, tmp_path), PlatformProcess(env_b, tmp_path)
    pg = await asyncpg.connect("postgresql://" + pg_url.split("://", 1)[1])
    devices: list[Device] = []
    try:
        first.start()
        if b_starts == "standby":
            second.start(wait_ready=False)
            assert await asyncio.to_thread(second.standing_by.wait, 30), "".join(second.log[-30:])
        op = Device("127.0.0.1", port, *operator_credentials(env_a), client_id="op", will=False)
        door = Device("127.0.0.1", port, "door-b1-u1", secret, site="youzheng", client_id="door-b1-u1")
        devices += [op, door]
        assert await op.connect() == 0 and await door.connect() == 0
        await op.subscribe("anfang/youzheng/alarms/+")

        await door.published(door.publish("twin/reported", {"seq": 1, "state": {"door": "open"}}))
        due = await pending_timer(pg)
        first.kill()
        killed_at = time.time()
        assert killed_at < due, "worker A was too slow: the timer was due before it could be killed"
        assert await pg.fetchval("SELECT COUNT(*) FROM alarms") == 0

        if b_starts == "late":
            await asyncio.sleep(due - time.time() + 0.5)  # nothing to wait on: the clock must pass the due time
            second.start()
        assert await asyncio.to_thread(second.ready.wait, 30), "worker B did not take over"
        took_over_at = time.time()
        _topic, alarm = await op.expect(r"/alarms/", timeout=FOR_S + 20)
        row = await pg.fetchrow("SELECT id, state, rule_id, subject, raised_at FROM alarms")
    finally:
        for dev in devices:
            dev.close()
        await pg.close()
        first.stop()
        second.stop()
        broker.stop()
    assert isinstance(alarm, dict), alarm
    assert (alarm["rule_id"], alarm["subject"], alarm["state"]) == ("door-held", "door-b1-u1", "raised")
    assert row is not None and dict(row) == _row(alarm), "the alarm B published is the one in the database"
    # B fired it when it was due, or at once on takeover if the timer was overdue by then
    assert due <= alarm["raised_at"] <= max(due, took_over_at) + 5.0
    if b_starts == "late":
        assert alarm["raised_at"] > due + 0.5


def _row(alarm: dict[str, Any]) -> dict[str, Any]:
    return {k: alarm[k] for k in ("id", "state", "rule_id", "subject", "raised_at")}
