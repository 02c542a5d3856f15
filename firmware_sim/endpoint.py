"""Where the platform is, as an outsider finds it: the broker's address and the data directory.

The simulator never imports the platform. Like an installer's script it reads the operator's
configuration file (``--config``, ``$ANFANG_CONFIG`` or ``./anfang.yaml``) and the ``ANFANG_*``
variables that say where the broker listens and where the platform keeps its data — and nothing else: in
particular never the platform's own MQTT account, so a simulator without credentials connects without
them (and is refused), it does not log in as ``anfang-platform``. Devices use their own secrets
(from ``anfang site load --secrets-out``); ``--check`` uses the operator account only when given one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Endpoint", "EndpointError", "find_endpoint"]


class EndpointError(ValueError):
    """The configuration file cannot be read."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The broker's host and port, and the platform's data directory (where the simulator keeps its secrets)."""

    host: str
    port: int
    data_dir: Path


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def find_endpoint(config: Path | None = None, environ: Mapping[str, str] | None = None) -> Endpoint:
    """The platform's broker address and data directory from its configuration file and environment."""
    env = os.environ if environ is None else environ
    path = config or (Path(env["ANFANG_CONFIG"]) if env.get("ANFANG_CONFIG") else None)
    if path is None and Path("anfang.yaml").exists():
        path = Path("anfang.yaml")
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise EndpointError(f"cannot read config file {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise EndpointError(f"config file {path} must hold a mapping")
        tree = loaded
    broker = dict(tree.get("broker") or {})
    mqtt = dict(tree.get("mqtt") or {})
    embedded = _truthy(env.get("ANFANG_EMBEDDED_BROKER", broker.get("embedded", True)))
    data_dir = Path(str(env.get("ANFANG_DATA_DIR", tree.get("data_dir", "data"))))
    if embedded:
        host, _, port = str(env.get("ANFANG_BROKER_BIND", broker.get("bind", "127.0.0.1:1883"))).rpartition(":")
        return Endpoint("127.0.0.1" if host in ("", "0.0.0.0") else host, int(port), data_dir)
    host = str(env.get("ANFANG_MQTT_HOST", mqtt.get("host", "127.0.0.1")))
    return Endpoint(host, int(env.get("ANFANG_MQTT_PORT", mqtt.get("port", 1883))), data_dir)
