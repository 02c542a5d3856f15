"""The registry (sites, devices, service accounts) and the durable twin store.

Device and account records go through Tortoise models. The twin path writes raw SQL in one
transaction per batch (group commit): twins, de-duplicated events and command records together.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from broker.acl import Identity, Role
from broker.credentials import DEFAULT_ITERATIONS, hash_secret, new_secret, verify_secret
from registry import event_partitions, pg_batch
from registry.event_partitions import DAY, DEDUP_DAYS
from registry.models import Device, ServiceAccount, Site
from registry.records import CommandRecord, DeviceInfo, FeedRow, StoredEvent
from registry.sql import DB_ERRORS, is_transient, with_placeholders
from twins import jsoncodec
from twins.document import TwinDocument
from twins.errors import BadRequest, NotFound
from twins.history import HistoryEntry
from twins.kinds import KINDS, VIRTUAL_KINDS
from twins.topics import valid_id

RESERVED_PREFIX = "anfang-"  # the platform's own accounts and client ids (anfang-platform, anfang-operator)
log = logging.getLogger(__name__)

_COMMIT_ATTEMPTS = 4  # a batch aborted by a deadlock or serialization failure is tried again, up to this often
_KEYS_PER_QUERY = 250  # (device, event id) pairs per lookup: 500 parameters, far below either database's limit
_PG_SEEN = (
    "SELECT e.device_id, e.event_id FROM device_events e "
    "JOIN unnest($1::text[], $2::text[]) AS k(device_id, event_id) "
    "ON e.device_id = k.device_id AND e.event_id = k.event_id WHERE e.received_at >= $3 AND e.received_at <= $4"
)


def _is_pg(conn: BaseDBAsyncClient) -> bool:
    return conn.capabilities.dialect == "postgres"


def _info(device: Device) -> DeviceInfo:
    pos = (device.x, device.y) if device.x is not None and device.y is not None else None
    # interned: one copy of each id, site and kind shared with the cached twin and parsed topics
    return DeviceInfo(
        sys.intern(device.id),
        sys.intern(device.kind),
        name=sys.intern(device.name),
        site=sys.intern(device.site_id),
        position=pos,
        disabled=device.disabled_at is not None,
        last_seen=device.last_seen,
    )


_INFO_COLUMNS = ("id", "kind", "name", "site_id", "x", "y", "disabled_at", "last_seen")


def _info_row(
    device_id: str,
    kind: str,
    name: str,
    site: str,
    x: float | None,
    y: float | None,
    disabled_at: float | None,
    last_seen: float | None,
) -> DeviceInfo:
    """:func:`_info` of a row of :data:`_INFO_COLUMNS`."""
    pos = (x, y) if x is not None and y is not None else None
    return DeviceInfo(
        sys.intern(device_id),
        sys.intern(kind),
        name=sys.intern(name),
        site=sys.intern(site),
        position=pos,
        disabled=disabled_at is not None,
        last_seen=last_seen,
    )


class Registry:
    """Sites, devices and service accounts."""

    def __init__(self, hash_iterations: int = DEFAULT_ITERATIONS) -> None:
        self._iterations = hash_iterations

    async def ensure_site(self, site: str, name: str | None = None, origin: tuple[float, float] | None = None) -> None:
        if not valid_id(site):
            raise BadRequest(f"invalid site id {site!r}")
        lat, lon = origin if origin else (None, None)
        existing = await Site.get_or_none(id=site)
        if existing is None:
            await Site.create(id=site, name=name or site, origin_lat=lat, origin_lon=lon, created_at=time.time())
        elif name or origin:
            existing.name = name or existing.name
            if origin:
                existing.origin_lat, existing.origin_lon = lat, lon
            await existing.save()

    async def add_device(
        self,
        site: str,
        device_id: str,
        kind: str,
        name: str | None = None,
        position: tuple[float, float] | None = None,
    ) -> str | None:
        """Register a device; returns its secret (``None`` for virtual devices, which never connect)."""
        if not valid_id(device_id):
            raise BadRequest(f"invalid device id {device_id!r}: use lowercase letters, digits, '-' or '_'")
        if kind not in KINDS:
            raise BadRequest(f"unknown device kind {kind!r}; known: {', '.join(KINDS)}")
        if device_id.startswith(RESERVED_PREFIX):
            raise BadRequest(f"invalid device id {device_id!r}: ids starting with {RESERVED_PREFIX} are the platform's")
        if await Device.exists(id=device_id) or await ServiceAccount.exists(username=device_id):
            raise BadRequest(f"device {device_id} already exists")
        await self.ensure_site(site)
        secret = None if kind in VIRTUAL_KINDS else new_secret()
        hashed = await self._hash(secret) if secret else None
        now = time.time()
        x, y = position if position else (None, None)
        await Device.create(
            id=device_id,
            site_id=site,
            kind=kind,
            name=name or device_id,
            x=x,
            y=y,
            secret_hash=hashed,
            created_at=now,
            updated_at=now,
        )
        return secret

    async def rotate_secret(self, device_id: str) -> str:
        device = await Device.get_or_none(id=device_id)
        if device is None:
            raise NotFound(f"unknown device {device_id}")
        if device.kind in VIRTUAL_KINDS:
            raise BadRequest(f"{device_id} is a virtual {device.kind}; it has no secret")
        secret = new_secret()
        device.secret_hash = await self._hash(secret)
        device.updated_at = time.time()
        await device.save()
        return secret

    async def set_disabled(self, device_id: str, disabled: bool) -> DeviceInfo:
        """Disable (the broker refuses it from now on) or enable a device; returns it as it now is."""
        device = await Device.get_or_none(id=device_id)
        if device is None:
            raise NotFound(f"unknown device {device_id}")
        if (device.disabled_at is not None) != disabled:
            now = time.time()
            device.disabled_at, device.updated_at = (now if disabled else None), now
            await device.save()
        return _info(device)

    async def delete_device(self, device_id: str) -> DeviceInfo:
        """Remove a device's registration, credentials, twin and its history in one transaction. Its events, commands
        and access records stay until the retention purge removes them (docs/privacy.md)."""
        device = await Device.get_or_none(id=device_id)
        if device is None:
            raise NotFound(f"unknown device {device_id}")
        info = _info(device)
        async with in_transaction() as tx:
            for table in ("twins", "twin_history"):
                await tx.execute_query(
                    with_placeholders(f"DELETE FROM {table} WHERE device_id = ?", _is_pg(tx)), [device_id]
                )
            await Device.filter(id=device_id).using_db(tx).delete()
        return info

    async def record_last_seen(self, times: Mapping[str, float]) -> None:
        """Write devices' last-seen times in one statement (a time never moves back)."""
        rows = [[when, device_id, when] for device_id, when in times.items()]
        async with in_transaction() as tx:
            await tx.execute_many(
                with_placeholders(
                    "UPDATE devices SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen < ?)",
                    _is_pg(tx),
                ),
                rows,
            )

    async def get_device(self, device_id: str) -> DeviceInfo | None:
        device = await Device.get_or_none(id=device_id)
        return _info(device) if device else None

    async def get_devices(self, device_ids: Collection[str]) -> list[DeviceInfo]:
        """The registered devices among ``device_ids``, in one query (a batch's new devices)."""
        if not device_ids:
            return []
        return [_info(d) for d in await Device.filter(id__in=list(device_ids))]

    async def list_devices(self, site: str | None = None) -> list[DeviceInfo]:
        query = Device.filter(site_id=site) if site else Device.all()
        # rows as tuples, not model instances: 100,000 devices in about a tenth of the time (start-up,
        # and the rules' look for newly registered devices every minute)
        rows = await query.order_by("id").values_list(*_INFO_COLUMNS)
        return [_info_row(*row) for row in rows]

    async def ensure_service_account(self, username: str, role: Role, secret: str) -> None:
        """Create or update a service account so that ``secret`` authenticates it."""
        account = await ServiceAccount.get_or_none(username=username)
        if account is not None and account.role == role.value and await self._verify(secret, account.secret_hash):
            return
        hashed = await self._hash(secret)
        if account is None:
            try:
                await ServiceAccount.create(
                    username=username, role=role.value, secret_hash=hashed, created_at=time.time()
                )
                return
            except IntegrityError:  # another worker starting at the same moment created it first
                account = await ServiceAccount.get(username=username)
        account.role, account.secret_hash = role.value, hashed
        await account.save()

    async def authenticate(self, username: str | None, password: str | None) -> Identity | None:
        """The identity for a username and secret, or ``None`` (unknown user, wrong secret)."""
        if not username or not password:
            return None
        device = await Device.get_or_none(id=username)
        if device is not None:
            if device.disabled_at is not None:
                return None
            if device.secret_hash and await self._verify(password, device.secret_hash):
                return Identity(username, Role.DEVICE, device.site_id)
            return None
        account = await ServiceAccount.get_or_none(username=username)
        if account is not None and await self._verify(password, account.secret_hash):
            return Identity(username, Role(account.role))
        return None

    async def device_identity(self, device_id: str) -> Identity | None:
        """The identity of a registered device that is not disabled, for a client certificate naming it
        (CN = device id)."""
        device = await Device.get_or_none(id=device_id)
        if device is None or device.disabled_at is not None:
            return None
        return Identity(device_id, Role.DEVICE, device.site_id)

    async def credential_hashes(self) -> list[tuple[Identity, str]]:
        """Every identity with its stored hash, for writing Mosquitto's password and ACL files."""
        out = [
            (Identity(d.id, Role.DEVICE, d.site_id), d.secret_hash)
            for d in await Device.filter(disabled_at=None).order_by("id")
            if d.secret_hash
        ]
        out += [(Identity(a.username, Role(a.role)), a.secret_hash) for a in await ServiceAccount.all()]
        return out

    async def _hash(self, secret: str) -> str:
        return await asyncio.to_thread(hash_secret, secret, self._iterations)

    async def _verify(self, secret: str, stored: str) -> bool:
        return await asyncio.to_thread(verify_secret, secret, stored)


