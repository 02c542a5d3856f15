"""The telemetry vocabulary: every measurement, tag, field and state name, defined once.

The point builders (:mod:`telemetry.schema`), the dashboards (:mod:`telemetry.dashboards`), the platform's
own metrics (:mod:`telemetry.metrics`) and docs/telemetry.md all use these names; tests check that the
dashboards query nothing else, that the platform's health counters and the alarm states of the rules
engine are named here, and that the docs' schema table lists exactly these measurements and fields.
"""

from __future__ import annotations

# -- measurements -----------------------------------------------------------------------------------
DEVICE_TELEMETRY = "device_telemetry"
DEVICE_STATUS = "device_status"
TWIN_STATE = "twin_state"
ACCESS = "access"
PASSAGE = "passage"
VEHICLE = "vehicle"
VEHICLE_DWELL = "vehicle_dwell"
ALARM = "alarm"
RULE_FIRING = "rule_firing"
TAG_POSITION = "tag_position"
PLATFORM_HEALTH = "platform_health"

# -- tag keys ---------------------------------------------------------------------------------------
T_SITE = "site"
T_DEVICE = "device"
T_KIND = "kind"
T_RESULT = "result"
T_CREDENTIAL = "credential"
T_DIRECTION = "direction"
T_VIA = "via"
T_PLATE_READ = "plate_read"
T_RULE = "rule"
T_SEVERITY = "severity"
T_STATE = "state"
T_TAG = "tag"
T_TAG_GROUP = "tag_group"
T_WORKER = "worker"

# -- bounded tag values -----------------------------------------------------------------------------
OTHER = "other"  # what an unknown value of a bounded tag becomes
ALLOW, DENY = "allow", "deny"
IN, OUT = "in", "out"
YES, NO = "yes", "no"
CREDENTIALS = frozenset({"face", "plate", "qr", "card", "pin", "exit_button", "key"})
DIRECTIONS = frozenset({IN, OUT})
PASSAGE_VIA = CREDENTIALS | {"access"}
SEVERITIES = frozenset({"info", "low", "medium", "high", "critical", "major", "minor"})
# the alarm states of the one alarm system (registry/alarms.py)
ALARM_RAISED = "raised"
ALARM_ACKNOWLEDGED = "acknowledged"
ALARM_CLEARED = "cleared"
ALARM_STATES = frozenset({ALARM_RAISED, ALARM_ACKNOWLEDGED, ALARM_CLEARED})
# alarm kinds raised by the built-in geofence rules (rules/builtin): a tag left its allowed area
FENCE_ALARM_KINDS = ("elderly_left_fence", "child_left_kindergarten")
TAG_GROUPS = frozenset({"elderly", "child", "staff", "asset"})

# -- fields -----------------------------------------------------------------------------------------
F_COUNT = "count"
TELEMETRY_METRICS = ("battery", "rssi", "temperature", "uptime")
F_ONLINE, F_RECONNECT = "online", "reconnect"
F_REASON, F_SCORE = "reason", "score"
F_PLATE, F_CONFIDENCE = "plate", "confidence"
F_DWELL_S = "dwell_s"
F_ACTIVE_TOTAL, F_ALARM_ID = "active_total", "alarm_id"
F_X, F_Y, F_LAT, F_LON, F_RSSI, F_READER = "x", "y", "lat", "lon", "rssi", "reader"
TWIN_STATE_FIELDS = frozenset({
    "barrier_up", "hold_open", "cameras_online", "cameras_total", "lock_unlocked", "door_open", "recording",
    "fps", "tracking", "pan", "tilt", "zoom", "scanning", "tx_power_dbm",
})  # fmt: skip

