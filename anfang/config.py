"""Settings: defaults that work with no file, one YAML file, and ``ANFANG_*`` environment overrides."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vision.gallery import DEFAULT_THRESHOLD


class ConfigError(Exception):
    """The configuration file or an override is invalid; the message says which key and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str = "anfang-platform"
    password: str | None = None
    client_id: str = "anfang-platform"
    keepalive: int = 30
    protocol: Literal["auto", "3.1.1", "5"] = "auto"
    shared_group: str | None = None


class BrokerSettings(_Section):
    embedded: bool = True
    bind: str = "127.0.0.1:1883"
    hash_iterations: int = Field(default=10_000, ge=1000)
    # an external Mosquitto's passwd/acl directory (what `anfang broker mosquitto-config --out` wrote):
    # disabling, deleting or re-keying a device rewrites them and waits until Mosquitto has re-read them
    mosquitto_dir: Path | None = None
    mosquitto_pid_file: Path | None = None  # sent SIGHUP after a rewrite (else whatever runs Mosquitto must)


class TlsSettings(_Section):
    """TLS for devices (MQTT) and people (HTTPS) with the site's certificates from ``anfang certs init``
    (``dir``: ca.crt, server.crt, server.key; default ``{data_dir}/tls``; docs/deploy.md, "TLS")."""

    dir: Path | None = None
    mqtt_bind: str | None = None  # the embedded broker's MQTT-over-TLS listener, e.g. 0.0.0.0:8883
    require_client_cert: bool = False  # devices on the TLS listener must present a certificate (CN = device id)
    api: bool = False  # serve the HTTP API over HTTPS


class LimitSettings(_Section):
    max_payload_bytes: int = 256 * 1024
    max_document_bytes: int = 128 * 1024
    max_depth: int = 8
    max_clock_skew_s: float = Field(default=60.0, ge=0)
    command_timeout_s: float = 10.0
    ingest_queue: int = 10_000
    batch_max: int = 500
    health_interval_s: float = Field(default=10.0, gt=0)


class WorkerSettings(_Section):
    """Several active workers for one site: devices split into ``partitions`` (see docs/scaling.md)."""

    partitions: int = Field(default=1, ge=1, le=256)
    count: int = Field(default=1, ge=1, le=256)  # workers `anfang run --workers` starts on this machine
    index: int = Field(default=0, ge=0)  # this worker's number (part of its name in the assignment)
    heartbeat_s: float = Field(default=1.0, gt=0)  # how often a worker heartbeats and follows the assignment
    takeover_after_s: float = Field(default=3.0, gt=0)  # a worker silent this long is dropped from the assignment
    refresh_s: float = Field(default=2.0, gt=0)  # a partition owner's look for new devices, besides NOTIFY
    provision_wait_s: float = Field(default=30.0, ge=0)  # `devices add` waits this long for the owner's SUBACK


class VisionSettings(_Section):
    """Recognition at this site (see docs/vision.md, "Face decision threshold")."""

    # Same-person cosine for door decisions and the 人证合一 enrolment check; the default is the value
    # calibrated to at most 1 false accept in 10,000 impostor pairs.
    face_threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=1.0)


class PrivacySettings(_Section):
    """How long this site keeps personal data, in days (docs/privacy.md, "Retention")."""

    strangers_days: float = Field(default=7.0, gt=0)  # captures that matched nobody
    captures_days: float = Field(default=30.0, gt=0)  # captures of residents and visitors
    decisions_days: float = Field(default=90.0, gt=0)
    location_days: float = Field(default=30.0, gt=0)  # raw tag/MAC/tracker sightings; daily counts stay
    audit_days: float = Field(default=365.0, gt=0)
    passes_days: float = Field(default=30.0, gt=0)  # after a visitor pass expired
    events_days: float = Field(default=365.0, gt=0)  # other device events (PostgreSQL: whole days dropped)
    purge_interval_s: float = Field(default=3600.0, gt=0)


