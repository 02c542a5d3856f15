"""Field-key rotation: every protected field re-encrypted under a new key, without downtime.

The AES-GCM field key has generations (``community.crypto.FieldCipher``): each ciphertext starts with
the id of the key it was written under (``v1:`` for the first, then ``k1:``, ``k2:`` ...), and every
generation's key is derived from the site master key, so any process reads every generation.
:func:`rotate` records the next generation in ``privacy_field_keys``, then rewrites every protected
column in short batches, each row compare-and-set (a row the platform changed meanwhile is read again,
never overwritten). The platform keeps running: its reads accept old and new keys, and a process that
reads a newer ciphertext writes under that generation from then on; a process that only writes (the
capture-image guard) takes the generation from ``privacy_field_keys`` at its next start, and
:func:`key_status` shows what is left under older keys (``anfang keys status``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from community.crypto import FieldCipher
from privacy.captures import IMAGE_CONTEXT
from registry.sql import with_placeholders

__all__ = ["PROTECTED", "Column", "RotateReport", "current_generation", "key_status", "rotate"]


@dataclass(frozen=True, slots=True)
class Column:
    """One encrypted column: its table, key column, how its context is formed, and the site filter."""

    table: str
    column: str
    key: str
    context: Callable[[dict[str, Any], str], str]
    site_filter: str = "site = ?"
    extra: tuple[str, ...] = ()


def _fixed(name: str) -> Callable[[dict[str, Any], str], str]:
    return lambda _row, _site: name


#: Every column the field cipher protects, with the associated data it was encrypted under.
PROTECTED: tuple[Column, ...] = (
    Column("community_people", "name_enc", "id", _fixed("name")),
    Column("community_people", "phone_enc", "id", _fixed("phone")),
    Column("community_people", "id_number_enc", "id", _fixed("id_number")),
    Column(
        "community_credentials",
        "value_enc",
        "id",
        lambda row, _site: str(row["kind"]),
        "person_id IN (SELECT id FROM community_people WHERE site = ?)",
        ("kind",),
    ),
    Column("community_passes", "visitor_name_enc", "id", _fixed("name")),
    Column("community_passes", "visitor_phone_enc", "id", _fixed("phone")),
    Column("community_watchlist", "template_enc", "id", _fixed("watch")),
    Column("capture_images", "image_enc", "ref", lambda row, _site: IMAGE_CONTEXT + str(row["ref"])),
    Column("viewlib_outbox", "payload", "id", lambda row, site: f"viewlib_outbox:{site}:{row['id']}"),
)


@dataclass
class RotateReport:
    """What a rotation re-encrypted, per ``table.column``, and what it left under older keys."""

    generation: int
    rewritten: dict[str, int] = field(default_factory=dict)
    remaining: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "key_id": FieldCipher.key_id(self.generation),
            "rewritten": self.rewritten,
            "remaining_under_older_keys": self.remaining,
        }


async def current_generation(conn: BaseDBAsyncClient, site: str) -> int:
    """The generation new ciphertexts of ``site`` are written under (0 before the first rotation)."""
    postgres = conn.capabilities.dialect == "postgres"
    rows = await conn.execute_query_dict(
        with_placeholders("SELECT generation FROM privacy_field_keys WHERE site = ?", postgres), [site]
    )
    return int(rows[0]["generation"]) if rows else 0


async def _older(conn: BaseDBAsyncClient, col: Column, site: str, prefix: str, limit: int) -> list[dict[str, Any]]:
    postgres = conn.capabilities.dialect == "postgres"
    extra = "".join(f", {c}" for c in col.extra)
    sql = (
        f"SELECT {col.key}, {col.column}{extra} FROM {col.table} WHERE {col.site_filter} "
        f"AND {col.column} IS NOT NULL AND {col.column} NOT LIKE ? ORDER BY {col.key} LIMIT {int(limit)}"
    )
    return list(await conn.execute_query_dict(with_placeholders(sql, postgres), [site, prefix + "%"]))


async def rotate(
    conn: BaseDBAsyncClient, site: str, cipher: FieldCipher, now: float, *, batch: int = 500, passes: int = 3
) -> RotateReport:
    """Move ``site`` to the next field-key generation and re-encrypt every protected column under it.

    Up to ``passes`` sweeps over every column (rows the platform wrote under the old key meanwhile are
    caught by the next); what is still left is reported (run again, or after the platform restarted).
    """
    postgres = conn.capabilities.dialect == "postgres"
    generation = max(await current_generation(conn, site), cipher.generation) + 1
    await conn.execute_query(
        with_placeholders(
            "INSERT INTO privacy_field_keys(site, generation, rotated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(site) DO UPDATE SET generation = excluded.generation, rotated_at = excluded.rotated_at",
            postgres,
        ),
        [site, generation, now],
    )
    cipher.generation = generation
    prefix = FieldCipher.key_id(generation) + ":"
    report = RotateReport(generation)
    for _ in range(passes):
        moved = 0
        for col in PROTECTED:
            seen: set[Any] = set()
            while True:
                rows = [r for r in await _older(conn, col, site, prefix, batch) if r[col.key] not in seen]
                if not rows:
                    break
                for row in rows:
                    seen.add(row[col.key])
                    old = str(row[col.column])
                    context = col.context(row, site)
                    new = cipher.encrypt_bytes(cipher.decrypt_bytes(old, context), context)
                    cipher.generation = generation  # decrypting never moves it back, but keep it explicit
                    count, _ = await conn.execute_query(
                        with_placeholders(
                            f"UPDATE {col.table} SET {col.column} = ? WHERE {col.key} = ? AND {col.column} = ?",
                            postgres,
                        ),
                        [new, row[col.key], old],
                    )
                    if count:  # (SQLite counts the change-feed trigger's row too: one row was rewritten)
                        name = f"{col.table}.{col.column}"
                        report.rewritten[name] = report.rewritten.get(name, 0) + 1
                        moved += 1
        status = await key_status(conn, site)
        report.remaining = sum(int(status.get(k, 0)) for k in _older_ids(generation))
        if report.remaining == 0 or moved == 0:
            break
    return report


def _older_ids(generation: int) -> list[str]:
    return [FieldCipher.key_id(g) for g in range(generation)]


async def key_status(conn: BaseDBAsyncClient, site: str) -> Counter[str]:
    """How many protected values of ``site`` are under each key id (``v1``, ``k1``, ...)."""
    postgres = conn.capabilities.dialect == "postgres"
    counts: Counter[str] = Counter()
    for col in PROTECTED:
        rows = await conn.execute_query_dict(
            with_placeholders(
                f"SELECT {col.column} AS v FROM {col.table} WHERE {col.site_filter} AND {col.column} IS NOT NULL",
                postgres,
            ),
            [site],
        )
        for r in rows:
            counts[str(r["v"]).partition(":")[0]] += 1
    return counts
