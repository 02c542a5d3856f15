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


# --- import direction (issue 14 items 4 and 7) ------------------------------------------------------------
PLATFORM = ("anfang", "community", "registry", "rules", "twins", "telemetry", "vision", "privacy", "viewlib", "broker")
#: What the simulator may import from the platform's packages: the site file's format and the protocol's
#: public helpers (topic layout, device kinds and their schemas). Everything else it reaches as a device
#: or an operator would: MQTT with device credentials, ``anfang site load`` for provisioning. The door-side
#: decision module (today ``firmware_sim/edge_access.py``, which the platform's tests import) belongs
#: here once it moves into a package the platform shares.
SIM_MAY_IMPORT = frozenset({"twins.site", "twins.topics", "twins.kinds"})
#: Where the platform names the simulator without importing it: the ``anfang`` command mounts
#: ``anfang sim`` by module name (the CLI is the composition of the tools), and the pilot plan is read as a
#: data file when no site model was loaded.
PLATFORM_MAY_NAME_SIM = frozenset({"anfang/cli.py", "anfang/site_setup.py"})
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


def _sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def test_the_platform_imports_nothing_from_the_simulator() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in _sources(*PLATFORM)
        for line, name in _imports(p)
        if name.split(".")[0] == "firmware_sim"
    ]
    assert not found, "the platform must not import the simulator:\n" + "\n".join(found)


def test_the_platform_names_the_simulator_only_where_documented() -> None:
    named = {
        str(p.relative_to(ROOT))
        for p in _sources(*PLATFORM)
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "firmware_sim" in node.value
        and not (isinstance(node.value, str) and "\n" in node.value)  # docstrings may mention it
    }  # fmt: skip
    assert named <= PLATFORM_MAY_NAME_SIM, sorted(named - PLATFORM_MAY_NAME_SIM)


def test_the_simulator_imports_only_the_shared_modules_of_the_platform() -> None:
    found = []
    for p in _sources("firmware_sim"):
        for line, name in _imports(p):
            top = name.split(".")[0]
            if top not in PLATFORM:
                continue
            module = name if name in SIM_MAY_IMPORT else ".".join(name.split(".")[:-1])
            if module not in SIM_MAY_IMPORT and name not in SIM_MAY_IMPORT:
                found.append(f"{p.relative_to(ROOT)}:{line} imports {name}")
    assert not found, "the simulator talks to the platform over MQTT and the CLI only:\n" + "\n".join(found)


def test_the_architecture_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from firmware_sim.community import load_community\n    import community.store\n")
    assert [n for _, n in _imports(bad)] == [
        "firmware_sim.community", "firmware_sim.community.load_community", "community.store"
    ]  # fmt: skip


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


# --- library seams (issue 14 item 5) ---------------------------------------------------------------------
#: The one module that may reach into gmqtt's internals (each reach has a test in test_core_gmqtt_adapter.py).
GMQTT_ADAPTER = "anfang/gmqtt_adapter.py"
GMQTT_INTERNALS = frozenset(
    {"_connection", "_package_handler", "_protocol", "_read_packet", "_last_data_in", "_transport"}
    | {"_handle_qos_1_publish_packet", "_handle_puback_packet", "put_package", "send_package"}
)


def test_only_the_gmqtt_adapter_reaches_into_gmqtt_internals() -> None:
    found = []
    for p in _sources(*PLATFORM):
        rel = str(p.relative_to(ROOT))
        if rel == GMQTT_ADAPTER:
            continue
        imports = _imports(p)
        found += [f"{rel}:{line} imports {n}" for line, n in imports if n.startswith("gmqtt.mqtt")]
        if any(n.split(".")[0] == "gmqtt" for _, n in imports):
            tree = ast.parse(p.read_text(encoding="utf-8"))
            found += [
                f"{rel}:{node.lineno} reaches .{node.attr}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and node.attr in GMQTT_INTERNALS
            ]
    assert not found, f"gmqtt internals belong in {GMQTT_ADAPTER}:\n" + "\n".join(found)