class HistorySettings(_Section):
    """The twins' version history (docs/console.md, docs/rules.md "Replay"): the newest ``keep_versions``
    changes per device (0: no count bound) and none older than ``keep_days``, pruned every ``prune_interval_s``."""

    keep_versions: int = Field(default=2000, ge=0)  # a busy door: about two weeks
    keep_days: float = Field(default=30.0, gt=0)  # tag positions are location data: as privacy.location_days
    prune_interval_s: float = Field(default=600.0, gt=0)


class TelemetryConfig(_Section):
    influx_url: str | None = None
    influx_api: Literal["auto", "v1", "v2"] = "auto"  # v1: /write?db= (InfluxDB 1.x); auto asks the server
    influx_token: str | None = None
    influx_org: str = "anfang"
    influx_bucket: str = "anfang"
    file: Path | None = None
    spool_dir: Path | None = None
    spool_max_mb: int = 512


Severity = Literal["info", "low", "medium", "high", "critical"]
AlarmEvent = Literal["raised", "repeated", "acknowledged", "cleared", "escalated"]


class WebhookSettings(_Section):
    """A receiver of the site's alarms (a police desk, a guard room's pager gateway)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    url: str = Field(pattern=r"^https?://\S+$")
    min_severity: Severity = "high"  # alarms at least this severe
    kinds: list[str] = []  # only these kinds (all when empty)
    events: list[AlarmEvent] = ["raised"]  # which transitions it is told about
    headers: dict[str, str] = {}
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class AlarmSettings(_Section):
    """Where the site's alarms go, when they escalate, how long they are kept."""

    webhooks: list[WebhookSettings] = []
    # an unacknowledged critical alarm goes to the next contact (a webhook name) every escalate_after_s
    escalation_contacts: list[str] = []
    escalate_after_s: float = Field(default=300.0, gt=0)
    retention_days: float = Field(default=365.0, gt=0)  # cleared alarms; open ones are kept
    delivery_max_age_s: float = Field(default=86_400.0, gt=0)  # then an undeliverable webhook call is given up

    @model_validator(mode="after")
    def _contacts_are_webhooks(self) -> AlarmSettings:
        names = [w.name for w in self.webhooks]
        if len(set(names)) != len(names):
            raise ValueError("webhook names must be unique")
        if unknown := [c for c in self.escalation_contacts if c not in names]:
            raise ValueError(f"escalation contact {unknown[0]!r} is not a webhook name")
        return self


class ApiSettings(_Section):
    """The HTTP API's tokens and abuse limits (docs/access.md)."""

    token_staff_ttl_h: float = Field(default=12.0, gt=0, le=24 * 31)  # staff and police: one shift
    token_resident_ttl_h: float = Field(default=30 * 24.0, gt=0, le=24 * 366)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # larger requests get 413 before they are read
    token_issue_per_min: int = Field(default=10, ge=1)  # POST /tokens per client address and process
    signin_per_min: int = Field(default=10, ge=1)  # console sign-ins per client address and process


class ConsoleSettings(_Section):
    """The web console (anfang/console, docs/console.md): sessions and links to Grafana."""

    idle_timeout_s: float = Field(default=1800.0, gt=0)  # a session unused this long is signed out
    session_max_age_s: float = Field(default=12 * 3600.0, gt=0)  # one shift, then sign in again
    link_ttl_s: float = Field(default=24 * 3600.0, gt=0)  # a resident's one-time sign-in link
    live_poll_s: float = Field(default=0.5, gt=0, le=5)  # how often the live alarm stream looks for changes
    grafana_url: str | None = None  # e.g. http://grafana:3000; the console links its dashboards
    secure_cookie: bool = False  # set the Secure flag (when the API is served over HTTPS)
    tag_max_age_s: float = Field(default=600.0, gt=0)  # the map draws worn tags seen this recently
    map_refresh_s: float = Field(default=5.0, ge=1, le=60)  # how often an open map redraws tags and states