#: Makes an event storable (credentials hashed or dropped) and returns its ``capture_images`` row, if any.
EventGuard = Callable[[StoredEvent], tuple[StoredEvent, list[Any] | None]]


class TwinStore:
    """Durable twin documents, events and commands; one transaction per batch.

    ``guard`` (the platform passes :class:`privacy.captures.EventGuard`) sees every event before it is
    written: personal data in events never reaches the database in the clear.
    """

    def __init__(self, conn: BaseDBAsyncClient, postgres: bool, guard: EventGuard | None = None) -> None:
        self._conn = conn
        self._pg = postgres
        self._guard = guard

    def _q(self, sql: str) -> str:
        return with_placeholders(sql, self._pg)

    @property
    def connection(self) -> BaseDBAsyncClient:
        """The database connection the store writes to (its readers, such as the history, share it)."""
        return self._conn

    async def load(self, device_id: str) -> TwinDocument | None:
        rows = await self._conn.execute_query_dict(self._q("SELECT doc FROM twins WHERE device_id = ?"), [device_id])
        return TwinDocument.from_json(jsoncodec.loads(rows[0]["doc"])) if rows else None

    async def load_many(self, device_ids: Collection[str]) -> list[TwinDocument]:
        """The stored twins among ``device_ids``, in one query (a batch's devices not cached yet)."""
        if not device_ids:
            return []
        if self._pg:
            rows = await self._conn.execute_query_dict(
                "SELECT doc FROM twins WHERE device_id = ANY($1::text[])", [list(device_ids)]
            )
        else:
            ids = list(device_ids)
            rows = await self._conn.execute_query_dict(
                f"SELECT doc FROM twins WHERE device_id IN ({', '.join('?' * len(ids))})", ids
            )
        return [TwinDocument.from_json(jsoncodec.loads(r["doc"])) for r in rows]

    async def load_all(self) -> list[TwinDocument]:
        rows = await self._conn.execute_query_dict("SELECT doc FROM twins")
        return [TwinDocument.from_json(jsoncodec.loads(r["doc"])) for r in rows]

    async def with_desired_expiry(self) -> list[TwinDocument]:
        """Twins with momentary desired fields (a time-to-live), for the expiry sweep after a start."""
        # the stored JSON is compact, so a non-empty "expires" object always reads like this
        rows = await self._conn.execute_query_dict(
            self._q("SELECT doc FROM twins WHERE doc LIKE ?"), ['%"expires":{"%']
        )
        return [TwinDocument.from_json(jsoncodec.loads(r["doc"])) for r in rows]

    async def seen_events(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (device, event id) pairs are already stored: one query per few hundred pairs, each
        pair an index lookup (a batch of events would otherwise cost a round trip per event).

        On PostgreSQL the pairs go as two arrays in one query, and only the partitions of the last
        :data:`~registry.event_partitions.DEDUP_DAYS` days are searched (the key includes the day)."""
        if not keys:
            return set()
        if self._pg:
            now = time.time()
            # both bounds prune partitions: the days ahead (made early) and the default one are not searched;
            # the hour above now allows another worker's clock to be ahead of this one's
            window = [now - DEDUP_DAYS * DAY, now + 3600.0]
            rows = await self._conn.execute_query_dict(_PG_SEEN, [[k[0] for k in keys], [k[1] for k in keys], *window])
            return {(str(r["device_id"]), str(r["event_id"])) for r in rows}
        seen: set[tuple[str, str]] = set()
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start : start + _KEYS_PER_QUERY]
            where = " OR ".join(["(device_id = ? AND event_id = ?)"] * len(chunk))
            rows = await self._conn.execute_query_dict(
                self._q(f"SELECT device_id, event_id FROM device_events WHERE {where}"),
                [value for key in chunk for value in key],
            )
            seen.update((str(r["device_id"]), str(r["event_id"])) for r in rows)
        return seen

    async def add_event_partitions(self, now: float) -> int:
        """Make the coming days' ``device_events`` partitions (PostgreSQL; 0 on SQLite)."""
        return await event_partitions.add_ahead(self._conn, now)

    async def commit(
        self,
        twins: Iterable[TwinDocument],
        events: Sequence[StoredEvent] = (),
        commands: Sequence[CommandRecord] = (),
        feed: Sequence[FeedRow] = (),
        history: Sequence[HistoryEntry] = (),
    ) -> None:
        """Write a batch atomically (see :meth:`_commit_once`), rows in key order, so that two writers of
        overlapping rows wait for each other instead of deadlocking; a deadlock or serialization failure
        the database reports anyway (it aborts the whole batch) is retried a few times."""
        ordered = sorted(twins, key=lambda t: t.device_id)
        events = sorted(events, key=lambda e: (e.device_id, e.event_id))
        history = sorted(history, key=lambda h: (h.device_id, h.version))
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                await self._commit_once(ordered, events, commands, feed, history)
                return
            except DB_ERRORS as exc:
                if attempt + 1 == _COMMIT_ATTEMPTS or not is_transient(exc):
                    raise
                log.warning("commit of a batch of %d twins, %d events retried: %s", len(ordered), len(events), exc)
                await asyncio.sleep(0.05 * 2**attempt)

    async def _commit_once(
        self,
        twins: Iterable[TwinDocument],
        events: Sequence[StoredEvent],
        commands: Sequence[CommandRecord],
        feed: Sequence[FeedRow],
        history: Sequence[HistoryEntry],
    ) -> None:
        """Write a batch atomically. A twin row is only replaced by a document of the same or newer version.

        ``feed`` rows (a partition owner's twin changes for the site's leader) and ``history`` (each change's
        entry in the twin's version history) commit with the twins. On PostgreSQL twins, history, events and
        feed rows are one statement of column arrays (:mod:`registry.pg_batch`): one round trip and no
        transaction block unless commands or capture images come too.
        """
        now = time.time()
        image_rows: list[list[Any]] = []
        if self._guard is not None:
            guarded = []
            for event in events:
                stored, image = self._guard(event)
                guarded.append(stored)
                if image is not None:
                    image_rows.append(image)
            events = guarded
        command_rows = [
            [
                c.id,
                c.device_id,
                c.name,
                json.dumps(c.args),
                c.status,
                None if c.result is None else json.dumps(c.result),
                c.created_at,
                c.finished_at,
            ]
            for c in commands
        ]
        statement = pg_batch.batch_statement(twins, events, feed, now, history) if self._pg else None
        if statement is not None and not image_rows and not command_rows:
            await self._conn.execute_query(*statement)  # one statement: atomic on its own
            return
        async with in_transaction() as tx:
            if self._pg:
                if statement is not None:
                    await tx.execute_query(*statement)
            else:
                await self._write_rows(tx, twins, events, feed, now, history)
            if image_rows:
                await tx.execute_many(
                    self._q(
                        "INSERT INTO capture_images(ref, site, device_id, event_type, ts, image_enc) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
                    ),
                    image_rows,
                )
            if command_rows:
                await tx.execute_many(
                    self._q(
                        "INSERT INTO commands(id, device_id, name, args, status, result, created_at, finished_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status = excluded.status, "
                        "result = excluded.result, finished_at = excluded.finished_at"
                    ),
                    command_rows,
                )

    @staticmethod
    async def _write_rows(
        tx: BaseDBAsyncClient,
        twins: Iterable[TwinDocument],
        events: Sequence[StoredEvent],
        feed: Sequence[FeedRow],
        now: float,
        history: Sequence[HistoryEntry],
    ) -> None:
        """SQLite: twins, history, events and feed rows, a prepared statement per table (in the caller's
        transaction)."""
        twin_rows = [[t.device_id, t.version, jsoncodec.dumps(t.to_json()), now] for t in twins]
        if twin_rows:
            await tx.execute_many(
                "INSERT INTO twins(device_id, version, doc, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET version = excluded.version, doc = excluded.doc, "
                "updated_at = excluded.updated_at WHERE twins.version <= excluded.version",
                twin_rows,
            )
        if history:
            # a version is written once: a worker that re-commits it (a takeover) adds nothing
            await tx.execute_many(
                "INSERT INTO twin_history(device_id, version, ts, source, actor, changed) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [[h.device_id, h.version, h.ts, h.source, h.actor, jsoncodec.dumps(h.changed)] for h in history],
            )
        if events:
            await tx.execute_many(
                "INSERT INTO device_events(device_id, event_id, type, ts, received_at, data) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [[e.device_id, e.event_id, e.type, e.ts, e.received_at, jsoncodec.dumps(e.data)] for e in events],
            )
        if feed:
            await tx.execute_many(
                "INSERT INTO twin_feed(site, part, target, seq, body) VALUES (?, ?, ?, ?, ?)",
                [list(row) for row in feed],
            )

    async def feed_head(self, site: str, part: int, target: int) -> int:
        """The last sequence number writer stream ``part`` has used towards ``target`` (0 for none)."""
        rows = await self._conn.execute_query_dict(
            self._q("SELECT MAX(seq) AS seq FROM twin_feed WHERE site = ? AND part = ? AND target = ?"),
            [site, part, target],
        )
        written = rows[0]["seq"] if rows and rows[0]["seq"] is not None else 0
        return max(int(written), await self.feed_cursor(site, part, target))

    async def read_feed(self, site: str, part: int, target: int, after: int, limit: int) -> list[tuple[int, str]]:
        rows = await self._conn.execute_query_dict(
            self._q(
                "SELECT seq, body FROM twin_feed WHERE site = ? AND part = ? AND target = ? AND seq > ? "
                "ORDER BY seq LIMIT ?"
            ),
            [site, part, target, after, limit],
        )
        return [(int(r["seq"]), str(r["body"])) for r in rows]

    async def feed_cursor(self, site: str, part: int, target: int) -> int:
        rows = await self._conn.execute_query_dict(
            self._q("SELECT seq FROM twin_feed_cursors WHERE site = ? AND part = ? AND target = ?"),
            [site, part, target],
        )
        return int(rows[0]["seq"]) if rows else 0

    async def advance_feed(self, site: str, part: int, target: int, seq: int) -> None:
        """Remember that ``target`` has taken stream ``part``'s rows up to ``seq``; drop what it no longer needs."""
        async with in_transaction() as tx:
            await tx.execute_query(
                self._q(
                    "INSERT INTO twin_feed_cursors(site, part, target, seq) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(site, part, target) DO UPDATE SET seq = excluded.seq"
                ),
                [site, part, target, seq],
            )
            await tx.execute_query(
                self._q("DELETE FROM twin_feed WHERE site = ? AND part = ? AND target = ? AND seq <= ?"),
                [site, part, target, seq],
            )

    async def record_command_sent(self, record: CommandRecord) -> None:
        """Record a command as sent, unless its outcome was recorded first."""
        await self._conn.execute_query(
            self._q(
                "INSERT INTO commands(id, device_id, name, args, status, result, created_at, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING"
            ),
            [
                record.id,
                record.device_id,
                record.name,
                json.dumps(record.args),
                record.status,
                None,
                record.created_at,
                None,
            ],
        )

    async def command(self, command_id: str) -> dict[str, Any] | None:
        rows = await self._conn.execute_query_dict(
            self._q("SELECT id, device_id, name, status, result FROM commands WHERE id = ?"), [command_id]
        )
        return dict(rows[0]) if rows else None
