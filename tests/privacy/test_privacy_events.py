"""Credentials and capture images never reach device_events in the clear (issue 15, items 2 and 3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from platform_kit import running_platform

from anfang.app import site_cipher
from privacy.captures import decrypt_image
from privacy.scrub import protect_event

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
KEY = b"k" * 32


def keyed(value: str, namespace: str) -> str:
    return hmac.new(KEY, f"{namespace}:{value}".encode(), hashlib.sha256).hexdigest()


@given(
    card=st.text(min_size=1, max_size=30).filter(str.strip),
    pin=st.text("0123456789", min_size=4, max_size=8),
    payload=st.text(min_size=8, max_size=200),
    extra=st.dictionaries(st.sampled_from(["camera", "direction", "liveness", "confidence"]), st.integers()),
)
def test_no_raw_credential_survives(card: str, pin: str, payload: str, extra: dict[str, int]) -> None:
    for data in ({"card": card, **extra}, {"pin": pin, **extra}, {"payload": payload, **extra}):
        stored = protect_event(data, keyed, "s/d/e").data
        assert not {"card", "pin", "payload"} & stored.keys()
        assert stored.items() >= extra.items(), "what is not personal is kept"
    assert protect_event({"card": card}, keyed, "r").data == {"card_hash": keyed(card.strip(), "card")}
    assert protect_event({"payload": payload}, keyed, "r").data == {"payload_hash": keyed(payload.strip(), "qr")}


def test_images_and_embeddings_are_taken_out() -> None:
    data = {"image_jpeg_b64": base64.b64encode(JPEG).decode(), "embedding": [0.1] * 128, "liveness": 0.9}
    protected = protect_event(data, keyed, "youzheng/door-1/e1")
    assert protected.image == JPEG
    assert protected.data == {"liveness": 0.9, "capture_ref": "youzheng/door-1/e1"}
    assert protect_event({"image_jpeg_b64": "not base64!"}, keyed, "r").data == {}, "bad images are dropped too"


async def test_the_platform_stores_events_without_credentials_and_images_encrypted(tmp_path: Path) -> None:
    card, pin, payload = "CARD-7731-0042", "90417731", "anfang-pass.v1.eyJzaXRlIjoieW91emhlbmcifQ.c2lnbmF0dXJl"
    image_b64 = base64.b64encode(JPEG).decode()
    async with running_platform(tmp_path, "amqtt") as stack:
        secret = await stack.add_device("door-b1-u1", "door_lock")
        dev = await stack.device("door-b1-u1", secret)
        for i, (name, data) in enumerate(
            [
                ("card_presented", {"card": card}),
                ("pin_entered", {"pin": pin}),
                ("qr_scanned", {"payload": payload}),
                ("face_captured", {"liveness": 0.97, "image_jpeg_b64": image_b64, "embedding": [0.5] * 128}),
            ]
        ):
            # the embedded broker acknowledges a message once the platform has committed it
            await dev.published(dev.publish(f"events/{name}", {"id": f"e{i}", "ts": 1000.0 + i, "data": data}))
        cipher = site_cipher(stack.settings)
    db = tmp_path / "data" / "anfang.db"
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT type, data FROM device_events WHERE device_id = 'door-b1-u1'").fetchall())
        images = conn.execute("SELECT ref, image_enc FROM capture_images").fetchall()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert json.loads(rows["card_presented"]) == {"card_hash": cipher.lookup_hash(card, "card")}
    assert json.loads(rows["pin_entered"]) == {}
    assert json.loads(rows["qr_scanned"]) == {"payload_hash": cipher.lookup_hash(payload, "qr")}
    assert json.loads(rows["face_captured"]) == {"liveness": 0.97, "capture_ref": "youzheng/door-b1-u1/e3"}
    assert [ref for ref, _ in images] == ["youzheng/door-b1-u1/e3"]
    assert decrypt_image(cipher, images[0][0], images[0][1]) == JPEG
    raw = b"".join(p.read_bytes() for p in db.parent.glob("anfang.db*"))
    for secret_value in (card, pin, payload, image_b64[:40]):
        assert secret_value.encode() not in raw
    assert b"\xff\xd8\xff" not in raw and b"JFIF" not in raw
