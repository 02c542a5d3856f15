"""Issue 15 item 8: ``anfang keys rotate`` re-encrypts every protected field under a new key while the
platform runs; ciphertexts name their key (``v1:``, ``k1:``, ...) and reads accept old and new."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from community_testkit import community_data
from hypothesis import given
from hypothesis import strategies as st
from platform_kit import running_platform

from anfang.app import site_cipher
from community.crypto import CryptoError, FieldCipher
from community.importer import import_community
from community.store import CommunityStore
from privacy.captures import decrypt_image
from privacy.keys import current_generation, key_status, rotate
from registry.db import open_connection

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + bytes(range(256)) * 8 + b"\xff\xd9"
ANFANG = str(Path(sys.executable).parent / "anfang")


@given(plain=st.binary(max_size=200), context=st.text(max_size=20), generation=st.integers(0, 5))
def test_every_generation_reads_back_and_names_its_key(plain: bytes, context: str, generation: int) -> None:
    writer = FieldCipher(b"m" * 32, generation)
    token = writer.encrypt_bytes(plain, context)
    assert token.startswith(FieldCipher.key_id(generation) + ":")
    reader = FieldCipher(b"m" * 32)
    assert reader.decrypt_bytes(token, context) == plain
    assert reader.generation == generation, "a reader of a newer key writes under it from then on"
    with pytest.raises(CryptoError):
        FieldCipher(b"n" * 32).decrypt_bytes(token, context)


def test_generations_are_different_keys() -> None:
    token = FieldCipher(b"m" * 32, 1).encrypt_bytes(b"x")
    forged = "k2:" + token.partition(":")[2]
    with pytest.raises(CryptoError):
        FieldCipher(b"m" * 32).decrypt_bytes(forged)


async def test_rotation_under_a_running_platform(tmp_path: Path) -> None:
    async with running_platform(tmp_path, "amqtt") as stack:
        settings = stack.settings
        store = CommunityStore(site_cipher(settings), settings.site)
        await import_community(community_data() | {"site": settings.site}, store, now=1.0)
        await store.passes.issue_pass("p-owner", valid_from=10.0, valid_until=3600.0, doors=None, max_uses=1, now=5.0,
                               visitor_phone="13612345678", visitor_name="访客")  # fmt: skip
        secret = await stack.add_device("door-b1-u1", "door_lock")
        dev = await stack.device("door-b1-u1", secret)
        image = base64.b64encode(JPEG).decode()

        async def capture(n: int) -> None:
            event = {"id": f"e{n}", "ts": 1000.0 + n, "data": {"liveness": 0.9, "image_jpeg_b64": image}}
            await dev.published(dev.publish("events/face_captured", event))

        for n in range(5):
            await capture(n)
        conn = open_connection(settings.db_url)
        before = await key_status(conn, settings.site)
        assert set(before) == {"v1"} and before["v1"] >= 5 + 6 * 3

        # the platform keeps taking captures while another process's cipher rotates
        cli_cipher = site_cipher(settings)
        report, _ = await asyncio.gather(
            rotate(conn, settings.site, cli_cipher, 2000.0, batch=3),
            asyncio.gather(*(capture(n) for n in range(5, 15))),
        )
        assert report.generation == 1 and await current_generation(conn, settings.site) == 1
        assert report.rewritten["community_people.phone_enc"] == 6
        assert report.rewritten["capture_images.image_enc"] >= 5
        # what the running platform's capture guard wrote under the old key meanwhile (it takes the new
        # generation at its next start) is read all the same and swept by the next rotation
        reader = site_cipher(settings)
        people = {
            p["id"]: p
            for p in [await store.people.decrypted_person(await store.people.person(i)) for i in ("p-owner", "p-b2")]
        }
        assert people["p-owner"]["phone"] == "13800000001"
        snap = await store.snapshot()
        assert snap.cards["C0001"] == "p-owner" and "p-owner" in snap.face_templates
        rows = await conn.execute_query_dict("SELECT ref, image_enc FROM capture_images")
        assert len(rows) == 15 and all(decrypt_image(reader, r["ref"], r["image_enc"]) == JPEG for r in rows)

        again = await rotate(conn, settings.site, cli_cipher, 3000.0)
        assert again.generation == 2 and again.remaining == 0
        assert set(await key_status(conn, settings.site)) == {"k2"}
        await store.snapshot()
        assert store.cipher.generation == 2, "the platform's registry writes under the new key once it read one"
        await capture(99)
        assert (await store.people.decrypted_person(await store.people.person("p-b2")))["phone"] == "13800000002"


@pytest.mark.timeout(300)  # five `anfang` processes, each loading the platform: slow on a busy machine
def test_anfang_keys_rotate_and_status(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update({"ANFANG_DATA_DIR": str(tmp_path / "data"), "ANFANG_SECRET_KEY": base64.b64encode(b"s" * 32).decode()})

    def anfang(*args: str) -> dict[str, object]:
        done = subprocess.run([ANFANG, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    anfang("community", "person", "add", "staff", "--phone", "13900000009", "--name", "管理员", "--card", "S1")
    assert anfang("keys", "status") == {"generation": 0, "values_by_key": {"v1": 3}}
    rotated = anfang("keys", "rotate")
    assert (rotated["generation"], rotated["key_id"], rotated["remaining_under_older_keys"]) == (1, "k1", 0)
    assert anfang("keys", "status") == {"generation": 1, "values_by_key": {"k1": 3}}
    listed = subprocess.run([ANFANG, "audit"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "register_person" in listed.stdout