# platform_health: the counters and gauges anfang.service.Platform publishes (cumulative since start) ...
H_RECEIVED = "received"  # device messages in
H_ACCEPTED = "accepted"
H_DUPLICATES = "duplicates"
H_CLOCK_SKEW_CLAMPED = "clock_skew_clamped"  # report stamps beyond limits.max_clock_skew_s ahead
H_REJECTED = "rejected"  # answered on the device's errors topic
H_PUBLISHED = "published"  # MQTT messages out
H_PUBLISH_DROPPED = "publish_dropped"
H_PUBLISH_WAITING = "publish_waiting"
H_INBOX_DEPTH = "inbox_depth"  # messages waiting for ingest
H_INBOX_PEAK = "inbox_peak"
H_DISPATCH_DEPTH = "dispatch_depth"  # deepest handler queue
H_DISPATCH_DROPPED = "dispatch_dropped"
H_HANDLER_ERRORS = "handler_errors"
H_BATCHES = "batches"
H_COMMANDS_SENT = "commands_sent"
H_COMMANDS_TIMED_OUT = "commands_timed_out"
H_ERRORS_THROTTLED = "errors_throttled"  # error answers not sent to a device flooding bad messages
H_LATENCY_P50 = "ingest_latency_ms_p50"
H_LATENCY_P99 = "ingest_latency_ms_p99"
H_BROKER_SUBSCRIBED = "broker_subscribed"  # 1 while the link holds its subscriptions
H_BROKER_RESUBSCRIBED = "broker_resubscribed"  # reconnects that came back without a session
PLATFORM_HEALTH_FIELDS = frozenset({
    H_RECEIVED, H_ACCEPTED, H_DUPLICATES, H_REJECTED, H_PUBLISHED, H_PUBLISH_DROPPED, H_PUBLISH_WAITING,
    H_INBOX_DEPTH, H_INBOX_PEAK, H_DISPATCH_DEPTH, H_DISPATCH_DROPPED, H_HANDLER_ERRORS, H_BATCHES,
    H_COMMANDS_SENT, H_COMMANDS_TIMED_OUT, H_LATENCY_P50, H_LATENCY_P99, H_CLOCK_SKEW_CLAMPED,
    H_BROKER_SUBSCRIBED, H_BROKER_RESUBSCRIBED, H_ERRORS_THROTTLED,
})  # fmt: skip
# ... and the telemetry writer's own (telemetry.writer.WriterStats, prefixed)
WRITER_PREFIX = "telemetry_"
WRITER_FIELDS = frozenset(
    WRITER_PREFIX + name
    for name in (
        "submitted", "written", "spooled", "replayed", "buffer_dropped", "spool_dropped", "rejected", "invalid",
        "write_errors", "quarantined", "restarts", "buffered", "spool_lines", "spool_bytes", "server_up",
        "misconfigured", "running",
    )
)  # fmt: skip

#: Tags and fields of every measurement (what docs/telemetry.md's schema table lists).
SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    DEVICE_TELEMETRY: (frozenset({T_SITE, T_DEVICE, T_KIND}), frozenset(TELEMETRY_METRICS)),
    DEVICE_STATUS: (frozenset({T_SITE, T_DEVICE, T_KIND}), frozenset({F_ONLINE, F_RECONNECT})),
    TWIN_STATE: (frozenset({T_SITE, T_DEVICE, T_KIND}), TWIN_STATE_FIELDS),
    ACCESS: (
        frozenset({T_SITE, T_DEVICE, T_KIND, T_RESULT, T_CREDENTIAL, T_DIRECTION}),
        frozenset({F_COUNT, F_REASON, F_SCORE}),
    ),
    PASSAGE: (frozenset({T_SITE, T_DEVICE, T_KIND, T_DIRECTION, T_VIA}), frozenset({F_COUNT})),
    VEHICLE: (frozenset({T_SITE, T_DEVICE, T_DIRECTION, T_PLATE_READ}), frozenset({F_COUNT, F_CONFIDENCE, F_PLATE})),
    VEHICLE_DWELL: (frozenset({T_SITE, T_DEVICE}), frozenset({F_DWELL_S})),
    ALARM: (
        frozenset({T_SITE, T_RULE, T_KIND, T_SEVERITY, T_STATE}),
        frozenset({F_COUNT, F_ACTIVE_TOTAL, F_ALARM_ID}),
    ),
    RULE_FIRING: (frozenset({T_SITE, T_RULE}), frozenset({F_COUNT})),
    TAG_POSITION: (
        frozenset({T_SITE, T_TAG, T_TAG_GROUP}),
        frozenset({F_X, F_Y, F_LAT, F_LON, F_RSSI, F_READER}),
    ),
    PLATFORM_HEALTH: (frozenset({T_SITE, T_WORKER}), PLATFORM_HEALTH_FIELDS | WRITER_FIELDS),
}
MEASUREMENTS = frozenset(SCHEMA)
