"""A real ``anfang run`` with the pilot community provisioned (``anfang sim provision``), console accounts,
and headless Chromium (Debian's ``chromium`` driven by Playwright), for the console's browser tests.

Imported by name (``from browser_kit import ...``); not a conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from process_kit import ANFANG, PlatformProcess
from sim_e2e_kit import short_rules
from testkit import free_port

SITE = "youzheng"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Screenshots go to docs/console/ (committed, shown in docs/console.md) only when UPDATE_SCREENSHOTS=1, so an
#: ordinary test run leaves the work tree clean; otherwise to a temporary folder.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "console"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / f"anfang-console-shots-{os.getpid()}"
)
#: People of the pilot community (firmware_sim/communities/youzheng.yaml) the tests sign in as.
STAFF, POLICE = "p0553", "p0559"
USERS = {"guard": (STAFF, "guard-pass-1"), "officer": (POLICE, "officer-pass-1")}


def cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run([ANFANG, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, input=stdin)
    assert out.returncode == 0, f"anfang {' '.join(args)}: {out.stderr}"
    return out.stdout


@dataclass
class Site:
    """The running platform and how to reach it."""

    env: dict[str, str]
    cwd: Path
    base: str
    broker_port: int
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, person: str) -> httpx.AsyncClient:
        """The HTTP API with ``person``'s bearer token."""
        if person not in self.tokens:
            self.tokens[person] = json.loads(cli(self.env, self.cwd, "community", "token", "create", person))["token"]
        return httpx.AsyncClient(
            base_url=self.base, timeout=30, headers={"Authorization": f"Bearer {self.tokens[person]}"}
        )

    async def sim(self, *args: str) -> str:
        """``anfang sim run ...`` as a process of its own (the simulated devices); its output."""
        proc = await asyncio.create_subprocess_exec(
            ANFANG,
            "sim",
            "run",
            SITE,
            *args,
            env=self.env,
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
        text = out.decode()
        assert proc.returncode == 0, text
        return text

    def link(self, person: str) -> str:
        """A resident's one-time sign-in link (as staff would send it)."""
        return cli(self.env, self.cwd, "community", "users", "link", person, "--base-url", self.base).strip()


def have_chromium() -> bool:
    return Path(CHROMIUM).exists()


@asynccontextmanager
async def running_site(tmp: Path) -> AsyncIterator[Site]:
    """Provision the pilot community, add the console accounts, start ``anfang run``."""
    api_port, broker_port = free_port(), free_port()
    config = {
        "site": SITE,
        "data_dir": str(tmp / "data"),
        "api_bind": f"127.0.0.1:{api_port}",
        "rules_dir": str(short_rules(tmp / "rules")),
        "broker": {"bind": f"127.0.0.1:{broker_port}", "hash_iterations": 1000},
    }
    (tmp / "anfang.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    cli(env, tmp, "sim", "provision", SITE)
    for name, (person, password) in USERS.items():
        cli(env, tmp, "community", "users", "add", name, "--person", person, "--password-stdin", stdin=password + "\n")
    platform = PlatformProcess(env, tmp, own_api_port=False)
    platform.start(timeout=120)
    try:
        yield Site(env, tmp, f"http://127.0.0.1:{api_port}", broker_port)
    finally:
        platform.stop()


@asynccontextmanager
async def chromium() -> AsyncIterator[object]:
    """Headless Chromium from the Debian package (Playwright never downloads a browser here)."""
    from playwright.async_api import async_playwright

    if not have_chromium():
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap installs it)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(page: object, base: str, user: str) -> None:
    """Sign in on the console's form as one of :data:`USERS`."""
    from playwright.async_api import Page

    assert isinstance(page, Page)
    await page.goto(f"{base}/console/login")
    await page.fill("#username", user)
    await page.fill("#password", USERS[user][1])
    await page.click("#sign-in")
    await page.wait_for_url(f"{base}/console/alarms")
