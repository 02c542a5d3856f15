"""The device-kind catalogue as the rule checker needs it: reported fields and event types.

Mirrors the protocol (docs/protocol.md); ``twins.kinds`` is the authority at run time, this copy
only lets ``anfang rules check`` say "did you mean ..." without importing the platform. A test
(``tests/rules/test_rules_check.py``) keeps the copy equal to ``twins.kinds``.
"""

from __future__ import annotations

TELEMETRY_METRICS: frozenset[str] = frozenset({"battery", "rssi", "temperature", "uptime"})

REPORTED_FIELDS: dict[str, frozenset[str]] = {
    "vehicle_gate": frozenset({"barrier", "mode", "open_seconds", "access_mode", "allow_list_version", "cameras"}),
    "camera": frozenset({"recording", "fps", "resolution"}),
    "ptz_tracker": frozenset({"pan", "tilt", "zoom", "tracking", "target_id"}),
    "door_lock": frozenset({"lock", "door", "hold_seconds", "access_mode", "allow_list_version", "liveness_threshold"}),
    "mac_sniffer": frozenset({"scanning", "channel"}),
    "rfid_reader": frozenset({"scanning", "tx_power_dbm"}),
    "rfid_tag": frozenset({"last_seen", "reader", "rssi", "position", "battery"}),
    "platform": frozenset(),
}

EVENT_TYPES: dict[str, frozenset[str]] = {
    "vehicle_gate": frozenset(
        {
            "plate_captured",
            "face_captured",
            "qr_scanned",
            "card_presented",
            "barrier_opened",
            "barrier_closed",
            "access_decided",
            "access_lockout",
        }
    ),
    "camera": frozenset({"face_captured", "plate_captured", "person_captured", "motion"}),
    "ptz_tracker": frozenset({"target_tracked"}),
    "door_lock": frozenset(
        {
            "face_captured",
            "qr_scanned",
            "card_presented",
            "pin_entered",
            "door_opened",
            "door_closed",
            "door_forced",
            "door_held_open",
            "access_decided",
            "access_lockout",
        }
    ),
    "mac_sniffer": frozenset({"mac_seen"}),
    "rfid_reader": frozenset({"tag_seen"}),
    "rfid_tag": frozenset(),
    "platform": frozenset({"access_decided", "watchlist_match"}),
}

#: Synthetic event type the engine derives from the retained ``status`` topic.
STATUS_EVENT = "status"

KNOWN_KINDS: frozenset[str] = frozenset(REPORTED_FIELDS)
ALL_EVENT_TYPES: frozenset[str] = frozenset(t for ts in EVENT_TYPES.values() for t in ts) | {STATUS_EVENT}
ALL_FIELDS: frozenset[str] = frozenset(f for fs in REPORTED_FIELDS.values() for f in fs)
