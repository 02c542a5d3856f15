"""What every part of the community registry shares: the site, the field cipher and the change counter."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from community.crypto import FieldCipher


@dataclass(slots=True)
class StoreContext:
    """One site's registry context. Every registry write calls :meth:`changed`, so a handler in the same
    process sees :attr:`generation` move and reloads its snapshot (database triggers tell other processes)."""

    cipher: FieldCipher
    site: str
    generation: int = 0

    def changed(self) -> None:
        self.generation += 1


def new_id() -> str:
    return uuid.uuid4().hex
