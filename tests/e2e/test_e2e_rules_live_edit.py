"""Issue 17's live edit: a typo in ``door_forced.yaml`` on a running platform keeps the last valid
version of the rule, so a forced door still raises its alarm; the broken file is an operator alarm
naming ``file:line`` and a number on ``/metrics``, and fixing the file clears that alarm."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from platform_kit import make_settings, running_platform
from testkit import free_port

from anfang.app import Services
from anfang.config import Settings
from registry.store import Registry

BUILTIN = Path(__file__).parents[2] / "rules" / "builtin"


@pytest.mark.timeout(300)  # the full platform (vision models included) on a busy machine
async def test_a_typo_in_door_forced_on_a_running_platform_still_raises_the_forced_door_alarm(tmp_path: Path) -> None:
    from anfang.services import RulesFeed, open_services  # the full platform: models load only here

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for f in BUILTIN.glob("*.yaml"):
        shutil.copy(f, rules_dir / f.name)
    settings: Settings = make_settings(tmp_path, embedded=True, port=free_port())
    settings.rules_dir = rules_dir
    feeds: list[RulesFeed] = []

    @contextlib.asynccontextmanager
    async def services(settings: Settings, registry: Registry) -> AsyncIterator[Services]:
        async with open_services(settings, registry) as built:
            feeds.extend(h for h in built.handlers if isinstance(h, RulesFeed))
            yield built

    async with running_platform(tmp_path, "amqtt", services, settings) as stack:
        secret = await stack.add_device("door-b1-u1", "door_lock")
        door = await stack.device("door-b1-u1", secret)
        op = await stack.operator()
        await op.subscribe(f"anfang/{stack.site}/alarms/+")
        [feed] = feeds

        path = rules_dir / "door_forced.yaml"
        good = path.read_text(encoding="utf-8")
        path.write_text(good.replace("type: door_forced", "typ: door_forced"), encoding="utf-8")
        problem = await expect_alarm(op, "rule_invalid")
        assert f"{path}:5:" in problem["message"] and "door-forced" in problem["message"], problem
        assert metric(feed, "rule_file_problems") == 1 and metric(feed, "rules_stale") == 1

        await door.published(door.publish("events/door_forced", {"id": "f-1", "ts": time.time(), "data": {}}))
        alarm = await expect_alarm(op, "door_forced")
        assert (alarm["subject"], alarm["severity"], alarm["state"]) == ("door-b1-u1", "critical", "raised")

        path.write_text(good, encoding="utf-8")
        cleared = await expect_alarm(op, "rule_invalid")
        assert cleared["state"] == "cleared" and cleared["id"] == problem["id"]
        assert metric(feed, "rule_file_problems") == 0 and metric(feed, "rules_stale") == 0


async def expect_alarm(op: Any, kind: str, timeout: float = 60.0) -> dict[str, Any]:
    """The next alarm document of ``kind`` published on the site's alarm topic."""
    async with asyncio.timeout(timeout):
        while True:
            _topic, doc = await op.expect(r"/alarms/", timeout=timeout)
            if isinstance(doc, dict) and doc.get("kind") == kind:
                return doc


def metric(feed: Any, name: str) -> float:
    """One sample of the rules engine's ``/metrics`` families."""
    for family in feed.metrics():
        if family.name.endswith(name):
            return float(family.samples[0].value)
    raise AssertionError(f"no metric {name}")
