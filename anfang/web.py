"""The platform's HTTP application: health and readiness, the community API, the site's alarms.

One FastAPI app, served by ``anfang run`` on ``api_bind`` (:mod:`anfang.http_server`). Every route
reads and writes the shared database only, so any process of a site (the active worker, a standby,
each of several workers) can answer it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

import anfang.console
import anfang.devices_api
import anfang.rules_api
import community.api
from anfang.console import ConsoleServices
from anfang.lifecycle import DeviceLifecycle
from anfang.readiness import Readiness
from community.api import AlarmDesk, CommunityServices
from rules.db_traces import DatabaseTraceStore
from telemetry.metrics import PlatformMetrics

__all__ = ["create_platform_app"]


def create_platform_app(
    community_services: CommunityServices,
    readiness: Readiness | None = None,
    alarm_desk: AlarmDesk | None = None,
    metrics: PlatformMetrics | None = None,
    console: ConsoleServices | None = None,
    lifecycle: DeviceLifecycle | None = None,
    rule_traces: DatabaseTraceStore | None = None,
) -> FastAPI:
    """The HTTP app of one platform process (``metrics``: what ``/metrics`` shows to Prometheus;
    ``console``: the web console under ``/console``, docs/console.md; ``lifecycle``: the staff's device
    routes under ``/devices``; ``rule_traces``: the staff's rule traces under ``/rules``)."""
    app = FastAPI(
        title="anfang", version="1.0", description="Smart-security community platform: access control, alarms, health."
    )

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers (it may still be starting or standing by)."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready; the body says why"}})
    async def readyz() -> Any:
        """Ready: broker connected, database reachable, migrations current."""
        if readiness is None:
            return JSONResponse({"status": "not ready", "checks": {"platform": "not running"}}, status_code=503)
        ready, checks = await readiness.check()
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return body if ready else JSONResponse(body, status_code=503)

    if metrics is not None:

        @app.get("/metrics", tags=["health"], response_class=Response)
        async def prometheus_metrics() -> Response:
            """Prometheus metrics of this process: ingest, rejections, decisions, alarms, rules, queues, spool."""
            body, content_type = metrics.render()
            return Response(body, media_type=content_type)

    community.api.install(app, community_services, alarm_desk)
    if lifecycle is not None:
        anfang.devices_api.install(app, lifecycle)
    if console is not None:
        anfang.console.install(app, console)
    if rule_traces is not None:
        anfang.rules_api.install(app, rule_traces)
    community.api.limit_body_size(app, community_services)  # last: the outermost middleware
    return app
