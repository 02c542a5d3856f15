"""The platform with no services (bare twins: no rules, access, vision or telemetry), configured like ``anfang run``.

``anfang run`` always wires every service; the ingest bench runs this too, to show what the services
cost. ``python -m bench.bare_platform`` (settings from ``ANFANG_*`` / ``ANFANG_CONFIG`` only).
"""

from __future__ import annotations

import asyncio
import contextlib

from anfang import logs
from anfang.app import build_platform
from anfang.config import load_settings


async def _main() -> None:
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    async with build_platform(settings, None) as platform:
        await platform.run()


def main() -> None:
    """Run until interrupted or terminated."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


if __name__ == "__main__":
    main()
