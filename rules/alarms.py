"""The rules engine's alarms are the platform's one alarm system: :mod:`registry.alarms`."""

from __future__ import annotations

from registry.alarms import Alarm, AlarmError, AlarmManager, AlarmStore, AlarmStoreError, InMemoryAlarmStore

__all__ = ["Alarm", "AlarmError", "AlarmManager", "AlarmStore", "AlarmStoreError", "InMemoryAlarmStore"]
