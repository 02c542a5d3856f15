"""Issue 16 item 4, HTTP side: a body size limit (413 before parsing) and rate limits (429 + Retry-After).

The body test runs against a real ``anfang run`` and reads the process's resident memory from /proc
before and after sending it 20 MB, with and without a Content-Length.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from process_kit import PlatformProcess, cli
from testkit import free_port

from community.ratelimit import RateLimiter

MB = 1024 * 1024
BIG = 20 * MB


def test_rate_limiter_allows_the_rate_and_says_how_long_to_wait() -> None:
    limiter = RateLimiter(6)  # one per 10 s, bursts of 6
    assert [limiter.check("a", 100.0) for _ in range(6)] == [None] * 6
    wait = limiter.check("a", 100.0)
    assert wait is not None and 1 <= wait <= 10
    assert limiter.check("b", 100.0) is None, "another address has its own bucket"
    assert limiter.check("a", 100.0 + 10) is None, "one more after 10 s"
    small = RateLimiter(1, max_keys=2)
    for key in ("x", "y", "z"):
        assert small.check(key, 0.0) is None
    assert small.check("x", 0.0) is None, "the oldest key was forgotten (bounded memory)"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_big(port: int, path: str, token: str, *, chunked: bool) -> int:
    """POST 20 MB of JSON-looking bytes; the status the server answered with (it may cut the upload short)."""
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {BIG}\r\n\r\n"
    block = b"[" + b"1," * (MB // 2 - 1) + b"1]"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode())
        try:
            for _ in range(BIG // len(block)):
                s.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block)
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: the server closed the connection after its answer
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = s.recv(4096)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer.split()[1])


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[PlatformProcess, dict[str, str]]]:
    (tmp_path / "anfang.yaml").write_text("api:\n  token_issue_per_min: 3\n  signin_per_min: 3\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update(
        ANFANG_CONFIG=str(tmp_path / "anfang.yaml"),
        ANFANG_DATA_DIR=str(tmp_path / "data"),
        ANFANG_BROKER_BIND=f"127.0.0.1:{free_port()}",
    )
    cli(env, tmp_path, "community", "person", "add", "staff", "--id", "p-desk")
    proc = PlatformProcess(env, tmp_path)
    proc.start(timeout=90)
    try:
        yield proc, env
    finally:
        proc.stop()


def test_a_20_mb_body_gets_413_before_parsing_and_rate_limits_answer_429(
    tmp_path: Path, platform: tuple[PlatformProcess, dict[str, str]]
) -> None:
    proc, env = platform
    assert proc.proc is not None and proc.api_port is not None
    port, pid = proc.api_port, proc.proc.pid
    token = json.loads(cli(env, tmp_path, "community", "token", "create", "p-desk"))["token"]
    url = f"http://127.0.0.1:{port}"
    h = {"Authorization": f"Bearer {token}"}
    small = {"valid_from": 0, "valid_until": 1, "max_uses": 1}
    assert httpx.post(f"{url}/passes", json=small, headers=h, timeout=10).status_code in (403, 422)  # parsed
    for chunked in (False, True):
        _send_big(port, "/passes", token, chunked=chunked)  # warm up (first request, connection handling)
    before = _rss_kb(pid)
    statuses = [_send_big(port, "/passes", token, chunked=chunked) for chunked in (False, True, False, True)]
    after = _rss_kb(pid)
    assert statuses == [413] * 4
    grown_mb = (after - before) / 1024
    print(f"RSS of anfang run before {before / 1024:.1f} MB, after 4 x 20 MB bodies {after / 1024:.1f} MB")
    assert grown_mb < 4, f"the server grew by {grown_mb:.1f} MB"
    assert httpx.get(f"{url}/me", headers=h, timeout=10).status_code == 200, "the server still answers"

    # token issuing: 3 per minute per address, then 429 with Retry-After
    codes = [httpx.post(f"{url}/tokens", json={}, headers=h, timeout=10) for _ in range(4)]
    assert [r.status_code for r in codes] == [201, 201, 201, 429]
    assert 1 <= int(codes[-1].headers["Retry-After"]) <= 60 and codes[-1].json()["code"] == "rate_limited"
    # console sign-in: the same, before the password is even checked
    form = {"username": "nobody", "password": "wrong"}
    tries = [httpx.post(f"{url}/console/login", data=form, timeout=10) for _ in range(4)]
    assert [r.status_code for r in tries] == [401, 401, 401, 429]
    assert 1 <= int(tries[-1].headers["Retry-After"]) <= 60
