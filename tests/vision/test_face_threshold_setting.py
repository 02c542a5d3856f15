"""The site's face threshold (``vision.face_threshold``) reaches the door decision and the 人证合一 check."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from community_testkit import NOW, SITE, Community, community_fixture, db_fixture, template  # noqa: F401 (pytest fixtures)

from anfang.config import ConfigError, load_settings
from community.api import CommunityServices, create_app
from community.models import AccessDecisionRow
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent
from vision.gallery import DEFAULT_THRESHOLD


def at_cosine(base: list[float], cos: float, seed: int) -> list[float]:
    """A unit template whose cosine to ``base`` is exactly ``cos``."""
    b = np.asarray(base, dtype=np.float64)
    b /= np.linalg.norm(b)
    u = np.random.default_rng(seed).normal(size=b.size)
    u -= (u @ b) * b
    u /= np.linalg.norm(u)
    return [float(x) for x in cos * b + np.sqrt(1 - cos * cos) * u]


def face_at_door(embedding: list[float]) -> DeviceEvent:
    return DeviceEvent(
        SITE,
        "door-b1-u1",
        "door_lock",
        "face_captured",
        uuid.uuid4().hex,
        NOW,
        {"liveness": 0.97, "embedding": embedding},
    )


def test_threshold_is_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "anfang.yaml"
    cfg.write_text("vision:\n  face_threshold: 0.6\n")
    assert load_settings(None, environ={}).vision.face_threshold == DEFAULT_THRESHOLD
    assert load_settings(cfg, environ={}).vision.face_threshold == 0.6
    assert load_settings(cfg, environ={"ANFANG_FACE_THRESHOLD": "0.7"}).vision.face_threshold == 0.7
    with pytest.raises(ConfigError, match="face_threshold"):
        load_settings(None, environ={"ANFANG_FACE_THRESHOLD": "1.5"})


async def test_door_decides_with_the_site_threshold(community: Community, tmp_path: Path) -> None:
    lenient, actions = community.handler(), RecordingActions(clock=NOW, command_results={"open": {"opened": True}})
    enrolled = (await lenient.snapshot()).face_templates["p-tenant"]  # lives behind door-b1-u1
    capture = at_cosine(enrolled.tolist(), 0.62, seed=3)  # the resident, captured badly
    await lenient.on_event(face_at_door(capture), actions)
    assert [(c[1], c[2]["subject"]) for c in actions.commands] == [("open", "p-tenant")]

    cfg = tmp_path / "anfang.yaml"
    cfg.write_text("vision:\n  face_threshold: 0.7\n")
    strict_site = load_settings(cfg, environ={})
    strict = community.handler(face_threshold=strict_site.vision.face_threshold)
    actions = RecordingActions(clock=NOW + 60, command_results={"open": {"opened": True}})
    await strict.on_event(face_at_door(capture), actions)
    assert actions.commands == []
    row = await AccessDecisionRow.all().order_by("-ts", "-id").first()
    assert row is not None and (row.allowed, row.reason) == (False, "unknown_face")


async def test_enrolment_check_uses_the_site_threshold(community: Community) -> None:
    token = await community.records.create_token("p-staff", label="test", now=NOW)
    headers = {"Authorization": f"Bearer {token}"}
    body = {"id_photo_embedding": template(2), "live_embedding": at_cosine(template(2), 0.62, seed=5)}
    for site_threshold, status in ((DEFAULT_THRESHOLD, 200), (0.7, 422)):
        app = create_app(
            CommunityServices(community.store, community.records, clock=lambda: NOW, face_threshold=site_threshold)
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            r = await client.post("/people/p-b2/enrolment", json=body, headers=headers)
            assert r.status_code == status, r.json()
            if status == 422:
                assert r.json()["code"] == "face_id_mismatch"
                # An explicit threshold in the request still wins (an operator's deliberate choice).
                r = await client.post("/people/p-b2/enrolment", json={**body, "threshold": 0.6}, headers=headers)
                assert r.status_code == 200
