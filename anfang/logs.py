"""Structured logging: one JSON object per line (``log_format: json``) or readable text.

Every JSON line carries the process's ``site``; lines about one device carry its id as ``device``
(``log.warning(..., extra={"device": device_id})``).
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False, default=str)


class SiteFilter(logging.Filter):
    """Stamps every record with the site this process serves (unless the record names another)."""

    def __init__(self, site: str) -> None:
        super().__init__()
        self.site = site

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "site"):
            record.site = self.site
        return True


def configure(level: str = "INFO", fmt: str = "text", site: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if site is not None:
        handler.addFilter(SiteFilter(site))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("amqtt", "gmqtt", "tortoise", "aiosqlite", "asyncio", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # amqtt logs every refused client as an error with a traceback; our plugin logs the refusal once
    logging.getLogger("amqtt.broker").setLevel(logging.CRITICAL)