_GB28181_CODE = r"^[0-9]{20}$"


class ViewLibSettings(_Section):
    """Uploading captures to a police view library (视图库, GA/T 1400; see docs/viewlib.md). Off by default."""

    enabled: bool = False
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")  # the server's base, without /VIID
    username: str | None = None  # the digest user; the platform's device_id when unset
    password: str | None = None  # from ANFANG_VIEWLIB_PASSWORD or password_file, never in the YAML file
    password_file: Path | None = None
    device_id: str | None = Field(default=None, pattern=_GB28181_CODE)  # this platform (User-Identify)
    # anfang device id -> the camera's 20-digit code; captures of cameras not listed are not uploaded
    devices: dict[str, str] = {}
    kinds: list[Literal["face", "vehicle", "person"]] = ["face", "vehicle", "person"]
    utc_offset_h: float = Field(default=8.0, ge=-12, le=14)  # ShotTime and the ids are local time (China: +8)
    keepalive_s: float = Field(default=60.0, gt=0)
    retry_min_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    batch: int = Field(default=20, ge=1, le=500)  # objects per upload request
    max_age_s: float = Field(default=7 * 86_400.0, gt=0)  # then an undeliverable capture is given up

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> ViewLibSettings:
        if bad := [d for d, code in self.devices.items() if not re.fullmatch(_GB28181_CODE, code)]:
            raise ValueError(f"device {bad[0]!r}: the view library code must be 20 digits")
        if self.enabled:
            missing = [k for k in ("url", "device_id") if getattr(self, k) is None]
            if self.password is None and self.password_file is None:
                missing.append("password (ANFANG_VIEWLIB_PASSWORD or password_file)")
            if missing:
                raise ValueError(f"viewlib is enabled but has no {', '.join(missing)}")
        return self


class Settings(_Section):
    site: str = "youzheng"
    data_dir: Path = Path("data")
    database_url: str | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"
    secret_key: str | None = None
    secret_key_file: Path | None = None  # the master key kept apart from the data (mode 0600 required)
    rules_dir: Path | None = None
    rules_event_skew_s: float = 300.0  # event times further from the platform clock are judged at its time
    community_file: Path | None = None
    api_bind: str | None = "127.0.0.1:8080"
    mqtt: MqttSettings = MqttSettings()
    broker: BrokerSettings = BrokerSettings()
    tls: TlsSettings = TlsSettings()
    limits: LimitSettings = LimitSettings()
    telemetry: TelemetryConfig = TelemetryConfig()
    workers: WorkerSettings = WorkerSettings()
    alarms: AlarmSettings = AlarmSettings()
    vision: VisionSettings = VisionSettings()
    privacy: PrivacySettings = PrivacySettings()
    history: HistorySettings = HistorySettings()
    console: ConsoleSettings = ConsoleSettings()
    api: ApiSettings = ApiSettings()
    viewlib: ViewLibSettings = ViewLibSettings()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite://{self.data_dir / 'anfang.db'}"

    @property
    def mqtt_address(self) -> tuple[str, int]:
        """Where clients reach the broker: the embedded one's bind address, or the external broker."""
        if not self.broker.embedded:
            return self.mqtt.host, self.mqtt.port
        host, _, port = self.broker.bind.rpartition(":")
        return ("127.0.0.1" if host in ("", "0.0.0.0") else host), int(port)

    @property
    def api_enabled(self) -> bool:
        """The HTTP API is served unless ``api_bind`` is empty, ``off`` or ``none``."""
        return bool(self.api_bind) and str(self.api_bind).lower() not in ("off", "none")

    @property
    def tls_dir(self) -> Path:
        return self.tls.dir or self.data_dir / "tls"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"


