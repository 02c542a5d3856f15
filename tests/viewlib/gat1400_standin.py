"""A small stand-in for a police view library (视图库) server, for tests only.

A real GA/T 1400 server cannot run here; this one is written from the standard's published
structure (GA/T 1400.4 HTTP interface, GA/T 1400.3 objects), not from any server's code:

- ``POST /VIID/System/Register`` and ``/VIID/System/UnRegister`` require HTTP digest authentication
  (RFC 7616, MD5, qop=auth): a request without valid credentials gets 401 with a fresh challenge.
- ``POST /VIID/System/Keepalive``, ``/VIID/Faces``, ``/VIID/MotorVehicles`` and ``/VIID/Persons``
  require a registered ``User-Identify``; others get 401.
- Uploads are checked against the structure (48-digit object ids, 20-digit device ids, 41-digit
  image ids, ``YYYYMMDDhhmmss`` shot times, base64 JPEG data) and answered with one
  ``ResponseStatusObject`` per object (``StatusCode`` 0, or 1 with the reason).

Received objects are kept across :meth:`StandInServer.restart` (so a test can check nothing was
lost, and nothing came twice); registrations are not (a restarted server has forgotten everyone).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from anfang.http_server import ApiServer

REALM = "viid-standin"
_LISTS = {
    "/VIID/Faces": ("FaceListObject", "FaceObject", "FaceID"),
    "/VIID/MotorVehicles": ("MotorVehicleListObject", "MotorVehicleObject", "MotorVehicleID"),
    "/VIID/Persons": ("PersonListObject", "PersonObject", "PersonID"),
}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # RFC 2617 digest is MD5 by definition


def _digest_params(header: str) -> dict[str, str]:
    return {k: v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]*))', header.removeprefix("Digest "))}


def _now() -> str:
    return datetime.now().strftime("%Y%m%d%H%M%S")


def object_problems(obj: dict[str, Any], id_field: str) -> list[str]:
    """What is wrong with one uploaded object, by the standard's structure ([] when nothing)."""
    problems: list[str] = []
    if not re.fullmatch(r"[0-9]{48}", str(obj.get(id_field, ""))):
        problems.append(f"{id_field} is not 48 digits")
    if not re.fullmatch(r"[0-9]{20}", str(obj.get("DeviceID", ""))):
        problems.append("DeviceID is not 20 digits")
    if not re.fullmatch(r"[0-9]{41}", str(obj.get("SourceID", ""))):
        problems.append("SourceID is not 41 digits")
    images = (obj.get("SubImageList") or {}).get("SubImageInfoObject") or []
    if not images:
        problems.append("no SubImageList")
    for image in images:
        if not re.fullmatch(r"[0-9]{41}", str(image.get("ImageID", ""))):
            problems.append("ImageID is not 41 digits")
        if not re.fullmatch(r"[0-9]{14}", str(image.get("ShotTime", ""))):
            problems.append("ShotTime is not YYYYMMDDhhmmss")
        try:
            data = base64.b64decode(str(image.get("Data", "")), validate=True)
        except binascii.Error:
            data = b""
        if data[:2] != b"\xff\xd8":
            problems.append("Data is not a base64 JPEG")
    return problems


@dataclass
class StandInServer:
    """The stand-in's state and its HTTP server (see module docstring)."""

    username: str
    password: str
    port: int = 0
    received: dict[str, dict[str, Any]] = field(default_factory=dict)  # object id -> object
    receipts: Counter[str] = field(default_factory=Counter)  # object id -> times received
    registrations: int = 0
    keepalives: int = 0
    unregistrations: int = 0
    refused_logins: int = 0
    problems: list[str] = field(default_factory=list)
    forgetful: bool = False  # forget every registration at once (a misconfigured server)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _registered: set[str] = field(default_factory=set)
    _nonces: set[str] = field(default_factory=set)
    _server: ApiServer | None = None

    # --- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = ApiServer(self._app(), f"127.0.0.1:{self.port}")
        await self._server.__aenter__()
        self.port = self._server.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.__aexit__(None, None, None)
            self._server = None
        self._registered.clear()
        self._nonces.clear()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_for(self, predicate: Any, timeout: float = 60.0) -> None:
        """Until ``predicate()`` holds (checked whenever the server saw a request)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    # --- protocol ------------------------------------------------------------------------------------
    def _challenge(self) -> JSONResponse:
        nonce = secrets.token_hex(16)
        self._nonces.add(nonce)
        header = f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", opaque="{secrets.token_hex(8)}", algorithm=MD5'
        return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": header})

    def _digest_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Digest "):
            return False
        p = _digest_params(header)
        if p.get("nonce") not in self._nonces or p.get("username") != self.username or p.get("qop") != "auth":
            return False
        ha1 = _md5(f"{self.username}:{REALM}:{self.password}")
        ha2 = _md5(f"{request.method}:{p.get('uri', '')}")
        expected = _md5(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:auth:{ha2}")
        return secrets.compare_digest(expected, p.get("response", ""))

    def _status(self, url: str, object_id: str, code: int = 0, text: str = "OK") -> dict[str, Any]:
        return {"RequestURL": url, "StatusCode": code, "StatusString": text, "Id": object_id, "LocalTime": _now()}

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/VIID/System/{what}")
        async def system(what: str, request: Request) -> JSONResponse:
            try:
                body = await request.json()
                device_id = str(body[f"{what}Object"]["DeviceID"])
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": f"no {what}Object.DeviceID"}, status_code=400)
            try:
                if what in ("Register", "UnRegister"):
                    if not self._digest_ok(request):
                        if request.headers.get("authorization"):
                            self.refused_logins += 1
                        return self._challenge()
                    if what == "Register":
                        if not self.forgetful:
                            self._registered.add(device_id)
                        self.registrations += 1
                    else:
                        self._registered.discard(device_id)
                        self.unregistrations += 1
                elif what == "Keepalive":
                    if device_id not in self._registered:
                        return JSONResponse({"error": "not registered"}, status_code=401)
                    self.keepalives += 1
                else:
                    return JSONResponse({"error": "unknown"}, status_code=404)
                return JSONResponse({"ResponseStatusObject": self._status(request.url.path, device_id)})
            finally:
                self.changed.set()

        async def upload(request: Request) -> JSONResponse:
            path = request.url.path
            list_name, object_name, id_field = _LISTS[path]
            if request.headers.get("user-identify") not in self._registered:
                return JSONResponse({"error": "not registered"}, status_code=401)
            try:
                objects = (await request.json())[list_name][object_name]
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": f"no {list_name}.{object_name}"}, status_code=400)
            statuses = []
            for obj in objects:
                object_id = str(obj.get(id_field, ""))
                if problems := object_problems(obj, id_field):
                    self.problems.extend(problems)
                    statuses.append(self._status(path, object_id, 1, "; ".join(problems)))
                    continue
                self.received[object_id] = obj
                self.receipts[object_id] += 1
                statuses.append(self._status(path, object_id))
            self.changed.set()
            return JSONResponse({"ResponseStatusListObject": {"ResponseStatusObject": statuses}})

        for path in _LISTS:
            app.add_api_route(path, upload, methods=["POST"])
        return app
