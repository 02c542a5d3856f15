"""The ``anfang`` command: run the platform, manage devices and twins, the database and the broker."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from anfang import logs
from anfang.accounts import OPERATOR_USER, read_or_create_secret
from anfang.config import ConfigError, Settings, load_settings
from twins.errors import TwinError

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 8.0  # after SIGTERM; below docker's default 10 s before its SIGKILL


def _exit_now(why: str) -> None:
    log.error("stopping at once: %s", why)
    logging.shutdown()
    os._exit(1)


app = typer.Typer(
    help="anfang (安防): smart-security community platform — device twins over MQTT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
devices_app = typer.Typer(help="Register and inspect devices.", no_args_is_help=True)
twin_app = typer.Typer(help="Read and change device twins through the platform's MQTT API.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
broker_app = typer.Typer(help="MQTT broker configuration.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
app.add_typer(twin_app, name="twin")
app.add_typer(db_app, name="db")
app.add_typer(broker_app, name="broker")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (default: ./anfang.yaml)")]
T = TypeVar("T")


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except TwinError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@app.command()
def run(
    config: ConfigOpt = None,
    site: Annotated[str | None, typer.Option(help="Site id (overrides config)")] = None,
    broker_bind: Annotated[str | None, typer.Option(help="Embedded broker host:port")] = None,
    external_broker: Annotated[
        str | None, typer.Option(help="Use this broker host:port instead of the embedded one")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Start this many worker processes for the site (external broker, "
            "PostgreSQL); devices are split between them",
        ),
    ] = None,
    api_bind: Annotated[
        str | None, typer.Option(help="Serve the HTTP API on this host:port ('off' for none; overrides config)")
    ] = None,
) -> None:
    """Run the platform: broker link (embedded broker by default), twins, rules, access control, telemetry,
    and the HTTP API on ``api_bind`` (127.0.0.1:8080 by default)."""
    settings = _settings(config)
    if site:
        settings.site = site
    if broker_bind:
        settings.broker.bind = broker_bind
    if api_bind:
        settings.api_bind = api_bind
    if external_broker:
        from broker.embedded import BrokerError, split_bind

        try:
            host, port = split_bind(external_broker)
        except BrokerError as exc:
            typer.echo(f"error: --external-broker: {exc}", err=True)
            raise typer.Exit(2) from None
        settings.broker.embedded, settings.mqtt.host, settings.mqtt.port = False, host, port
    logs.configure(settings.log_level, settings.log_format, settings.site)
    if workers is not None and workers > 1:
        from anfang.supervisor import supervise, without_workers_option
        from anfang.workers import check_partitioned

        try:  # the children would all fail on it: refuse before starting any
            check_partitioned(settings)
        except ConfigError as exc:
            typer.echo(f"error: --workers: {exc}", err=True)
            raise typer.Exit(2) from None
        partitions = settings.workers.partitions if settings.workers.partitions > 1 else workers
        raise typer.Exit(supervise(workers, partitions, without_workers_option(sys.argv[2:])))
    from anfang.app import serve
    from anfang.http_server import ApiServerError
    from anfang.mqtt_link import MqttLinkError
    from anfang.services import open_services
    from broker.embedded import BrokerError
    from registry.migrate import MigrationError

    startup_errors = (BrokerError, MqttLinkError, ApiServerError, MigrationError)

    async def main() -> None:
        # SIGTERM (docker stop, systemd, the --workers supervisor) stops the platform as Ctrl-C does: the
        # services shut down in order and flush what they hold (telemetry points, rule state) instead of the
        # process dying on the signal with them in memory
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def stop() -> None:
            task.cancel()
            # a shutdown step that hangs must not keep the process alive: the supervisor's SIGKILL would
            # come anyway (docker: after 10 s); exit on our own a little before, and at once on a second SIGTERM
            loop.add_signal_handler(signal.SIGTERM, _exit_now, "a second SIGTERM")
            loop.call_later(SHUTDOWN_GRACE_S, _exit_now, f"shutdown took longer than {SHUTDOWN_GRACE_S:.0f} s")

        loop.add_signal_handler(signal.SIGTERM, stop)
        await serve(settings, open_services)

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        log.info("stopped")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (*startup_errors, ExceptionGroup) as exc:
        errors = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
        if not all(isinstance(e, startup_errors) for e in errors):
            raise
        for err in errors:
            typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


@app.command()
def health(
    config: ConfigOpt = None,
    ready: Annotated[
        bool, typer.Option("--ready", help="Check readiness (/readyz), not only liveness (/healthz)")
    ] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for an answer")] = 3.0,
) -> None:
    """Ask the running platform's HTTP API whether it is alive (or ready); exit 0 if so, else 1.

    Reads ``api_bind`` from the same configuration as ``anfang run`` (the compose healthcheck uses it)."""
    import httpx

    settings = _settings(config)
    if not settings.api_enabled:
        typer.echo("error: the HTTP API is off (api_bind)", err=True)
        raise typer.Exit(2)
    from anfang.http_server import ApiServerError, parse_bind

    try:
        host, port = parse_bind(settings.api_bind or "")
    except ApiServerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    scheme = "https" if settings.tls.api else "http"
    url = f"{scheme}://{host}:{port}/{'readyz' if ready else 'healthz'}".replace("://::1", "://[::1]")
    # over HTTPS the server's certificate is checked against the site's CA (tls.dir/ca.crt)
    verify: Any = ssl.create_default_context(cafile=str(settings.tls_dir / "ca.crt")) if settings.tls.api else True
    try:
        answer = httpx.get(url, timeout=timeout, verify=verify)
    except httpx.HTTPError as exc:
        typer.echo(f"not answering at {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(answer.text)
    raise typer.Exit(0 if answer.status_code == 200 else 1)


@app.command()
def demo(
    community: Annotated[str, typer.Argument(help="community file or bundled name")] = "youzheng",
    speed: Annotated[float, typer.Option(min=0.01, help="time acceleration (60 = an hour a minute)")] = 60.0,
    config: ConfigOpt = None,
) -> None:
    """Run the platform on its embedded defaults with the simulated pilot community driving it."""
    from anfang.demo import DemoError, run_demo

    settings = _settings(config)
    try:
        code = run_demo(community, speed, settings.data_dir.resolve(), settings.broker.bind, settings.api_bind or "off")
    except DemoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply pending migrations (the ones shipped with anfang); fails when none are found."""
    settings = _settings(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from registry.migrate import MigrationError, apply_migrations

    try:
        applied = _run(apply_migrations(settings.db_url))
    except MigrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


def _with_registry(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    from anfang.app import open_registry

    async def main() -> T:
        async with open_registry(settings) as (registry, _store):
            return await fn(registry)

    return _run(main())


@devices_app.command("add")
def devices_add(
    device_id: str,
    kind: Annotated[str, typer.Option("--kind", "-k", help="Device kind, e.g. door_lock or vehicle_gate")],
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    x: Annotated[float | None, typer.Option(help="Position east on the site plan, metres")] = None,
    y: Annotated[float | None, typer.Option(help="Position north on the site plan, metres")] = None,
    site: Annotated[str | None, typer.Option(help="Site id (default from config)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Register a device and print its secret (shown only this once)."""
    settings = _settings(config)
    position = (x, y) if x is not None and y is not None else None
    secret = _with_registry(settings, lambda r: r.add_device(site or settings.site, device_id, kind, name, position))
    typer.echo(f"added {device_id} ({kind}) at site {site or settings.site}")
    if secret and settings.workers.partitions > 1:
        from anfang.workers import announce_new_devices

        # the secret only once the device's partition owner listens to it: its first message is served
        part = (_run(announce_new_devices(settings, site or settings.site, [device_id])) or {}).get(device_id)
        if part is None:
            typer.echo(f"warning: no worker serves {device_id} yet; its messages before one does are lost", err=True)
        else:
            typer.echo(f"served by partition {part}")
    if secret:
        typer.echo(f"secret: {secret}")
        typer.echo("store it on the device now: it is kept only as a hash and cannot be shown again", err=True)
    if kind in ("door_lock", "vehicle_gate"):
        from anfang.app import site_cipher  # loads the master key only for doors and gates
        from community.edge import issue_door_key

        edge_key = issue_door_key(site_cipher(settings).edge_root, site or settings.site, device_id)
        typer.echo(f"edge key: {edge_key}")
        typer.echo("install it in the door now: it opens the door's sealed allow-list (docs/protocol.md)", err=True)


def _when(ts: float | None) -> str | None:
    """A time as local ISO 8601 to the second (None stays None)."""
    import datetime as dt

    return None if ts is None else dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


@devices_app.command("list")
def devices_list(
    site: Annotated[str | None, typer.Option(help="Only devices of this site (default: all sites)")] = None,
    config: ConfigOpt = None,
) -> None:
    """List registered devices."""
    settings = _settings(config)
    for d in _with_registry(settings, lambda r: r.list_devices(site)):
        pos = f"({d.position[0]:.1f}, {d.position[1]:.1f})" if d.position else "-"
        state = "disabled" if d.disabled else "enabled"
        seen = _when(d.last_seen) or "never seen"
        typer.echo(f"{d.id:24} {d.kind:13} {d.site:12} {state:9} {seen:20} {pos:18} {d.name}")


@devices_app.command("show")
def devices_show(device_id: str, config: ConfigOpt = None) -> None:
    """Show a device's registration and its stored twin."""
    settings = _settings(config)
    from anfang.app import open_registry

    async def main() -> dict[str, Any] | None:
        async with open_registry(settings) as (registry, store):
            info = await registry.get_device(device_id)
            if info is None:
                return None
            twin = await store.load(device_id)
            return {
                "id": info.id,
                "kind": info.kind,
                "site": info.site,
                "name": info.name,
                "position": info.position,
                "disabled": info.disabled,
                "last_seen": _when(info.last_seen),
                "twin": twin.to_json() if twin else None,
            }

    shown = _run(main())
    if shown is None:
        typer.echo(f"error: unknown device {device_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(shown, ensure_ascii=False, indent=2))


def _lifecycle(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(lifecycle)``; a broker that cannot be reached has no connection to cut."""
    from anfang.app import open_registry
    from anfang.lifecycle import lifecycle_for
    from broker.cutoff import BrokerUnreachable, CutOffError

    async def main() -> T:
        async with open_registry(settings) as (registry, _store):
            return await action(lifecycle_for(settings, registry))

    try:
        return _run(main())
    except BrokerUnreachable as exc:
        typer.echo(f"note: {exc}; the registry is changed, the broker checks it on the next connection", err=True)
        raise typer.Exit(0) from None
    except CutOffError as exc:
        typer.echo(f"error: the registry is changed, but the live connection was not cut: {exc}", err=True)
        raise typer.Exit(1) from None


@devices_app.command("rotate-secret")
def devices_rotate(device_id: str, config: ConfigOpt = None) -> None:
    """Give a device a new secret and print it once; connections opened with the old one are cut."""
    settings = _settings(config)
    secret, problem = _lifecycle(settings, lambda lc: lc.rotate(device_id))
    typer.echo(f"secret: {secret}")
    if problem is not None:
        typer.echo(f"error: the old secret's live connection was not cut: {problem}", err=True)
        raise typer.Exit(1)


@devices_app.command("disable")
def devices_disable(device_id: str, config: ConfigOpt = None) -> None:
    """Cut a device off now and refuse it until it is enabled again."""
    settings = _settings(config)
    _lifecycle(settings, lambda lc: lc.disable(device_id))
    typer.echo(f"disabled {device_id}")


@devices_app.command("enable")
def devices_enable(device_id: str, config: ConfigOpt = None) -> None:
    """Accept a disabled device again (with its current secret)."""
    settings = _settings(config)
    _lifecycle(settings, lambda lc: lc.enable(device_id))
    typer.echo(f"enabled {device_id}")


@devices_app.command("delete")
def devices_delete(
    device_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    config: ConfigOpt = None,
) -> None:
    """Remove a device: its registration, secret and twin (events and records stay until purged by retention)."""
    settings = _settings(config)
    if not yes and not typer.confirm(f"delete {device_id}, its secret and its twin?"):
        raise typer.Exit(1)
    _lifecycle(settings, lambda lc: lc.delete(device_id))
    typer.echo(f"deleted {device_id}")


def _operator(settings: Settings) -> Any:
    from anfang.operator_client import OperatorClient, OperatorError

    host, port = settings.mqtt_address
    password = read_or_create_secret(settings.secrets_dir, OPERATOR_USER)
    try:
        return OperatorClient(host, port, OPERATOR_USER, password)
    except OperatorError as exc:
        typer.echo(f"error: {exc} (is `anfang run` running?)", err=True)
        raise typer.Exit(1) from None


@twin_app.command("get")
def twin_get(
    device_id: str,
    site: Annotated[str | None, typer.Option(help="Site id (default from config)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print a device's twin document (desired, reported, delta, metadata, version)."""
    from anfang.operator_client import OperatorError

    settings = _settings(config)
    client = _operator(settings)
    try:
        doc = client.get(site or settings.site, device_id)
    except OperatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()
    doc.pop("client_token", None)
    typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))


@twin_app.command("set")
def twin_set(
    device_id: str,
    assignments: Annotated[list[str], typer.Argument(help="key=value pairs; values are JSON or strings")],
    version: Annotated[int | None, typer.Option(help="Only apply if the twin is at this version (else 409)")] = None,
    ttl: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds the fields set stay desired (momentary, e.g. an unlock)")
    ] = None,
    site: Annotated[str | None, typer.Option(help="Site id (default from config)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Change a device's desired state, e.g. ``anfang twin set door-b1-u1 lock=unlocked --ttl 5``."""
    from anfang.operator_client import OperatorError, parse_assignments

    settings = _settings(config)
    try:
        desired = parse_assignments(assignments)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    client = _operator(settings)
    try:
        answer = client.update(site or settings.site, device_id, desired, version, ttl)
    except OperatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()
    typer.echo(f"accepted: version {answer['version']}, delta {json.dumps(answer.get('delta'), ensure_ascii=False)}")


@broker_app.command("mosquitto-config")
def broker_mosquitto_config(
    out: Annotated[Path, typer.Option(help="Directory for passwd, acl and mosquitto.conf")] = Path("mosquitto"),
    listener: Annotated[str, typer.Option(help="Devices' listener, e.g. 1883 or '1883 0.0.0.0'")] = "1883",
    service_listener: Annotated[
        str,
        typer.Option(help="The platform's and operators' listener ('none': everyone on --listener, ids unbound)"),
    ] = "1884 127.0.0.1",
    tls_listener: Annotated[
        str | None,
        typer.Option(help="Also devices over TLS, e.g. '8883 0.0.0.0' (the site's certificates, made if missing)"),
    ] = None,
    require_client_cert: Annotated[
        bool, typer.Option(help="Devices on the TLS listener must present a client certificate (CN = device id)")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Write Mosquitto password and ACL files and a mosquitto.conf with the same rules as the embedded
    broker: devices on their own listener, where a device's client id is its user name."""
    settings = _settings(config)
    from anfang.accounts import ensure_service_accounts
    from broker.mosquitto import write_config

    async def collect(registry: Any) -> Any:
        await ensure_service_accounts(registry, settings.secrets_dir, settings.mqtt.username, settings.mqtt.password)
        return await registry.credential_hashes()

    entries = _with_registry(settings, collect)
    services = None if service_listener.lower() == "none" else service_listener
    tls = _mosquitto_tls(settings, out, tls_listener, require_client_cert) if tls_listener else None
    for path in write_config(out, entries, listener, settings.limits.max_payload_bytes, services, tls):
        typer.echo(f"wrote {path}")
    typer.echo("reload Mosquitto (SIGHUP) after adding devices (or set broker.mosquitto_dir)", err=True)
    if services is not None:
        typer.echo(f"the platform connects to the service listener ({services}): set mqtt.port to match", err=True)


def _mosquitto_tls(settings: Settings, out: Path, listener: str, require_client_cert: bool) -> Any:
    """The site's certificates (made in tls.dir if missing) for Mosquitto's TLS listener, copied to ``out``."""
    from broker.certs import CertError, init_site
    from broker.mosquitto import MosquittoTls, copy_server_files

    try:
        for path in init_site(settings.tls_dir, settings.site, ["localhost", "127.0.0.1", "mosquitto"]):
            typer.echo(f"wrote {path}")
    except CertError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    cafile, certfile, keyfile = copy_server_files(settings.tls_dir, out)
    return MosquittoTls(listener, cafile, certfile, keyfile, require_client_cert or settings.tls.require_client_cert)


_PLUGINS = {
    "alarms": "anfang.alarms_cli",
    "rules": "rules.cli",
    "sim": "firmware_sim.cli",
    "vision": "vision.cli",
    "dashboards": "telemetry.cli",
    "community": "community.cli",
    "privacy": "privacy.cli",
    "audit": "privacy.audit_cli",
    "site": "anfang.site_cli",
    "certs": "broker.cli",
    "keys": "privacy.keys_cli",
}


def _mount_plugins() -> None:
    """Mount every sub-command group; one that cannot be imported is a broken installation: said, not hidden."""
    for name, module in _PLUGINS.items():
        try:
            sub = importlib.import_module(module)
        except ImportError as exc:
            typer.echo(f"error: `anfang {name}` cannot load ({module}): {exc}", err=True)
            raise SystemExit(2) from None
        app.add_typer(sub.app, name=name)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    _mount_plugins()
    app(prog_name="anfang")


if __name__ == "__main__":
    main()
