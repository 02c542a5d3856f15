"""Real brokers and devices for tests: Mosquitto on a free port, paho devices with async waits."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.02)


@dataclass
class Mosquitto:
    """A Mosquitto started for one test, with password and ACL files (or anonymous)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, extra: str = "", anonymous: bool = False, generated: bool = False) -> None:
        """``generated``: run the ``mosquitto.conf`` that ``anfang broker mosquitto-config`` wrote in ``workdir``."""
        if generated:
            conf = self.workdir / "run.conf"
            text = (self.workdir / "mosquitto.conf").read_text()
            conf.write_text(f"user {getpass.getuser()}\n{text}{extra}")
            self._spawn(conf)
            return
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"user {getpass.getuser()}",  # as root Mosquitto would drop to 'mosquitto', who cannot read tmp files
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
            f"allow_anonymous {'true' if anonymous else 'false'}",
        ]
        if not anonymous:
            lines += [f"password_file {self.workdir / 'passwd'}", f"acl_file {self.workdir / 'acl'}"]
        conf.write_text("\n".join(lines) + "\n" + extra)
        self._spawn(conf)

    def _spawn(self, conf: Path) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port)

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(1)  # SIGHUP: re-read password and ACL files

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is saved on the way out."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None


class Device:
    """A paho MQTT client acting as a device or operator; received messages wait in an asyncio queue."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        site: str | None = None,
        client_id: str | None = None,
        will: bool = True,
        clean: bool = True,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.username, self.site = username, site
        self.messages: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        self.seen: list[str] = []  # every topic received, in order
        self._connack: asyncio.Future[int] = self.loop.create_future()
        self.connacks: asyncio.Queue[int] = asyncio.Queue()  # every CONNACK code, reconnects included
        self.disconnected = asyncio.Event()  # set when the broker closed the connection
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"{username}", clean_session=clean
        )
        self.client.username_pw_set(username, password)
        if will and site:
            self.client.will_set(self.topic("status"), "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self._acked: set[int] = set()
        self._ack_event = asyncio.Event()
        self.host, self.port = host, port

    def topic(self, suffix: str) -> str:
        return f"anfang/{self.site}/{self.username}/{suffix}"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        code = rc.value if hasattr(rc, "value") else int(rc)
        self.loop.call_soon_threadsafe(lambda: self._connack.done() or self._connack.set_result(code))
        self.loop.call_soon_threadsafe(self.connacks.put_nowait, code)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.loop.call_soon_threadsafe(self.disconnected.set)

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        def mark() -> None:
            self._acked.add(mid)
            self._ack_event.set()

        self.loop.call_soon_threadsafe(mark)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = (msg.topic, bytes(msg.payload), bool(msg.retain))
        self.seen.append(msg.topic)
        self.loop.call_soon_threadsafe(self.messages.put_nowait, item)

    async def connect(self, timeout: float = 10.0) -> int:
        """Connect and return the CONNACK code (0 = accepted)."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        code = await asyncio.wait_for(asyncio.shield(self._connack), timeout)
        return code

    async def subscribe(self, *filters: str) -> None:
        done = self.loop.create_future()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.loop.call_soon_threadsafe(
            lambda: done.done() or done.set_result([getattr(r, "value", r) for r in rcs])
        )
        self.client.subscribe([(f, 1) for f in filters])
        await asyncio.wait_for(done, 10)

    def publish(
        self, suffix_or_topic: str, payload: Any, *, qos: int = 1, retain: bool = False, raw_topic: bool = False
    ) -> mqtt.MQTTMessageInfo:
        topic = suffix_or_topic if raw_topic else self.topic(suffix_or_topic)
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        return self.client.publish(topic, body, qos=qos, retain=retain)

    async def published(self, info: mqtt.MQTTMessageInfo, timeout: float = 10.0) -> None:
        """Wait until the broker acknowledged a QoS 1 publish (also one queued while disconnected)."""
        async with asyncio.timeout(timeout):
            while info.mid not in self._acked:
                self._ack_event.clear()
                await self._ack_event.wait()

    async def expect(self, pattern: str, timeout: float = 10.0) -> tuple[str, Any]:
        """The next message whose topic matches ``pattern`` (regex), JSON-decoded when possible."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                topic, payload, _ = await self.messages.get()
                if regex.search(topic):
                    try:
                        return topic, json.loads(payload)
                    except ValueError:
                        return topic, payload.decode(errors="replace")

    def drop_connection(self) -> None:
        """Vanish without DISCONNECT, as a device losing power does (the broker sends its will)."""
        sock = self.client.socket()
        self.client.loop_stop()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def mosquitto(workdir: Path, **kwargs: Any) -> Iterator[Mosquitto]:
    server = Mosquitto(workdir)
    server.start(**kwargs)
    try:
        yield server
    finally:
        server.stop()
