"""Architecture rules: the pure core stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "twins/document.py",
    "twins/kinds.py",
    "twins/topics.py",
    "twins/messages.py",
    "twins/errors.py",
    "broker/acl.py",
    "anfang/ingest.py",
]
FORBIDDEN = {"tortoise", "gmqtt", "paho", "amqtt", "aiosqlite", "asyncpg", "asyncio", "socket"}


def test_pure_modules_do_no_io_and_read_no_clock() -> None:
    for rel in PURE:
        tree = ast.parse((ROOT / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert name.split(".")[0] not in FORBIDDEN, f"{rel} imports {name}"
            if isinstance(node, ast.Attribute) and node.attr in {"now", "time", "utcnow"}:
                base = node.value
                assert not (isinstance(base, ast.Name) and base.id in {"time", "datetime"}), f"{rel} reads the clock"
