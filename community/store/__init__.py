"""The community registry in the database, one module per resource, composed by :class:`CommunityStore`.

Thin IO adapters over the Tortoise models (``community/models.py``). Personal data goes through
:class:`~community.crypto.FieldCipher`; the clock is passed in (``now``) by the caller.

* :mod:`community.store.places` — households; the access devices the site model places
* :mod:`community.store.people` — people and tenants (``NewPerson``, ``normalize_phone``), face consent
* :mod:`community.store.credentials` — face templates and 人证合一 enrolment, cards, PINs, fingerprints
* :mod:`community.store.vehicles` — residents' vehicles
* :mod:`community.store.visitors` — visitor passes (``PASS_ROLES``)
* :mod:`community.store.watch` — the watchlist
* :mod:`community.store.view` — the in-memory :class:`~community.snapshot.RegistrySnapshot` decisions read
"""

from __future__ import annotations

from community.crypto import FieldCipher
from community.models import ChangeRow
from community.snapshot import RegistrySnapshot
from community.store.context import StoreContext
from community.store.credentials import Credentials
from community.store.people import People
from community.store.places import Places
from community.store.vehicles import Vehicles
from community.store.view import load_snapshot
from community.store.visitors import VisitorPasses
from community.store.watch import Watchlist
from vision.gallery import DEFAULT_THRESHOLD

__all__ = ["CommunityStore"]


class CommunityStore:
    """One site's registry: the resource stores side by side, sharing the site, the cipher and the change counter.

    A composition, not a facade: callers use the resource they need (``store.people.add_person``,
    ``store.passes.issue_pass``); only what spans every resource lives here: the snapshot access
    decisions read and the change counters that tell a handler to reload it.
    """

    def __init__(self, cipher: FieldCipher, site: str) -> None:
        self._ctx = StoreContext(cipher, site)
        self.places = Places(self._ctx)
        self.people = People(self._ctx)
        self.credentials = Credentials(self._ctx, self.people)
        self.vehicles = Vehicles(self._ctx, self.people)
        self.passes = VisitorPasses(self._ctx, self.people, self.places)
        self.watch = Watchlist(self._ctx)

    @property
    def cipher(self) -> FieldCipher:
        return self._ctx.cipher

    @property
    def site(self) -> str:
        return self._ctx.site

    @property
    def generation(self) -> int:
        """Moves with every registry write made through this store (a handler in this process reloads)."""
        return self._ctx.generation

    def changed(self) -> None:
        """Note a registry write made around the resource stores (the importer's bulk load)."""
        self._ctx.changed()

    async def change_seq(self) -> int:
        """The site's registry change counter (one primary-key read).

        Database triggers raise it in the same transaction as every change to what decisions read,
        whichever process (API, CLI, another worker) made it; 0 before the first change.
        """
        row = await ChangeRow.get_or_none(site=self.site)
        return 0 if row is None else row.seq

    async def snapshot(
        self, *, liveness_threshold: float = 0.8, face_threshold: float = DEFAULT_THRESHOLD
    ) -> RegistrySnapshot:
        """Build the in-memory view decisions run against (decrypts credentials)."""
        return await load_snapshot(self._ctx, liveness_threshold=liveness_threshold, face_threshold=face_threshold)
