"""Test harness: the simulator's registrar protocols over the platform's access-control registry, in process.

The simulator itself provisions through ``anfang site load`` (it imports nothing of the platform); the
in-process platform stacks of the tests register a community directly with these adapters.

:func:`people_registrars` adapts a :class:`community.store.CommunityStore` to the
:class:`~firmware_sim.provision.PeopleRegistrar` and :class:`~firmware_sim.provision.WatchlistRegistrar`
protocols, so that ``anfang sim provision`` registers residents, credentials, vehicles and the police
watchlist next to the devices, and the simulated faces, cards and plates open their doors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from community.importer import StorePeopleRegistrar
from community.models import WatchRow
from community.store import CommunityStore
from firmware_sim.community import Community
from firmware_sim.identity import face_embedding

__all__ = ["StoreWatchlist", "people_registrars"]


class StoreWatchlist:
    """Registers a community's watchlist faces once each (by label = the entry id)."""

    def __init__(self, store: CommunityStore, clock: Callable[[], float], operator: str = "provision") -> None:
        self.store = store
        self.clock = clock
        self.operator = operator
        self.added = 0

    async def ensure_watch(self, site: str, entry: dict[str, Any]) -> None:
        """Add the entry's face template unless an active entry with its label exists."""
        label = str(entry["id"])
        if await WatchRow.filter(site=site, label=label, active=True).exists():
            return
        await self.store.watch.add_watch(
            kind="face",
            reason=str(entry.get("reason") or "watchlist"),
            added_by=self.operator,
            now=self.clock(),
            template=face_embedding(label),
            label=label,
        )
        self.added += 1


def people_registrars(
    community: Community, store: CommunityStore, clock: Callable[[], float]
) -> tuple[StorePeopleRegistrar, StoreWatchlist]:
    """People/vehicle and watchlist registrars over ``store`` (places registered from ``community``)."""
    places = community.model_dump(mode="json")
    return StorePeopleRegistrar(store, clock, places=places), StoreWatchlist(store, clock)
