"""Turning a batch of inbound MQTT messages into twin changes, replies and dispatches. Pure.

The IO around it (``anfang.service``) pre-loads the devices and twins a batch touches, calls
:func:`process_batch`, commits the outcome in one transaction, then publishes and dispatches.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from registry.records import DeviceInfo, StoredEvent
from twins import jsoncodec, messages
from twins.document import Limits, TwinDocument, apply_desired, apply_reported, apply_status
from twins.errors import BadRequest, NotFound, StaleReport, TooLarge, TwinError
from twins.history import HistoryEntry, redact
from twins.hooks import DeviceEvent, TwinChange
from twins.kinds import TELEMETRY_METRICS, validate_desired, validate_event, validate_reported
from twins.topics import (
    Channel,
    DeviceTopic,
    delta_topic,
    desired_topic,
    document_topic,
    errors_topic,
    update_reply_topic,
    valid_id,
)


class Inbound(NamedTuple):  # one per inbound message: cheaper to build than a frozen dataclass
    raw_topic: str
    topic: DeviceTopic | None
    payload: bytes
    reply_to: tuple[str, bytes | None] | None = None  # MQTT 5 response topic + correlation data
    redelivered: bool = False  # DUP: the broker resent it to a resumed session; it may be committed already


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: dict[str, Any] | str
    retain: bool = False
    qos: int = 1
    correlation: bytes | None = None


def _answer(out: Outcome, msg: Inbound, topic: str, body: dict[str, Any]) -> None:
    """Answer a service request on its fixed topic and, for MQTT 5 requesters, on their response topic."""
    out.publishes.append(Publish(topic, body))
    if msg.reply_to is not None and msg.reply_to[0].startswith("anfang/"):
        out.publishes.append(Publish(msg.reply_to[0], body, correlation=msg.reply_to[1]))


@dataclass(frozen=True, slots=True)
class Rejection:
    device_id: str | None
    topic: str
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    device_id: str
    name: str
    reply: messages.CommandReply


@dataclass(frozen=True, slots=True)
class TelemetrySample:
    site: str
    device_id: str
    kind: str
    ts: float
    metrics: dict[str, float]


@dataclass
class Outcome:
    twins: dict[str, TwinDocument] = field(default_factory=dict)
    events: list[StoredEvent] = field(default_factory=list)
    publishes: list[Publish] = field(default_factory=list)
    dispatch: list[DeviceEvent | TwinChange] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    answers: list[CommandAnswer] = field(default_factory=list)
    telemetry: list[TelemetrySample] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)  # every committed change, in order
    duplicates: int = 0
    accepted: int = 0
    clamped: int = 0  # reports whose ts was too far ahead of the platform clock (stamped with it instead)
    sent_at: list[float] = field(default_factory=list)  # device timestamps of accepted reports, for latency


def desired_publishes(doc: TwinDocument, now: float) -> list[Publish]:
    """The retained full desired document and, if anything differs, the delta."""
    out = [
        Publish(
            desired_topic(doc.site, doc.device_id),
            _desired_body(doc, now),
            retain=True,
        )
    ]
    delta = doc.delta
    if delta:
        out.append(Publish(delta_topic(doc.site, doc.device_id), {"version": doc.version, "delta": delta, "ts": now}))
    return out


def _desired_body(doc: TwinDocument, now: float) -> dict[str, Any]:
    body: dict[str, Any] = {"version": doc.version, "desired": doc.desired, "ts": now}
    if doc.metadata.expires:
        # momentary fields and when they lapse: a device must not act on one it receives too late
        body["expires"] = doc.metadata.expires
    return body


def _ref(msg: Inbound) -> Any:
    """The sender's reference (report seq or event id) for an error answer, if it can be read."""
    try:
        data = jsoncodec.loads(msg.payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict):
        for key in ("seq", "id", "client_token"):
            if isinstance(data.get(key), str | int) and not isinstance(data.get(key), bool):
                return data[key]
    return None


def _reject(out: Outcome, msg: Inbound, err: TwinError) -> None:
    topic = msg.topic
    device_id = topic.device_id if topic else None
    out.rejections.append(Rejection(device_id, msg.raw_topic, err.code, err.message))
    body: dict[str, Any] = {"code": err.code, "message": err.message, "topic": msg.raw_topic}
    if topic is None:
        parts = msg.raw_topic.split("/")
        if len(parts) > 3 and parts[0] == "anfang" and valid_id(parts[1]) and valid_id(parts[2]):
            out.publishes.append(Publish(errors_topic(parts[1], parts[2]), {**body, "ref": None}, qos=0))
        return
    if topic.channel in (Channel.UPDATE, Channel.GET):
        token = _ref(msg)
        body["client_token"] = token if isinstance(token, str) else None
        _answer(out, msg, update_reply_topic(topic.site, topic.device_id, accepted=False), body)
    else:
        body["ref"] = _ref(msg)
        # QoS 0: an error answer is advice to the sender; a flood of bad input must not fill the
        # platform's QoS 1 window (65,535 packet ids) with answers nobody may be listening to
        out.publishes.append(Publish(errors_topic(topic.site, topic.device_id), body, qos=0))


def _device(devices: Mapping[str, DeviceInfo], topic: DeviceTopic) -> DeviceInfo:
    info = devices.get(topic.device_id)
    if info is None or info.site != topic.site:
        raise NotFound(f"unknown device {topic.device_id} at site {topic.site}", device_id=topic.device_id)
    return info


