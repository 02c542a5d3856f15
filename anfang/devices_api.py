"""HTTP routes of the device registry for property staff: list, show, a twin's version history, disable,
enable, delete, new secret.

Staff only (``require(user, "staff")``, as the other registry routes of docs/access.md); every change
writes an audit row. Disabling, deleting and re-keying cut the device off the broker at once
(:class:`anfang.lifecycle.DeviceLifecycle`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from pydantic import BaseModel

from anfang.lifecycle import DeviceLifecycle
from broker.cutoff import BrokerUnreachable, CutOffError
from community.api.deps import Audit, Id, User, require
from community.errors import CommunityError, NotFound
from registry.history import HistoryStore
from registry.models import Device
from registry.records import DeviceInfo
from twins.errors import TwinError
from twins.history import LOCATION_KINDS

__all__ = ["install", "router"]

router = APIRouter(prefix="/devices", tags=["devices"])
AuditLog = Annotated[Audit, Depends(Audit)]
T = TypeVar("T")


class DeviceOut(BaseModel):
    id: str
    site: str
    kind: str
    name: str
    position: tuple[float, float] | None
    disabled: bool
    last_seen: float | None  # when it last sent anything (epoch seconds; written every 10 s)


class HistoryOut(BaseModel):
    version: int
    ts: float  # when the platform committed the change (epoch seconds)
    source: str  # reported | desired | status
    actor: str  # device, service, expiry, rule:<id>, access, staff:<person>, platform
    changed: dict[str, Any]  # the changed fields' new values (null: removed); an allow-list as its size only


class SecretOut(BaseModel):
    id: str
    secret: str  # shown this once; only its hash is stored
    cut_off: bool  # whether connections opened with the old secret were cut (else: retry disable/enable)


class BrokerUnavailable(CommunityError):
    """The registry changed but the live connection could not be cut."""

    status = 503


def _lifecycle(request: Request) -> DeviceLifecycle:
    lifecycle: DeviceLifecycle = request.app.state.device_lifecycle
    return lifecycle


Lifecycle = Annotated[DeviceLifecycle, Depends(_lifecycle)]


def _out(info: DeviceInfo) -> DeviceOut:
    return DeviceOut(
        id=info.id,
        site=info.site,
        kind=info.kind,
        name=info.name,
        position=info.position,
        disabled=info.disabled,
        last_seen=info.last_seen,
    )


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except TwinError as exc:
        if exc.code == 404:
            raise NotFound("unknown_device", exc.message) from None
        raise CommunityError("bad_device", exc.message) from None
    except BrokerUnreachable:
        pass  # nothing is connected to a broker that is not running
    except CutOffError as exc:
        raise BrokerUnavailable("cut_off_failed", f"registry changed; live connection not cut: {exc}") from None


async def _change(action: Callable[[], Awaitable[T]]) -> T | None:
    async with _translated():
        return await action()
    return None


@router.get("", response_model=list[DeviceOut])
async def list_devices(user: User, lifecycle: Lifecycle) -> list[DeviceOut]:
    """Staff: the site's devices."""
    require(user, "staff")
    return [_out(d) for d in await lifecycle.registry.list_devices(lifecycle.site)]


@router.get("/{device_id}", response_model=DeviceOut)
async def get_device(device_id: Id, user: User, lifecycle: Lifecycle) -> DeviceOut:
    """Staff: one device of the site."""
    require(user, "staff")
    return _out(await _own(lifecycle, device_id))


@router.get("/{device_id}/history", response_model=list[HistoryOut])
async def history(
    device_id: Id,
    user: User,
    lifecycle: Lifecycle,
    audit: AuditLog,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[HistoryOut]:
    """Staff: the device twin's recent versions, newest first (what each change changed, when, on which
    side, by whom); kept per device up to ``history.keep_versions`` and ``history.keep_days``. Reading a
    worn tag's history (where a person was) is audited."""
    require(user, "staff")
    info = await _own(lifecycle, device_id)
    entries = await HistoryStore(Device._meta.db, lifecycle.site).recent(device_id, limit)
    if entries and info.kind in LOCATION_KINDS:
        await audit(user, "view_tag_history", device_id)
    return [HistoryOut(version=h.version, ts=h.ts, source=h.source, actor=h.actor, changed=h.changed) for h in entries]


async def _own(lifecycle: DeviceLifecycle, device_id: str) -> DeviceInfo:
    """The device if it is this site's (another site's device is as unknown as a missing one)."""
    info = await lifecycle.registry.get_device(device_id)
    if info is None or info.site != lifecycle.site:
        raise NotFound("unknown_device", f"unknown device {device_id}")
    return info


@router.post("/{device_id}/disable", response_model=DeviceOut)
async def disable(device_id: Id, user: User, lifecycle: Lifecycle, audit: AuditLog) -> DeviceOut:
    """Staff: cut the device off now and refuse it until enabled."""
    require(user, "staff")
    await _own(lifecycle, device_id)
    await _change(lambda: lifecycle.disable(device_id))
    await audit(user, "device_disable", device_id)
    return await get_device(device_id, user, lifecycle)


@router.post("/{device_id}/enable", response_model=DeviceOut)
async def enable(device_id: Id, user: User, lifecycle: Lifecycle, audit: AuditLog) -> DeviceOut:
    """Staff: accept the device again."""
    require(user, "staff")
    await _own(lifecycle, device_id)
    await _change(lambda: lifecycle.enable(device_id))
    await audit(user, "device_enable", device_id)
    return await get_device(device_id, user, lifecycle)


@router.post("/{device_id}/secret", response_model=SecretOut)
async def rotate_secret(device_id: Id, user: User, lifecycle: Lifecycle, audit: AuditLog) -> SecretOut:
    """Staff: a new secret (shown once); connections opened with the old one are cut."""
    require(user, "staff")
    await _own(lifecycle, device_id)
    async with _translated():
        secret, problem = await lifecycle.rotate(device_id)
    await audit(user, "device_rotate_secret", device_id)
    return SecretOut(id=device_id, secret=secret, cut_off=problem is None)


@router.delete("/{device_id}", status_code=204, response_class=Response)
async def delete(device_id: Id, user: User, lifecycle: Lifecycle, audit: AuditLog) -> Response:
    """Staff: remove the device, its secret and its twin; its records stay until the retention purge."""
    require(user, "staff")
    await _own(lifecycle, device_id)
    await _change(lambda: lifecycle.delete(device_id))
    await audit(user, "device_delete", device_id)
    return Response(status_code=204)


def install(app: FastAPI, lifecycle: DeviceLifecycle) -> None:
    """Mount the device routes on ``app`` (the community API's error handling applies)."""
    app.state.device_lifecycle = lifecycle
    app.include_router(router)
