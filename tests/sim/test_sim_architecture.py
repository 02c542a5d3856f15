"""The simulator's pure core stays pure: no MQTT, sockets or clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import firmware_sim

PURE = [
    "community",
    "generator",
    "firmware",
    "edge_access",
    "behaviour",
    "radio",
    "checker",
    "mqtt_wire",
    "identity",
    "scenarios/__init__",
    "scenarios/library",
]
FORBIDDEN_IMPORTS = {"paho", "socket", "asyncio", "gmqtt", "amqtt", "time"}
FORBIDDEN_CALLS = {"now", "time", "today", "utcnow"}


def test_pure_modules_do_no_io_and_read_no_clock() -> None:
    root = Path(firmware_sim.__file__).parent
    for name in PURE:
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not {m.split(".")[0] for m in mods} & FORBIDDEN_IMPORTS, f"{name} imports {mods}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in FORBIDDEN_CALLS, f"{name} calls .{node.func.attr}()"


def test_public_api_is_what_init_exports() -> None:
    assert sorted(firmware_sim.__all__) == firmware_sim.__all__
    for name in firmware_sim.__all__:
        assert getattr(firmware_sim, name) is not None
