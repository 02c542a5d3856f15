"""What the access-decision log keeps of a credential (issue 15 item 2): a card as a keyed reference that
matches the credential's look-up hash, a PIN as ``****``, never a QR payload or a raw card/PIN, also at a
device that is no access point."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from community.crypto import FieldCipher
from community.decisions import Capture, decide
from community.snapshot import DeviceInfo, PersonInfo, RegistrySnapshot

CIPHER = FieldCipher(b"m" * 32)


def _snapshot() -> RegistrySnapshot:
    snap = RegistrySnapshot(site="s", pass_key=CIPHER.pass_key, ref_key=CIPHER.lookup_key)
    snap.people["o"] = PersonInfo("o", "owner", "h1", "b1")
    snap.cards["C0017"] = "o"
    snap.pins["73064829"] = "o"
    snap.devices["d1"] = DeviceInfo("d1", "door_lock", "b1")
    snap.devices["cam"] = DeviceInfo("cam", "camera")
    return snap


@given(
    card=st.sampled_from(["C0017", "C9999"]) | st.text("0123456789ABC", min_size=4, max_size=20),
    device=st.sampled_from(["d1", "cam", "nowhere"]),
)
def test_a_card_is_logged_as_a_keyed_reference(card: str, device: str) -> None:
    d = decide(Capture(device, "door_lock", "card", credential=card), _snapshot(), 0.0)
    assert d.credential_ref == "card:" + CIPHER.lookup_hash(card, "card")[:16]


@given(
    kind=st.sampled_from(["pin", "qr"]),
    value=st.sampled_from(["73064829", "55501234"]) | st.text(min_size=1, max_size=40).filter(str.strip),
    device=st.sampled_from(["d1", "cam", "nowhere"]),
)
def test_pins_and_qr_payloads_never_reach_the_log(kind: str, value: str, device: str) -> None:
    d = decide(Capture(device, "door_lock", kind, credential=value), _snapshot(), 0.0)  # type: ignore[arg-type]
    assert d.credential_ref in (None, "****") or (kind == "qr" and d.credential_ref == d.pass_id)
