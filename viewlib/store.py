"""The view library's outbox in the registry database (table ``viewlib_outbox``, migration 0080).

One row per captured object waiting for the server, like the alarm outbox
(:mod:`registry.alarm_store`): written when the capture arrives, retried with backoff, deleted once
the server accepted it or when it is given up. The object — with its image — is stored encrypted
with the site's field cipher (:class:`community.crypto.FieldCipher`), bound to its row id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from community.crypto import CryptoError, FieldCipher
from registry.sql import DB_ERRORS, Sql
from viewlib.errors import OutboxError
from viewlib.gat1400 import Kind

__all__ = ["OutboxRow", "ViewLibOutbox"]

_INSERT = (
    "INSERT INTO viewlib_outbox(id, site, kind, object_id, payload, attempts, next_at, created_at) "
    "VALUES (?, ?, ?, ?, ?, 0, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One object waiting for the server (decrypted)."""

    id: str
    kind: Kind
    object_id: str
    obj: dict[str, Any]
    attempts: int
    created_at: float


class ViewLibOutbox:
    """A site's captures waiting for the view library."""

    def __init__(self, conn: BaseDBAsyncClient, site: str, cipher: FieldCipher) -> None:
        self._sql, self.site, self._cipher = Sql(conn), site, cipher
        self.unreadable = 0  # rows that did not decrypt (another key) and were dropped

    def _error(self, doing: str, exc: BaseException) -> OutboxError:
        return OutboxError(f"viewlib_outbox of site {self.site}", f"cannot {doing}: {exc}")

    def _context(self, row_id: str) -> str:
        return f"viewlib_outbox:{self.site}:{row_id}"

    async def add(self, kind: Kind, object_id: str, obj: dict[str, Any], now: float) -> str:
        """Store one object for upload; returns its row id."""
        row_id = uuid.uuid4().hex
        payload = self._cipher.encrypt(
            json.dumps(obj, ensure_ascii=False, separators=(",", ":")), self._context(row_id)
        )
        try:
            await self._sql.execute(_INSERT, [row_id, self.site, kind, object_id, payload, now, now])
        except DB_ERRORS as exc:
            raise self._error(f"store {kind} {object_id}", exc) from exc
        return row_id

    async def due(self, now: float, limit: int) -> list[OutboxRow]:
        """Rows whose next attempt is due, oldest first; rows that no longer decrypt are dropped."""
        try:
            rows = await self._sql.rows(
                "SELECT id, kind, object_id, payload, attempts, created_at FROM viewlib_outbox "
                "WHERE site = ? AND next_at <= ? ORDER BY next_at, created_at LIMIT ?",
                [self.site, now, limit],
            )
        except DB_ERRORS as exc:
            raise self._error("read due uploads", exc) from exc
        found: list[OutboxRow] = []
        for r in rows:
            try:
                obj = json.loads(self._cipher.decrypt(r["payload"], self._context(r["id"])))
            except (CryptoError, ValueError):
                self.unreadable += 1
                await self.delete([r["id"]])
                continue
            found.append(OutboxRow(r["id"], r["kind"], r["object_id"], obj, int(r["attempts"]), r["created_at"]))
        return found

    async def delete(self, row_ids: Sequence[str]) -> None:
        """Forget delivered (or given-up) rows."""
        if not row_ids:
            return
        try:
            await self._sql.batch([("DELETE FROM viewlib_outbox WHERE id = ?", [[i] for i in row_ids])])
        except DB_ERRORS as exc:
            raise self._error("delete delivered uploads", exc) from exc

    async def retry_at(self, row_ids: Sequence[str], next_at: float, error: str) -> None:
        """Count a failed attempt of each row and schedule its next one."""
        if not row_ids:
            return
        sql = "UPDATE viewlib_outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?"
        try:
            await self._sql.batch([(sql, [[next_at, error[:500], i] for i in row_ids])])
        except DB_ERRORS as exc:
            raise self._error("schedule a retry", exc) from exc

    async def expire(self, before: float) -> int:
        """Give up rows created before ``before``; returns how many."""
        params = [self.site, before]
        try:
            rows = await self._sql.rows(
                "SELECT COUNT(*) AS n FROM viewlib_outbox WHERE site = ? AND created_at < ?", params
            )
            await self._sql.execute("DELETE FROM viewlib_outbox WHERE site = ? AND created_at < ?", params)
        except DB_ERRORS as exc:
            raise self._error("give up old uploads", exc) from exc
        return int(rows[0]["n"])

    async def pending(self) -> int:
        """Objects still to upload (for health and metrics)."""
        try:
            rows = await self._sql.rows("SELECT COUNT(*) AS n FROM viewlib_outbox WHERE site = ?", [self.site])
        except DB_ERRORS as exc:
            raise self._error("count pending uploads", exc) from exc
        return int(rows[0]["n"])
