"""Running a fired rule's actions: alarms, desired state, commands, MQTT, webhooks, audit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from registry.alarms import AlarmManager, default_dedupe_key
from rules.expr import render_value
from rules.loader import CompiledAction, Rule
from rules.sinks import AuditLog, WebhookError, WebhookSender
from twins.history import acting_as
from twins.hooks import PlatformActions

log = logging.getLogger(__name__)


class ActionRunner:
    """Renders and executes actions; platform-side failures are recorded, not raised.

    Template errors propagate (they are the rule's fault: the engine disables the rule).
    """

    def __init__(self, alarms: AlarmManager, audit: AuditLog, webhooks: WebhookSender | None) -> None:
        self.alarms = alarms
        self.audit = audit
        self.webhooks = webhooks

    async def run(
        self,
        rule: Rule,
        ctx: dict[str, Any],
        fns: dict[str, Callable[..., Any]],
        now: float,
        acts: PlatformActions,
        cause: str | None = None,
    ) -> list[dict[str, Any]]:
        """Run every action whose ``if`` holds; return what was done (rendered).

        ``cause``: the input that fired the rule. If a ``raise_alarm`` finds its open alarm raised by
        that same input, the input is a replay after a restart (:mod:`rules.catch_up`): that firing
        ran before, so the alarm is left as it is and the actions after it are not run again."""
        done: list[dict[str, Any]] = []
        for action in rule.actions:
            if action.condition is not None and not action.condition.evaluate(ctx, fns):
                continue
            values = render_value(action.values, ctx, fns)
            record = {"type": action.type, **values}
            if action.type == "raise_alarm" and cause:
                subject = str(values.get("subject") or ctx["subject"]["id"])
                if (seen := await self.alarms.raised_by(default_dedupe_key(rule.id, subject), cause)) is not None:
                    done.append({**record, "alarm_id": seen.id, "replayed": cause})
                    break
            try:
                record.update(await self._execute(rule, action, values, ctx, now, acts, cause))
            except (WebhookError, OSError, TimeoutError) as exc:
                record["failed"] = f"{type(exc).__name__}: {exc}"
                log.warning("rule %s action %s failed: %s", rule.id, action.type, exc)
            done.append(record)
        return done

    async def _execute(
        self,
        rule: Rule,
        action: CompiledAction,
        v: dict[str, Any],
        ctx: dict[str, Any],
        now: float,
        acts: PlatformActions,
        cause: str | None = None,
    ) -> dict[str, Any]:
        spec = action.spec
        subject = str(v.get("subject") or ctx["subject"]["id"])
        if action.type == "raise_alarm":
            alarm, created = await self.alarms.raise_alarm(
                acts,
                rule_id=rule.id,
                subject=subject,
                kind=str(v["kind"]),
                severity=str(v.get("severity", spec.severity)),
                message=str(v.get("message", "")),
                now=now,
                data=dict(v.get("data") or {}),
                cause=cause,
            )
            return {"subject": subject, "alarm_id": alarm.id, "created": created}
        if action.type == "clear_alarm":
            target = str(v.get("rule") or rule.id)
            cleared = await self.alarms.clear_for(
                acts, target, subject, by=f"rule:{rule.id}", now=now, reason=str(v.get("reason", ""))
            )
            return {"subject": subject, "rule": target, "alarm_id": cleared.id if cleared else None}
        if action.type == "set_desired":
            with acting_as(f"rule:{rule.id}"):
                version = await acts.set_desired(str(v["device"]), dict(v["patch"]))
            return {"version": version}
        if action.type == "command":
            res = await acts.send_command(
                str(v["device"]), str(v["name"]), dict(v.get("args") or {}), timeout=float(spec.timeout)
            )
            return {"ok": res.ok, "timed_out": res.timed_out, "error": res.error}
        if action.type == "publish":
            await acts.publish(str(v["topic"]), v.get("payload", {}), retain=bool(spec.retain), qos=int(spec.qos))
            return {}
        if action.type == "webhook":
            if self.webhooks is None:
                raise WebhookError(str(v["url"]), 0, "no webhook sender configured")
            status = await self.webhooks.send(
                spec.method,
                str(v["url"]),
                dict(v.get("body") or {}),
                dict(v.get("headers") or {}),
                request_timeout=float(spec.timeout),
                retries=spec.retries,
                backoff=float(spec.backoff),
            )
            return {"status": status}
        if action.type == "audit":
            entry = {
                "ts": now,
                "rule": rule.id,
                "subject": subject,
                "message": str(v["message"]),
                "data": v.get("data", {}),
            }
            await self.audit.write(entry)
            return {}
        raise ValueError(f"unknown action type {action.type!r}")
