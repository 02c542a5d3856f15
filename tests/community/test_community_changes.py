"""Issue 16 item 1: a change made anywhere (another process's store, raw SQL) is seen by the next decision.

``other`` is a second :class:`CommunityStore` on the same database, as the API or CLI of another
process would be: its writes do not touch the handler's in-process generation, only the site's change
counter (``community_changes``, raised by database triggers).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from community_testkit import NOW, SITE, Community, community_fixture, db_fixture, noisy, template  # noqa: F401 (pytest fixtures)

from community.handler import AccessHandler
from community.models import CredentialRow, PersonRow, VehicleRow
from community.store import CommunityStore
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent, TwinChange


def _event(device: str, kind: str, type_: str, data: dict[str, Any]) -> DeviceEvent:
    return DeviceEvent(SITE, device, kind, type_, uuid.uuid4().hex, NOW, data)


def _actions() -> RecordingActions:
    return RecordingActions(clock=NOW, command_results={"open": {"opened": True}})


async def _decide(handler: AccessHandler, device: str, kind: str, type_: str, data: dict[str, Any]) -> str:
    actions = _actions()
    await handler.on_event(_event(device, kind, type_, data), actions)
    opened = [c for c in actions.commands if c[1] == "open"]
    return "open" if opened else "refused"


@pytest.fixture
def other(community: Community) -> CommunityStore:
    return CommunityStore(community.cipher, SITE)


async def test_pass_revoked_and_watch_added_elsewhere_are_seen_by_the_next_decision(
    community: Community, other: CommunityStore
) -> None:
    handler = community.handler()
    row, payload = await other.passes.issue_pass(
        "p-owner", valid_from=NOW - 60, valid_until=NOW + 3600, doors=None, max_uses=10, now=NOW
    )
    qr = {"payload": payload}
    assert await _decide(handler, "door-b1-u1", "door_lock", "qr_scanned", qr) == "open"
    await other.passes.revoke_pass(row.id, by=await other.people.person("p-staff"), now=NOW)
    assert await _decide(handler, "door-b1-u1", "door_lock", "qr_scanned", qr) == "refused"
    assert await _decide(handler, "gate-north", "vehicle_gate", "qr_scanned", qr) == "refused"

    plate = {"plate": "赣G12345", "confidence": 0.97, "camera": "cam-north-1"}
    assert await _decide(handler, "gate-north", "vehicle_gate", "plate_captured", plate) == "open"
    await other.watch.add_watch(kind="plate", plate="赣G12345", reason="wanted", added_by="p-police", now=NOW)
    await _decide(handler, "gate-north", "vehicle_gate", "plate_captured", plate)
    hits = [e for e in community.platform_events if e.type == "watchlist_match"]
    assert len(hits) == 1 and hits[0].data["list_reason"] == "wanted"


async def test_deactivation_credential_revocation_consent_and_lease_end_are_seen_at_once(
    community: Community, other: CommunityStore
) -> None:
    handler = community.handler()
    card = {"card": "C0001"}
    face = {"liveness": 0.97, "embedding": noisy(template(2), 5)}
    tenant_card = {"card": "C0003"}
    assert await _decide(handler, "door-b1-u1", "door_lock", "card_presented", card) == "open"
    assert await _decide(handler, "door-b2-u1", "door_lock", "face_captured", face) == "open"
    assert await _decide(handler, "door-b1-u1", "door_lock", "card_presented", tenant_card) == "open"
    # as another process's code would write them: plain row updates, no store of this process involved
    await CredentialRow.filter(person_id="p-owner", kind="card").update(revoked=True)
    assert await _decide(handler, "door-b1-u1", "door_lock", "card_presented", card) == "refused"
    await other.people.set_face_consent("p-b2", False)
    assert await _decide(handler, "door-b2-u1", "door_lock", "face_captured", face) == "refused"
    await PersonRow.filter(id="p-tenant").update(lease_end=NOW - 1)
    assert await _decide(handler, "door-b1-u1", "door_lock", "card_presented", tenant_card) == "refused"
    await PersonRow.filter(id="p-staff").update(active=False)
    assert await _decide(handler, "door-b1-u1", "door_lock", "card_presented", {"card": "S0001"}) == "refused"


async def test_only_a_pass_use_that_leaves_none_counts_as_a_change(community: Community, other: CommunityStore) -> None:
    row, _ = await other.passes.issue_pass(
        "p-owner", valid_from=NOW, valid_until=NOW + 60, doors=None, max_uses=2, now=NOW
    )
    before = await other.change_seq()
    assert await other.passes.record_pass_use(row.id)
    assert await other.change_seq() == before, "a use with one to spare narrows nothing"
    assert await other.passes.record_pass_use(row.id)
    assert await other.change_seq() == before + 1, "the last use narrows access"
    assert not await other.passes.record_pass_use(row.id)
    await VehicleRow.filter(plate="赣G12345").delete()
    assert await other.change_seq() == before + 2


class _Watched(RecordingActions):
    """Fake actions that signal every allow-list push."""

    def __init__(self) -> None:
        super().__init__(clock=NOW)
        self.pushed = asyncio.Event()

    async def set_desired(self, device_id: str, patch: dict[str, Any]) -> int:
        self.pushed.set()
        return await super().set_desired(device_id, patch)


async def test_edge_list_holding_a_revoked_pass_is_pushed_again_without_the_periodic_reload(
    community: Community, other: CommunityStore
) -> None:
    handler = community.handler(reload_interval=3600.0)
    actions = _Watched()
    row, _ = await other.passes.issue_pass(
        "p-owner", valid_from=NOW, valid_until=NOW + 600, doors=None, max_uses=1, now=NOW
    )

    def visitors() -> set[str]:
        entries = actions.desired[-1][1]["allow_list"]["entries"]
        return {e["subject"] for e in entries if str(e["subject"]).startswith("visitor:")}

    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(handler.run())
        await handler.on_twin_change(
            TwinChange(
                SITE, "door-b1-u1", "door_lock", 1, NOW, {"access_mode": "edge"}, {}, {}, {"access_mode": "edge"}
            ),
            actions,
        )
        assert visitors() == {f"visitor:{row.id}"}
        actions.pushed.clear()
        await other.passes.revoke_pass(row.id, by=await other.people.person("p-owner"), now=NOW)
        async with asyncio.timeout(10):
            await actions.pushed.wait()  # pushed by the change feed: the periodic reload is an hour away
        runner.cancel()
    assert visitors() == set()
