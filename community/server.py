"""Stand-alone community API server (``uvicorn community.server:create_app_from_env --factory``).

The platform normally mounts :func:`community.api.create_app` itself; this entry point is for running
the API alone (and for the end-to-end API tests). Configuration from the environment:
``ANFANG_DATABASE_URL``, ``ANFANG_DATA_DIR``, ``ANFANG_SITE``, ``ANFANG_SECRET_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from tortoise import Tortoise

from community.api import CommunityServices, create_app
from community.crypto import FieldCipher, load_master_key
from community.db import init_db
from community.records import AccessRecords
from community.store import CommunityStore

__all__ = ["create_app_from_env"]


def create_app_from_env() -> FastAPI:
    """The community API configured from environment variables, owning its database connection."""
    data_dir = Path(os.environ.get("ANFANG_DATA_DIR", "data"))
    db_url = os.environ.get("ANFANG_DATABASE_URL") or f"sqlite://{data_dir / 'anfang.db'}"
    site = os.environ.get("ANFANG_SITE", "default")
    cipher = FieldCipher(load_master_key(os.environ.get("ANFANG_SECRET_KEY"), data_dir))
    services = CommunityServices(CommunityStore(cipher, site), AccessRecords(site))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await init_db(db_url, global_fallback=True)
        try:
            yield
        finally:
            await Tortoise.close_connections()

    return create_app(services, lifespan=lifespan)
