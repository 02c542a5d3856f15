"""Access control as a platform handler: captures in, open commands, records and alarms out.

:class:`AccessHandler` implements :class:`twins.hooks.PlatformHandler`. Central mode: a device sends a
capture event, the handler decides with :func:`community.decisions.decide`, commands ``open`` and
records the decision. Edge mode: the handler keeps each edge door's allow-list in its desired twin
and records the ``access_decided`` events the door reports. Watchlist matches raise police alarms in
both modes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from community.allowlist import EdgeLimits, allow_list_digest, build_allow_list, next_boundary
from community.credential_limits import CredentialLimitStore
from community.decisions import Capture, CredentialKind, Decision, decide, watchlist_hits
from community.edge import DoorSealer, door_key
from community.edge_keys import edge_key_epochs
from community.errors import CommunityError
from community.lockout import LIMITED_KINDS, AttemptLimits, LockStarted
from community.records import AccessRecords, Retention
from community.snapshot import RegistrySnapshot, WatchEntry
from community.store import CommunityStore
from registry.alarms import AlarmManager
from registry.sql import DB_ERRORS
from twins.history import acting_as
from twins.hooks import DeviceEvent, PlatformActions, TwinChange
from vision.gallery import DEFAULT_THRESHOLD

__all__ = ["AccessConfig", "AccessHandler", "PlateImageReading"]

log = logging.getLogger(__name__)

EmbedImage = Callable[[bytes], Awaitable[np.ndarray]]
#: (plate text, confidence, per-character confidences or None)
PlateImageReading = tuple[str, float | None, tuple[float, ...] | None]
ReadPlateImage = Callable[[bytes], Awaitable[PlateImageReading | None]]
PlatformEventSink = Callable[[DeviceEvent], Awaitable[None]]

_CAPTURE_TYPES: dict[str, CredentialKind] = {
    "plate_captured": "plate",
    "face_captured": "face",
    "qr_scanned": "qr",
    "card_presented": "card",
    "pin_entered": "pin",
}
_CREDENTIAL_FIELD = {"plate": "plate", "qr": "payload", "card": "card", "pin": "pin"}


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """Access-control settings."""

    site: str
    open_seconds: int = 5
    liveness_threshold: float = 0.8
    face_threshold: float = DEFAULT_THRESHOLD  # the site's vision.face_threshold setting
    command_timeout: float = 10.0
    retention: Retention = field(default_factory=Retention)
    purge_interval: float = 3600.0
    reload_interval: float = 60.0  # a full re-read, only a safety net: the change counter is read per decision
    change_poll_interval: float = 0.5  # how often edge allow-lists look for registry changes (pushed within 2 s)
    edge_devices: frozenset[str] = frozenset()
    limits: EdgeLimits = field(default_factory=EdgeLimits)  # attempt limits, central and at edge doors
    workers: int = 16
    queue_size: int = 1000
    #: Run the retention purge (a site-wide duty: with several workers per site, partition 0's owner only).
    purge: bool = True


class AccessHandler:
    """The community access-control service (see module docstring)."""

    def __init__(
        self,
        store: CommunityStore,
        records: AccessRecords,
        config: AccessConfig,
        *,
        alarms: AlarmManager,
        embed_image: EmbedImage | None = None,
        on_platform_event: PlatformEventSink | None = None,
        read_plate_image: ReadPlateImage | None = None,
        actions: PlatformActions | None = None,
        clock: Callable[[], float] = time.time,
        credential_limits: CredentialLimitStore | None = None,
    ) -> None:
        """``alarms``: the site's alarm system (watchlist hits raise their alarms there);
        ``credential_limits``: where a partitioned site counts and locks each credential across all its
        doors (None: in memory, for the doors this handler decides for)."""
        self.store = store
        self.records = records
        self.config = config
        self._alarms = alarms
        self._embed_image = embed_image
        self._read_plate_image = read_plate_image
        self._on_platform_event = on_platform_event
        self._actions = actions
        self._clock = clock
        self._snap: RegistrySnapshot | None = None
        self._snap_generation = -1
        self._snap_seq = -1
        self._reload_lock = asyncio.Lock()
        self._pass_lock = asyncio.Lock()
        self.edge_devices: set[str] = set(config.edge_devices)
        self._pushed: dict[str, tuple[int, str]] = {}
        self._sealers: dict[tuple[str, int], DoorSealer] = {}
        self._epochs: dict[str, int] = {}  # generation of each edge door's key, read at every refresh
        self._attempts = AttemptLimits(config.limits, credential_scope=credential_limits is None)
        self._shared_limits = credential_limits
        self.shared_limit_errors = 0  # failed reads/writes of the site-wide credential counts
        self._inbox: asyncio.Queue[tuple[DeviceEvent, PlatformActions]] | None = None

    # --- snapshot ---------------------------------------------------------------------------------
    async def snapshot(self, *, force: bool = False) -> RegistrySnapshot:
        """The current registry snapshot, reloaded when the registry changed (or ``force``).

        A change through this process's store shows in ``store.generation``; a change anywhere else
        (the API or CLI of another process, another worker) in the site's change counter, one
        primary-key read per call, so every decision sees every change committed before it started.
        """
        seq = await self.store.change_seq()
        if not force and self._fresh(seq):
            assert self._snap is not None
            return self._snap
        async with self._reload_lock:
            if force or not self._fresh(seq):
                generation = self.store.generation
                seq = await self.store.change_seq()  # read before the rows: a change after it shows next time
                self._snap = await self.store.snapshot(
                    liveness_threshold=self.config.liveness_threshold, face_threshold=self.config.face_threshold
                )
                self._snap_generation, self._snap_seq = generation, seq
            assert self._snap is not None
            return self._snap

    def _fresh(self, seq: int) -> bool:
        return self._snap is not None and self._snap_generation == self.store.generation and self._snap_seq >= seq

    # --- PlatformHandler --------------------------------------------------------------------------
    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        """Handle captures and edge decisions; other events are ignored.

        While :meth:`run` is running, events are queued (bounded; a full queue slows the caller) for its
        workers, so a gate slow to answer its ``open`` command does not hold up the next capture;
        otherwise they are processed inline.
        """
        self._actions = actions
        if event.type not in _CAPTURE_TYPES and event.type not in ("access_decided", "access_lockout"):
            return
        if self._inbox is not None:
            await self._inbox.put((event, actions))
            return
        await self.process_event(event, actions)

    async def process_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        """Process one capture or edge decision now."""
        try:
            if event.type in _CAPTURE_TYPES:
                capture = await self._capture_from(event, _CAPTURE_TYPES[event.type])
                if capture is not None:
                    await self.handle_capture(capture, actions)
            elif event.type == "access_decided":
                await self._record_edge_decision(event, actions)
            elif event.type == "access_lockout":
                await self._edge_lockout(event, actions)
        except (CommunityError, ValueError, TypeError, KeyError, OverflowError) as exc:
            log.warning("access event %s/%s from %s rejected: %s", event.type, event.id, event.device_id, exc)

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        """Track which doors run in edge mode and push their allow-list when they switch to it."""
        self._actions = actions
        if change.kind not in ("door_lock", "vehicle_gate"):
            return
        mode = change.reported.get("access_mode")
        if mode == "edge" and change.device_id not in self.edge_devices:
            self.edge_devices.add(change.device_id)
            await self.refresh_edge_allow_lists(actions, only=change.device_id, force=True)
        elif mode == "central" and change.device_id not in self.config.edge_devices:
            self.edge_devices.discard(change.device_id)

    # --- central decisions ------------------------------------------------------------------------
    async def _capture_from(self, event: DeviceEvent, kind: CredentialKind) -> Capture | None:
        data = event.data
        snapshot_ref = f"{event.site}/{event.device_id}/{event.id}" if data.get("image_jpeg_b64") else None
        camera = data.get("camera")
        if kind == "face":
            embedding: np.ndarray | None = None
            if data.get("embedding") is not None:
                embedding = np.asarray(data["embedding"], dtype=np.float32)
            elif data.get("image_jpeg_b64") and self._embed_image is not None:
                try:
                    image = base64.b64decode(data["image_jpeg_b64"], validate=True)
                except binascii.Error as exc:
                    raise ValueError("image_jpeg_b64 is not base64") from exc
                embedding = await self._embed_image(image)
            liveness = data.get("liveness")
            return Capture(
                event.device_id,
                event.kind,
                "face",
                embedding=embedding,
                liveness=None if liveness is None else float(liveness),
                camera=camera,
                snapshot_ref=snapshot_ref,
            )
        value = data.get(_CREDENTIAL_FIELD[kind])
        confidence = data.get("confidence")
        chars = data.get("char_confidences") if kind == "plate" else None
        if kind == "plate" and value is None and data.get("image_jpeg_b64") and self._read_plate_image is not None:
            try:
                image = base64.b64decode(data["image_jpeg_b64"], validate=True)
            except binascii.Error as exc:
                raise ValueError("image_jpeg_b64 is not base64") from exc
            reading = await self._read_plate_image(image)
            if reading is not None:
                value, confidence, chars = reading
        return Capture(
            event.device_id,
            event.kind,
            kind,
            credential=None if value is None else str(value),
            confidence=None if confidence is None else float(confidence),
            camera=camera,
            snapshot_ref=snapshot_ref,
            char_confidences=None if chars is None else tuple(float(c) for c in chars),
        )

    async def handle_capture(self, capture: Capture, actions: PlatformActions) -> Decision:
        """Decide, open, record, and alarm on watchlist matches. Returns the decision."""
        snap = await self.snapshot()
        now = actions.now()
        decision = decide(capture, snap, now)
        attempt_key = self._attempt_key(capture)
        door = decision.target
        central = door is not None and door not in self.edge_devices
        locked = central and door is not None and await self._locked(door, capture.kind, attempt_key, now)
        if locked:
            decision = Decision(False, "locked_out", door, capture.kind, credential_ref=decision.credential_ref)
        hits = watchlist_hits(capture, snap)
        command_ok: bool | None = None
        target = decision.target
        edge = target is not None and target in self.edge_devices
        if target is not None and not edge:
            if decision.allowed and decision.pass_id is not None:
                decision = await self._consume_pass(decision, snap)
            if decision.allowed:
                args = {
                    "seconds": self.config.open_seconds,
                    "subject": decision.subject or decision.pass_id,
                    "reason": decision.reason,
                }
                result = await actions.send_command(target, "open", args, self.config.command_timeout)
                command_ok = result.ok
        capture_id = await self.records.record_capture(capture, ts=now, subject=decision.subject, score=decision.score)
        if target is not None and not edge:
            await self.records.record_decision(
                decision, ts=now, mode="central", device_id=target, capture_id=capture_id, command_ok=command_ok
            )
            await self._emit(capture.device_id, "access_decided", now, _decision_data(decision))
            if not locked:
                locks = self._attempts.record(target, capture.kind, attempt_key, decision.allowed, now)
                locks += await self._record_shared(target, capture.kind, attempt_key, decision.allowed, now)
                for lock in locks:
                    await self._raise_lockout(lock, snap, actions, now)
        if decision.allowed and decision.tolerant_read is not None:
            await self._review_tolerant_plate(decision, capture, snap, actions, now)
        for entry, score in hits:
            await self._raise_alarm(entry, score, capture, decision, snap, actions, now)
        return decision

    async def _review_tolerant_plate(
        self, decision: Decision, capture: Capture, snap: RegistrySnapshot, actions: PlatformActions, now: float
    ) -> None:
        """A gate opened for a plate read differently from the registered one: log both, ask for a review."""
        read, plate = decision.tolerant_read, decision.credential_ref
        device = snap.devices.get(capture.device_id)
        place = device.name if device is not None and device.name else capture.device_id
        log.warning("%s opened tolerantly: read %s, registered %s (%s)", place, read, plate, decision.subject)
        await self._alarms.raise_alarm(
            actions,
            rule_id="access",
            subject=read or "",
            kind="plate_tolerant_match",
            severity="low",
            message=f"gate opened at {place} for {read} as registered {plate}: please review the capture",
            now=now,
            evidence={"device": capture.device_id, "camera": capture.camera, "snapshot_ref": capture.snapshot_ref},
            data={"read": read, "registered": plate, "confidence": capture.confidence, "place": place},
            dedupe_key=f"access|plate-review|{plate}|{read}",
        )

    async def _consume_pass(self, decision: Decision, snap: RegistrySnapshot) -> Decision:
        assert decision.pass_id is not None
        async with self._pass_lock:
            if not await self.store.passes.record_pass_use(decision.pass_id):
                return Decision(
                    False,
                    "uses_exhausted",
                    decision.target,
                    decision.credential_kind,
                    None,
                    "visitor",
                    decision.credential_ref,
                    None,
                    decision.pass_id,
                )
            snap.register_use(decision.pass_id)
        return decision

    async def _raise_alarm(
        self,
        entry: WatchEntry,
        score: float | None,
        capture: Capture,
        decision: Decision,
        snap: RegistrySnapshot,
        actions: PlatformActions,
        now: float,
    ) -> None:
        """One alarm per watchlist entry while it is open (a second sighting counts on it), to police."""
        device = snap.devices.get(capture.device_id)
        place = device.name if device is not None and device.name else capture.device_id
        subject = entry.plate or entry.label or decision.subject or entry.id
        evidence = {
            "device": capture.device_id,
            "camera": capture.camera,
            "watch_id": entry.id,
            "snapshot_ref": capture.snapshot_ref,
            "score": score,
        }
        alarm, _created = await self._alarms.raise_alarm(
            actions,
            rule_id="access",
            subject=subject,
            kind="watchlist_match",
            severity="critical",
            message=f"watchlist: {subject} ({entry.reason}) at {place}",
            now=now,
            evidence=evidence,
            data={"place": place, "list_reason": entry.reason, "door_opened": decision.allowed},
            audience="police",
            dedupe_key=f"access|watchlist|{entry.id}",
        )
        await self._emit(
            capture.device_id,
            "watchlist_match",
            now,
            {
                "device": capture.device_id,
                "subject": subject,
                "list_reason": entry.reason,
                "snapshot_ref": capture.snapshot_ref,
                "camera": capture.camera,
                "alarm_id": alarm.id,
            },
        )

    async def _locked(self, door: str, kind: str, attempt_key: str | None, now: float) -> bool:
        """Whether ``kind`` is locked at ``door`` (in memory) or the credential is (in memory, or site-wide)."""
        if self._attempts.locked(door, kind, attempt_key, now):
            return True
        if self._shared_limits is None or attempt_key is None or kind not in LIMITED_KINDS:
            return False
        try:
            return await self._shared_limits.locked(kind, attempt_key, now)
        except DB_ERRORS as exc:  # the door's own limit still holds; this decision is not held up
            self.shared_limit_errors += 1
            log.error("%s: site-wide %s lock not read: %s", door, kind, exc)
            return False

    async def _record_shared(
        self, door: str, kind: str, attempt_key: str | None, allowed: bool, now: float
    ) -> list[LockStarted]:
        """Count a decision of a credential site-wide (a partitioned site); the lock a refusal starts."""
        if self._shared_limits is None or attempt_key is None or kind not in LIMITED_KINDS:
            return []
        try:
            if allowed:
                await self._shared_limits.granted(kind, attempt_key)
                return []
            lock = await self._shared_limits.refused(door, kind, attempt_key, now)
        except DB_ERRORS as exc:
            self.shared_limit_errors += 1
            log.error("%s: %s decision not counted site-wide: %s", door, kind, exc)
            return []
        return [] if lock is None else [lock]

    def _attempt_key(self, capture: Capture) -> str | None:
        """A keyed hash of a typed or presented credential, to count its refusals without keeping it."""
        if capture.kind not in LIMITED_KINDS or not capture.credential:
            return None
        return self.store.cipher.lookup_hash(capture.credential.strip(), f"attempts-{capture.kind}")

    async def _raise_lockout(
        self, lock: LockStarted, snap: RegistrySnapshot, actions: PlatformActions, now: float
    ) -> None:
        """One alarm per locked door and kind (or credential) while it is open; a repeat counts on it."""
        device = snap.devices.get(lock.door)
        place = device.name if device is not None and device.name else lock.door
        what = "one credential" if lock.scope == "credential" else f"{lock.credential_kind} entry"
        dedupe = f"access|lockout|{lock.door}|{lock.credential_kind}|{lock.scope}"
        if lock.credential_key is not None:
            dedupe = f"access|lockout|credential|{lock.credential_kind}|{lock.credential_key[:16]}"
        await self._alarms.raise_alarm(
            actions,
            rule_id="access",
            subject=lock.door,
            kind="access_lockout",
            severity="high",
            message=f"{lock.failures} refused {lock.credential_kind} attempts at {place}: {what} locked",
            now=now,
            evidence={"device": lock.door, "credential_kind": lock.credential_kind, "scope": lock.scope},
            data={"place": place, "until": lock.until, "failures": lock.failures},
            dedupe_key=dedupe,
        )
        log.warning("%s: %s locked until %.0f after %d refusals", lock.door, what, lock.until, lock.failures)

    async def _edge_lockout(self, event: DeviceEvent, actions: PlatformActions) -> None:
        data = event.data
        lock = LockStarted(
            event.device_id,
            str(data["credential_kind"]),
            str(data["scope"]),
            float(data["until"]),
            int(data["failures"]),
        )
        await self._raise_lockout(lock, await self.snapshot(), actions, event.ts)

    async def _emit(self, device_id: str, type_: str, now: float, data: dict[str, Any]) -> None:
        if self._on_platform_event is not None:
            await self._on_platform_event(
                DeviceEvent(self.config.site, device_id, "platform", type_, uuid.uuid4().hex, now, data)
            )

    # --- edge mode --------------------------------------------------------------------------------
    async def _record_edge_decision(self, event: DeviceEvent, actions: PlatformActions) -> None:
        data = event.data
        subject = data.get("subject")
        pass_id = (
            subject.removeprefix("visitor:") if isinstance(subject, str) and subject.startswith("visitor:") else None
        )
        snap = await self.snapshot()
        person = snap.people.get(subject) if isinstance(subject, str) else None
        role = "visitor" if pass_id else (person.role if person else None)
        decision = Decision(
            bool(data["allowed"]),
            str(data.get("reason") or ""),
            event.device_id,
            str(data.get("credential_kind") or "unknown"),
            None if pass_id else subject,
            role,
            None,
            None,
            pass_id,
        )
        if decision.allowed and pass_id is not None:
            await self.store.passes.record_pass_use(pass_id)
            snap.register_use(pass_id)
        await self.records.record_decision(decision, ts=event.ts, mode="edge", device_id=event.device_id)
        await self._emit(event.device_id, "access_decided", event.ts, _decision_data(decision))

    async def refresh_edge_allow_lists(
        self, actions: PlatformActions, *, only: str | None = None, force: bool = False
    ) -> list[str]:
        """Push changed allow-lists to edge-mode doors; returns the devices updated."""
        snap = await self.snapshot()
        now = actions.now()
        updated = []
        devices = sorted(self.edge_devices if only is None else {only})
        self._epochs.update(await edge_key_epochs(self.config.site, devices))
        for device_id in devices:
            allow = self._allow_list(snap, device_id, now)
            digest = allow_list_digest(allow)
            prev_version, prev_digest = self._pushed.get(device_id, (0, ""))
            if digest == prev_digest and not force:
                continue
            version = max(prev_version + 1, int(now))
            patch = {"access_mode": "edge", "allow_list": {"version": version, **allow}}
            with acting_as("access"):
                await actions.set_desired(device_id, patch)
            self._pushed[device_id] = (version, digest)
            updated.append(device_id)
        return updated

    def _allow_list(self, snap: RegistrySnapshot, device_id: str, now: float) -> dict[str, Any]:
        epoch = self._epochs.get(device_id, 0)
        sealer = self._sealers.get((device_id, epoch))
        if sealer is None:
            key = door_key(self.store.cipher.edge_root, self.config.site, device_id, epoch)
            sealer = self._sealers[(device_id, epoch)] = DoorSealer(key)
        return build_allow_list(snap, device_id, now, sealer, self.config.limits)

    async def next_edge_boundary(self, now: float) -> float | None:
        """The earliest future validity boundary in any edge door's allow-list."""
        snap = await self.snapshot()
        times = [t for d in self.edge_devices if (t := next_boundary(self._allow_list(snap, d, now), now))]
        return min(times) if times else None

    # --- housekeeping -----------------------------------------------------------------------------
    async def purge(self, now: float) -> dict[str, int]:
        """Enforce the retention periods (captures, decisions, alarms, expired passes, audit)."""
        counts = await self.records.purge(now, self.config.retention)
        if self._shared_limits is not None:
            counts["credential_limits"] = await self._shared_limits.prune(now)
        if counts.get("passes"):
            self.store.changed()
        return counts

    async def run(self) -> None:
        """Event workers plus periodic purge, snapshot reload and edge allow-list refresh; until cancelled."""
        self._inbox = asyncio.Queue(self.config.queue_size)
        try:
            async with asyncio.TaskGroup() as tg:
                for i in range(self.config.workers):
                    tg.create_task(self._worker(self._inbox), name=f"access-worker-{i}")
                tg.create_task(self._housekeeping(), name="access-housekeeping")
                tg.create_task(self._follow_changes(), name="access-changes")
        finally:
            self._inbox = None

    async def _worker(self, inbox: asyncio.Queue[tuple[DeviceEvent, PlatformActions]]) -> None:
        while True:
            event, actions = await inbox.get()
            try:
                await self.process_event(event, actions)
            except Exception:
                # A database hiccup or a busy recogniser loses this capture, never the worker.
                log.exception("access event %s from %s failed", event.id, event.device_id)
            finally:
                inbox.task_done()

    async def _follow_changes(self) -> None:
        """Republish edge allow-lists soon after any registry change (a revoked pass, a deactivated person)."""
        seen = await self.store.change_seq()
        while True:
            await asyncio.sleep(self.config.change_poll_interval)
            seq = await self.store.change_seq()
            if seq == seen and self._snap_generation == self.store.generation:
                continue
            seen = seq
            try:
                await self.snapshot()
                if self._actions is not None and self.edge_devices:
                    updated = await self.refresh_edge_allow_lists(self._actions)
                    if updated:
                        log.info("registry change %d: allow-lists pushed to %s", seq, ", ".join(updated))
            except Exception:
                # a database hiccup; the next change (or the periodic re-read) pushes the lists
                log.exception("allow-lists not refreshed after registry change %d", seq)
                seen = -1

    async def _housekeeping(self) -> None:
        next_purge = 0.0
        while True:
            now = self._actions.now() if self._actions is not None else self._clock()
            if self.config.purge and now >= next_purge:
                await self.purge(now)
                next_purge = now + self.config.purge_interval
            await self.snapshot(force=True)
            wake = min(next_purge, now + self.config.reload_interval)
            if self._actions is not None and self.edge_devices:
                await self.refresh_edge_allow_lists(self._actions)
                boundary = await self.next_edge_boundary(now)
                if boundary is not None:
                    wake = min(wake, boundary + 1.0)
            await asyncio.sleep(max(wake - now, 1.0))


def _decision_data(d: Decision) -> dict[str, Any]:
    return {
        "device": d.target,
        "allowed": d.allowed,
        "subject": d.subject or d.pass_id,
        "subject_role": d.subject_role,
        "credential_kind": d.credential_kind,
        "reason": d.reason,
        "score": d.score,
        **({"read_plate": d.tolerant_read} if d.tolerant_read is not None else {}),
    }