def _twin(twins: MutableMapping[str, TwinDocument], info: DeviceInfo) -> TwinDocument:
    doc = twins.get(info.id)
    if doc is None:
        doc = TwinDocument(device_id=info.id, kind=info.kind, site=info.site)
        twins[info.id] = doc
    return doc


def process_batch(
    batch: Sequence[Inbound],
    devices: Mapping[str, DeviceInfo],
    twins: MutableMapping[str, TwinDocument],
    seen_events: set[tuple[str, str]],
    *,
    now: float,
    limits: Limits,
    max_payload: int = messages.MAX_PAYLOAD_BYTES,
) -> Outcome:
    """Apply a batch in order. ``twins`` is updated in place; ``seen_events`` grows with new events."""
    out = Outcome()
    for msg in batch:
        try:
            _process_one(msg, devices, twins, seen_events, out, now=now, limits=limits, max_payload=max_payload)
        except StaleReport as err:
            if msg.redelivered:
                # a worker committed it and died before its PUBACK: already applied, not the device's fault
                out.duplicates += 1
            else:
                _reject(out, msg, err)
        except TwinError as err:
            _reject(out, msg, err)
    return out


def _process_one(
    msg: Inbound,
    devices: Mapping[str, DeviceInfo],
    twins: MutableMapping[str, TwinDocument],
    seen_events: set[tuple[str, str]],
    out: Outcome,
    *,
    now: float,
    limits: Limits,
    max_payload: int,
) -> None:
    topic = msg.topic
    if topic is None:
        raise BadRequest(f"not a platform topic: {msg.raw_topic[:200]!r}")
    if len(msg.payload) > max_payload:
        raise TooLarge(f"payload is {len(msg.payload)} bytes, over the limit of {max_payload}")
    info = _device(devices, topic)
    if info.virtual and topic.channel not in (Channel.UPDATE, Channel.GET):
        raise BadRequest(f"{info.id} is a virtual {info.kind}; its state is derived by the platform")
    match topic.channel:
        case Channel.REPORTED:
            report = messages.parse_report(msg.payload)
            validate_reported(info.kind, report.state)
            before = _twin(twins, info)
            applied = apply_reported(
                before, report.state, now=now, seq=report.seq, ts=report.ts, limits=limits, seq_reset=report.seq_reset
            )
            if applied.clamped:
                out.clamped += 1
            elif report.ts is not None:
                out.sent_at.append(report.ts)
            twins[info.id] = applied.document
            out.twins[info.id] = applied.document
            if applied.is_change:
                out.dispatch.append(_change(before, applied.document, applied.changed, now))
                doc = applied.document
                out.history.append(HistoryEntry(info.id, doc.version, now, "reported", "device", applied.changed))
        case Channel.EVENT:
            assert topic.name is not None
            event = messages.parse_event(msg.payload)
            validate_event(info.kind, topic.name, event.data)
            key = (info.id, event.id)
            if key in seen_events:
                out.duplicates += 1
            else:
                seen_events.add(key)
                out.events.append(StoredEvent(info.id, event.id, topic.name, event.ts, now, event.data))
                out.dispatch.append(
                    DeviceEvent(info.site, info.id, info.kind, topic.name, event.id, event.ts or now, event.data, now)
                )
        case Channel.TELEMETRY:
            sample = messages.parse_telemetry(msg.payload, TELEMETRY_METRICS)
            out.telemetry.append(TelemetrySample(info.site, info.id, info.kind, sample.ts or now, sample.metrics))
        case Channel.STATUS:
            status = messages.parse_status(msg.payload)
            before = _twin(twins, info)
            after = apply_status(before, status, now=now)
            if after is not before:
                twins[info.id] = after
                out.twins[info.id] = after
                out.history.append(HistoryEntry(info.id, after.version, now, "status", "device", {"status": status}))
                out.dispatch.append(
                    DeviceEvent(
                        info.site, info.id, info.kind, "status", f"status-{after.version}", now, {"state": status}
                    )
                )
        case Channel.CMD_RESULT:
            assert topic.name is not None
            out.answers.append(CommandAnswer(info.id, topic.name, messages.parse_command_reply(msg.payload)))
        case Channel.UPDATE:
            update = messages.parse_update(msg.payload)
            validate_desired(info.kind, update.desired)
            before = _twin(twins, info)
            applied = apply_desired(
                before, update.desired, now=now, expected_version=update.version, ttl=update.ttl, limits=limits
            )
            doc = applied.document
            twins[info.id] = doc
            out.twins[info.id] = doc
            reply = {
                "version": doc.version,
                "desired": doc.desired,
                "delta": doc.delta,
                "client_token": update.client_token,
                "ts": now,
            }
            _answer(out, msg, update_reply_topic(info.site, info.id, accepted=True), reply)
            if doc is not before:
                out.publishes.extend(desired_publishes(doc, now))
                entry = HistoryEntry(info.id, doc.version, now, "desired", "service", redact(applied.changed))
                out.history.append(entry)
        case Channel.GET:
            token = messages.parse_client_token(msg.payload)
            doc = _twin(twins, info)
            _answer(out, msg, document_topic(info.site, info.id), {**doc.to_json(), "client_token": token})
    out.accepted += 1


def _change(before: TwinDocument, after: TwinDocument, changed: dict[str, Any], now: float) -> TwinChange:
    return TwinChange(
        site=after.site,
        device_id=after.device_id,
        kind=after.kind,
        version=after.version,
        ts=now,
        reported=after.reported,
        previous_reported=before.reported,
        desired=after.desired,
        changed=changed,
    )
