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


#: The pure ingest path: parse, validate, merge, de-duplicate; its imports must not reach an ORM or a driver.
INGEST_PATH = ("anfang.ingest",)
ORM = ("tortoise", "aiosqlite", "asyncpg", "pypika")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (also inside functions and ``TYPE_CHECKING``), with its line."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _module_file(module: str) -> Path | None:
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_the_pure_ingest_path_imports_no_orm() -> None:
    """Follow the ingest path's imports through the project's own modules; none may reach an ORM."""
    seen: set[str] = set()
    todo = list(INGEST_PATH)
    chain: dict[str, str] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue
        for _, name in _imports(path):
            assert name.split(".")[0] not in ORM, f"{module} imports {name} (via {chain.get(module, 'start')})"
            for candidate in (name, name.rpartition(".")[0]):
                if candidate and _module_file(candidate) is not None and candidate not in seen:
                    chain[candidate] = module
                    todo.append(candidate)
    assert "twins.document" in seen and "registry.records" in seen
