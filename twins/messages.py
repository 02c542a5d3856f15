"""Inbound payloads decoded and checked into value objects. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from twins import jsoncodec
from twins.errors import BadRequest, TooLarge
from twins.topics import ID_RE

MAX_PAYLOAD_BYTES = 256 * 1024

# The records made once per inbound message are NamedTuples: as immutable as a frozen dataclass,
# and several times cheaper to build (a frozen dataclass sets each field through object.__setattr__).


class Report(NamedTuple):
    state: dict[str, Any]
    seq: int | None
    ts: float | None
    seq_reset: bool = False  # the device restarted its counter: accept this seq whatever came before


class Event(NamedTuple):
    id: str
    ts: float | None
    data: dict[str, Any]


class Telemetry(NamedTuple):
    ts: float | None
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class Update:
    desired: dict[str, Any]
    version: int | None
    client_token: str | None
    ttl: float | None = None  # seconds: the fields set are momentary


MAX_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class CommandReply:
    id: str
    ok: bool
    result: dict[str, Any]
    error: str | None


def decode_json(payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """Decode a JSON object payload, with the size limit checked first."""
    if len(payload) > max_bytes:
        raise TooLarge(f"payload is {len(payload)} bytes, over the limit of {max_bytes}")
    try:
        data = jsoncodec.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"payload must be a JSON object, got {type(data).__name__}")
    return data


_NUMBER = (int, float)  # a tuple: ``int | float`` would build a union object on every call
# the largest integer JSON carries exactly everywhere: far above a millisecond clock, far below 2^64
MAX_SEQ = 2**53 - 1
_REPORT_FIELDS = frozenset({"state", "seq", "ts", "seq_reset"})


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise BadRequest(f"{key} must be a number")
    return float(value)


def _only(data: dict[str, Any], allowed: frozenset[str] | set[str], what: str) -> None:
    if data.keys() <= allowed:
        return
    extra = set(data) - allowed
    if extra:
        raise BadRequest(f"unknown field(s) in {what}: {', '.join(sorted(extra))}")


def parse_report(payload: bytes) -> Report:
    data = decode_json(payload)
    _only(data, _REPORT_FIELDS, "report")
    state = data.get("state")
    if not isinstance(state, dict):
        raise BadRequest("report needs a 'state' object")
    seq = data.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ):
        raise BadRequest(f"seq must be an integer from 0 to {MAX_SEQ}")
    reset = data.get("seq_reset", False)
    if not isinstance(reset, bool) or (reset and seq is None):
        raise BadRequest("seq_reset must be true or false, and true only with a seq")
    return Report(state, seq, _number(data, "ts"), reset)


def parse_event(payload: bytes) -> Event:
    data = decode_json(payload)
    _only(data, {"id", "ts", "data"}, "event")
    event_id = data.get("id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 64:
        raise BadRequest("event needs an 'id' string of 1-64 characters")
    body = data.get("data", {})
    if not isinstance(body, dict):
        raise BadRequest("event 'data' must be an object")
    return Event(event_id, _number(data, "ts"), body)


def parse_telemetry(payload: bytes, allowed_metrics: frozenset[str]) -> Telemetry:
    data = decode_json(payload, max_bytes=16 * 1024)
    _only(data, {"ts", "metrics"}, "telemetry")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise BadRequest("telemetry needs a non-empty 'metrics' object")
    out: dict[str, float] = {}
    for key in metrics:
        if key not in allowed_metrics:
            raise BadRequest(f"unknown metric {key!r} (known: {', '.join(sorted(allowed_metrics))})")
        value = _number(metrics, key)
        if value is None:
            raise BadRequest(f"metric {key} must be a number")
        out[key] = value
    return Telemetry(_number(data, "ts"), out)


def parse_status(payload: bytes) -> str:
    text = payload.decode("utf-8", errors="replace").strip().strip('"')
    if text == "online":
        return "online"  # the literal, not the decoded copy: a cached twin keeps it
    if text == "offline":
        return "offline"
    raise BadRequest("status must be 'online' or 'offline'")


def parse_update(payload: bytes) -> Update:
    data = decode_json(payload)
    _only(data, {"desired", "version", "client_token", "ttl"}, "update")
    desired = data.get("desired")
    if not isinstance(desired, dict):
        raise BadRequest("update needs a 'desired' object")
    version = data.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise BadRequest("version must be an integer")
    token = data.get("client_token")
    if token is not None and (not isinstance(token, str) or len(token) > 128):
        raise BadRequest("client_token must be a string of at most 128 characters")
    ttl = _number(data, "ttl")
    if ttl is not None and not 0 < ttl <= MAX_TTL_S:
        raise BadRequest(f"ttl must be a number of seconds above 0 and at most {MAX_TTL_S}")
    return Update(desired, version, token, ttl)


def parse_client_token(payload: bytes) -> str | None:
    if not payload.strip():
        return None
    token = decode_json(payload, max_bytes=4096).get("client_token")
    return token if isinstance(token, str) else None


def parse_command_reply(payload: bytes) -> CommandReply:
    data = decode_json(payload)
    cid = data.get("id")
    if not isinstance(cid, str) or not ID_RE.match(cid.lower()):
        raise BadRequest("command result needs the command's 'id'")
    ok = data.get("ok")
    if not isinstance(ok, bool):
        raise BadRequest("command result needs 'ok' true or false")
    result = data.get("result") or {}
    if not isinstance(result, dict):
        raise BadRequest("command 'result' must be an object")
    error = data.get("error")
    return CommandReply(cid, ok, result, None if error is None else str(error))
