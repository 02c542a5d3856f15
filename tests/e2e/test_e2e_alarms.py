"""One alarm system, end to end through ``anfang run``: a watch-listed plate at the gate while the police
desk's webhook receiver is down gives exactly one alarm, seen on MQTT and in the HTTP API, acknowledged
through the API, and delivered to the webhook once the receiver is back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI, Request
from process_kit import ANFANG, PlatformProcess
from testkit import Device, free_port

from anfang.http_server import ApiServer

SITE = "testsite"
PLATE = "京A99999"


def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    out = subprocess.run([ANFANG, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.timeout(300)  # a platform process, a webhook retry after the receiver is back; slow on a busy machine
async def test_a_watchlist_plate_raises_one_alarm_acknowledged_in_the_api_and_delivered_once_the_webhook_is_back(
    tmp_path: Path,
) -> None:
    api_port, broker_port, hook_port = free_port(), free_port(), free_port()
    config = {
        "site": SITE,
        "data_dir": str(tmp_path / "data"),
        "api_bind": f"127.0.0.1:{api_port}",
        "broker": {"bind": f"127.0.0.1:{broker_port}", "hash_iterations": 1000},
        "alarms": {
            "webhooks": [
                {
                    "name": "police-desk",
                    "url": f"http://127.0.0.1:{hook_port}/alerts",
                    "min_severity": "high",
                    "kinds": ["watchlist_match"],
                }
            ]
        },
    }
    (tmp_path / "anfang.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    plan = {
        "site": SITE,
        "buildings": [{"id": "b1", "name": "1栋", "units": 1}],
        "devices": [{"id": "gate-north", "kind": "vehicle_gate", "name": "北门道闸"}],
        "people": [{"id": "p-police", "role": "police", "name": "民警", "face_consent": False}],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    _cli(env, tmp_path, "community", "import", "plan.yaml")
    _cli(
        env,
        tmp_path,
        "community",
        "watchlist",
        "add",
        "--plate",
        PLATE,
        "--reason",
        "stolen vehicle",
        "--by",
        "p-police",
    )
    token = json.loads(_cli(env, tmp_path, "community", "token", "create", "p-police"))["token"]
    gate_secret = _cli(env, tmp_path, "devices", "add", "gate-north", "--kind", "vehicle_gate").split("secret: ")[1]
    gate_secret = gate_secret.split()[0]
    operator_secret = tmp_path / "data" / "secrets" / "anfang-operator.secret"

    calls: list[dict[str, Any]] = []
    delivered = asyncio.Event()
    receiver = FastAPI()

    @receiver.post("/alerts")
    async def alerts(request: Request) -> dict[str, str]:
        calls.append(await request.json())
        delivered.set()
        return {"status": "received"}

    platform = PlatformProcess(env, tmp_path, own_api_port=False)  # the API port is in the config file
    platform.start(timeout=90)
    devices: list[Device] = []
    api = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{api_port}", timeout=10, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        police = Device(
            "127.0.0.1",
            broker_port,
            "anfang-operator",
            operator_secret.read_text().strip(),
            client_id=f"console-{uuid.uuid4().hex[:6]}",
            will=False,
        )
        gate = Device("127.0.0.1", broker_port, "gate-north", gate_secret, site=SITE, client_id="gate-north")
        devices += [police, gate]
        assert await police.connect() == 0 and await gate.connect() == 0
        await police.subscribe(f"anfang/{SITE}/alarms/+")

        await gate.published(
            gate.publish(
                "events/plate_captured",
                {"id": uuid.uuid4().hex, "ts": time.time(), "data": {"plate": PLATE, "confidence": 0.98}},
            )
        )
        _topic, raised = await police.expect(r"/alarms/", timeout=30)
        assert raised["kind"] == "watchlist_match", raised["message"]
        assert raised["state"] == "raised" and raised["subject"] == PLATE
        assert raised["audience"] == "police" and raised["evidence"]["device"] == "gate-north"

        everything = (await api.get("/alarms", params={"state": ["raised", "acknowledged", "cleared"]})).json()
        assert [a["id"] for a in everything] == [raised["id"]], "a watchlist hit gives exactly one alarm"

        acked = await api.post(f"/alarms/{raised['id']}/ack", json={"note": "patrol sent to the north gate"})
        assert acked.status_code == 200 and acked.json()["acked_by"] == "p-police"
        _, on_mqtt = await police.expect(r"/alarms/", timeout=30)
        assert on_mqtt["id"] == raised["id"] and on_mqtt["state"] == "acknowledged"

        assert calls == []  # the receiver is still down: nothing could be delivered yet
        async with ApiServer(receiver, f"127.0.0.1:{hook_port}"):
            await asyncio.wait_for(delivered.wait(), 90)  # the next retry after it came back
        [call] = calls
        assert call["event"] == "raised" and call["contact"] == "police-desk"
        assert call["alarm"]["id"] == raised["id"] and call["alarm"]["kind"] == "watchlist_match"
        final = (await api.get(f"/alarms/{raised['id']}")).json()
        assert final["state"] == "acknowledged" and final["count"] == 1
    finally:
        await api.aclose()
        for dev in devices:
            dev.close()
        platform.stop()
