"""Fair delivery (issue 20 item 5): does one device flooding bad messages delay another device's commands?

The platform runs in this process (embedded amqtt broker, or a private Mosquitto); device ``door-b``
(a paho client) answers every ``ping`` command at once. A phase sends ``--commands`` commands to it
one after the other and takes the p99 of their round trips (``Platform.send_command``: publish →
the device's ``cmd/ping/result`` committed). Baseline phases run alone; flood phases run while a
separate ``mosquitto_pub -l`` process, logged in as ``door-a``, publishes malformed reports to its
own ``twin/reported`` at ``--rate`` per second (default 1,000, as in the issue; every one is
rejected and answered on ``door-a``'s ``errors`` topic, at most ``anfang.error_throttle`` allows).
Phases alternate baseline/flood ``--runs`` times; the result is the median p99 of each kind and
their ratio (target ≤ 2).

    python -m bench.fairness_bench [--broker amqtt|mosquitto|both] [--runs 3] [--commands 200] [--rate 1000]

The suite's version of this (``tests/core/test_core_broker_security.py``) alternates shorter phases
and takes each p99 over all of them, against a floor of what a user could notice. JSON to
``bench/results/fairness.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import RESULTS, machine, median, pct
from firmware_sim.mosquitto import Mosquitto, free_port

SITE = "bench"
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"


def _answering_device(port: int, secret: str) -> mqtt.Client:
    """door-b, subscribed to its commands (returns once the broker granted the subscription)."""
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="door-b")
    client.username_pw_set("door-b", secret)

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        c.publish(f"{msg.topic}/result", json.dumps({"id": body["id"], "ok": True, "result": {}}), qos=1)

    client.on_connect = lambda c, *_: c.subscribe(f"anfang/{SITE}/door-b/cmd/+", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not subscribed.wait(30):
        raise RuntimeError("door-b was not subscribed within 30 s")
    return client


def _stop_device(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


@contextlib.contextmanager
def _flood(port: int, secret: str, rate: int) -> Iterator[None]:
    """``mosquitto_pub -l`` publishing malformed reports as door-a at ``rate`` per second (each line one
    message, fed in slices of 10 ms from a thread) until stopped."""
    argv = [MOSQUITTO_PUB, "-p", str(port), "-u", "door-a", "-P", secret, "-i", "door-a", "-q", "0", "-l"]
    argv += ["-t", f"anfang/{SITE}/door-a/twin/reported"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    chunk = b"{not json\n" * max(1, rate // 100)

    def feed() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            while not stop.wait(0.01):
                proc.stdin.write(chunk)
                proc.stdin.flush()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield
    finally:
        stop.set()
        proc.kill()  # first: a feeder blocked on a full pipe (the broker pushing back) then gets EPIPE
        feeder.join()
        proc.wait()


@contextlib.asynccontextmanager
async def _platform(broker: str, tmp: Path) -> AsyncIterator[tuple[Any, int, dict[str, str]]]:
    from anfang.app import build_platform
    from anfang.config import Settings

    settings = Settings(site=SITE, data_dir=tmp / "data", api_bind="off")
    settings.broker.hash_iterations = 1000
    with contextlib.ExitStack() as stack:
        if broker == "amqtt":
            port = free_port()
            settings.broker.bind = f"127.0.0.1:{port}"
        else:
            mosq = stack.enter_context(Mosquitto(fleet=True))
            port = mosq.port
            settings.broker.embedded = False
            settings.mqtt.host, settings.mqtt.port = "127.0.0.1", port
        async with build_platform(settings) as platform:
            secrets = {}
            for device in ("door-a", "door-b"):
                secrets[device] = await platform.registry.add_device(SITE, device, "door_lock") or ""
            task = asyncio.create_task(platform.run())
            await asyncio.wait_for(platform.ready.wait(), 30)
            try:
                yield platform, port, secrets
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _phase(platform: Any, commands: int) -> float:
    rtts = []
    for _ in range(commands):
        start = time.perf_counter()
        result = await platform.send_command("door-b", "ping", {}, timeout=30)
        assert result.ok, result
        rtts.append((time.perf_counter() - start) * 1000)
    return pct(rtts, 0.99)


async def run(broker: str, runs: int, commands: int, rate: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="anfang-fair-") as tmp:
        async with _platform(broker, Path(tmp)) as (platform, port, secrets):
            device = await asyncio.to_thread(_answering_device, port, secrets["door-b"])
            try:
                await _phase(platform, 20)  # warm-up
                alone, flooded = [], []
                for _ in range(runs):
                    alone.append(await _phase(platform, commands))
                    with _flood(port, secrets["door-a"], rate):
                        await asyncio.sleep(1.0)  # the flood is under way
                        flooded.append(await _phase(platform, commands))
                rejected = platform.counters.as_json()
            finally:
                # in a thread: paho's loop_stop waits for the broker's last PUBACK, which on the embedded
                # broker needs this event loop (joined here, it stalled the bench for two minutes)
                await asyncio.to_thread(_stop_device, device)
    base, flood = median(alone), median(flooded)
    return {
        "broker": broker,
        "flood_per_s": rate,
        "p99_ms_alone": alone,
        "p99_ms_flooded": flooded,
        "median_p99_ms_alone": base,
        "median_p99_ms_flooded": flood,
        "ratio": (flood / base) if base and flood else None,
        "counters": {k: v for k, v in rejected.items() if "reject" in k or "throttl" in k},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["amqtt", "mosquitto", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--rate", type=int, default=1000, help="malformed messages per second from the flooder")
    args = parser.parse_args()
    brokers = ["amqtt", "mosquitto"] if args.broker == "both" else [args.broker]
    results = [asyncio.run(run(b, args.runs, args.commands, args.rate)) for b in brokers]
    out = {"machine": machine(), "results": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fairness.json").write_text(json.dumps(out, indent=2))
    for r in results:
        print(
            f"{r['broker']:9} p99 alone {r['median_p99_ms_alone']:.1f} ms, flooded {r['median_p99_ms_flooded']:.1f} ms,"
            f" ratio {r['ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