# ANFANG_* variable -> dotted settings key. The docker-compose file may only use these.
_ENV_KEYS: dict[str, str] = {
    "ANFANG_SITE": "site",
    "ANFANG_DATA_DIR": "data_dir",
    "ANFANG_DATABASE_URL": "database_url",
    "ANFANG_LOG_LEVEL": "log_level",
    "ANFANG_LOG_FORMAT": "log_format",
    "ANFANG_SECRET_KEY": "secret_key",
    "ANFANG_SECRET_KEY_FILE": "secret_key_file",
    "ANFANG_RULES_DIR": "rules_dir",
    "ANFANG_RULES_EVENT_SKEW_S": "rules_event_skew_s",
    "ANFANG_COMMUNITY_FILE": "community_file",
    "ANFANG_API_BIND": "api_bind",
    "ANFANG_MQTT_HOST": "mqtt.host",
    "ANFANG_MQTT_PORT": "mqtt.port",
    "ANFANG_MQTT_USERNAME": "mqtt.username",
    "ANFANG_MQTT_PASSWORD": "mqtt.password",
    "ANFANG_MQTT_CLIENT_ID": "mqtt.client_id",
    "ANFANG_MQTT_PROTOCOL": "mqtt.protocol",
    "ANFANG_MQTT_SHARED_GROUP": "mqtt.shared_group",
    "ANFANG_EMBEDDED_BROKER": "broker.embedded",
    "ANFANG_BROKER_BIND": "broker.bind",
    "ANFANG_MOSQUITTO_DIR": "broker.mosquitto_dir",
    "ANFANG_MOSQUITTO_PID_FILE": "broker.mosquitto_pid_file",
    "ANFANG_TLS_DIR": "tls.dir",
    "ANFANG_TLS_MQTT_BIND": "tls.mqtt_bind",
    "ANFANG_TLS_REQUIRE_CLIENT_CERT": "tls.require_client_cert",
    "ANFANG_TLS_API": "tls.api",
    "ANFANG_PARTITIONS": "workers.partitions",
    "ANFANG_FACE_THRESHOLD": "vision.face_threshold",
    "ANFANG_WORKERS": "workers.count",
    "ANFANG_WORKER_INDEX": "workers.index",
    "ANFANG_INFLUX_URL": "telemetry.influx_url",
    "ANFANG_INFLUX_API": "telemetry.influx_api",
    "ANFANG_INFLUX_TOKEN": "telemetry.influx_token",
    "ANFANG_INFLUX_ORG": "telemetry.influx_org",
    "ANFANG_INFLUX_BUCKET": "telemetry.influx_bucket",
    "ANFANG_TELEMETRY_FILE": "telemetry.file",
    "ANFANG_TELEMETRY_SPOOL_DIR": "telemetry.spool_dir",
    "ANFANG_TELEMETRY_SPOOL_MAX_MB": "telemetry.spool_max_mb",
    "ANFANG_VIEWLIB_ENABLED": "viewlib.enabled",
    "ANFANG_VIEWLIB_URL": "viewlib.url",
    "ANFANG_VIEWLIB_USERNAME": "viewlib.username",
    "ANFANG_VIEWLIB_PASSWORD": "viewlib.password",
    "ANFANG_VIEWLIB_DEVICE_ID": "viewlib.device_id",
}
ENV_VARS: frozenset[str] = frozenset(_ENV_KEYS) | {"ANFANG_CONFIG"}


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (or ``$ANFANG_CONFIG``, or ``./anfang.yaml`` if present) and env."""
    env = os.environ if environ is None else environ
    if path is None and env.get("ANFANG_CONFIG"):
        path = Path(env["ANFANG_CONFIG"])
    if path is None and Path("anfang.yaml").exists():
        path = Path("anfang.yaml")
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
        tree = loaded
    for name, dotted in _ENV_KEYS.items():
        if name in env:
            _set(tree, dotted, env[name])
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid setting {key}: {err['msg']}") from None
