"""Credentials in the community registry: face templates (with consent and 人证合一), cards, PINs, fingerprints."""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from community.edge import encode_template
from community.errors import ConsentError, EnrolmentRefused, RegistryConflict, RegistryInvalid
from community.models import CredentialRow, EnrolmentRow
from community.store.context import StoreContext, new_id
from community.store.people import People
from vision.gallery import DEFAULT_THRESHOLD, GalleryError, cosine_similarity

#: Minimum ID-photo ↔ live-face similarity for 人证合一 (SFace's same-person threshold).
DEFAULT_ENROL_THRESHOLD = DEFAULT_THRESHOLD
_CRED_KINDS = ("card", "pin", "fingerprint")


class Credentials:
    """What people open doors with (values encrypted, looked up by keyed hash)."""

    def __init__(self, ctx: StoreContext, people: People) -> None:
        self._ctx = ctx
        self._people = people

    async def add_face_template(self, person_id: str, template: Any, *, now: float) -> None:
        """Store a consenting person's face template (replaces an earlier one).

        Raises:
            ConsentError: the person has not consented to face recognition.
        """
        row = await self._people.person(person_id)
        if not row.face_consent:
            raise ConsentError("no_face_consent", f"{person_id} has not consented to face recognition")
        try:
            enc = encode_template(np.asarray(template, dtype=np.float32))
        except ValueError as exc:
            raise RegistryInvalid("bad_template", str(exc), field="face_template") from exc
        await CredentialRow.filter(person_id=person_id, kind="face").delete()
        await CredentialRow.create(
            id=new_id(),
            person_id=person_id,
            kind="face",
            value_enc=self._ctx.cipher.encrypt(enc, "face"),
            created_at=now,
        )
        self._ctx.changed()

    async def enrol_face(
        self,
        person_id: str,
        id_photo: Any,
        live: Any,
        *,
        operator: str,
        now: float,
        threshold: float = DEFAULT_ENROL_THRESHOLD,
    ) -> float:
        """人证合一: compare the ID-card photo with the live face, record the check, enrol on a match.

        Returns the match score. Raises:
            EnrolmentRefused: the faces do not match (the check is still recorded).
        """
        await self._people.person(person_id)
        try:
            score = cosine_similarity(id_photo, live)
        except GalleryError as exc:
            raise RegistryInvalid("bad_template", str(exc), field="embedding") from exc
        matched = score >= threshold
        await EnrolmentRow.create(
            id=new_id(),
            person_id=person_id,
            operator=operator,
            match_score=score,
            threshold=threshold,
            matched=matched,
            ts=now,
        )
        if not matched:
            raise EnrolmentRefused(score, threshold)
        await self.add_face_template(person_id, live, now=now)
        return score

    async def add_credential(self, person_id: str, kind: str, value: str, *, now: float) -> None:
        """Add a card number, PIN or fingerprint template id (unique per kind).

        Raises:
            RegistryConflict: another person already holds this credential.
        """
        if kind not in _CRED_KINDS:
            raise RegistryInvalid("bad_credential_kind", f"kind must be one of {_CRED_KINDS}", field="kind")
        await self._people.person(person_id)
        value = value.strip()
        if not value or (kind == "pin" and not (value.isdigit() and 4 <= len(value) <= 8)):
            raise RegistryInvalid("bad_credential", f"invalid {kind}", field="value")
        h = self._ctx.cipher.lookup_hash(value, kind)
        if await CredentialRow.filter(kind=kind, value_hash=h, revoked=False).exists():
            raise RegistryConflict("duplicate_credential", f"this {kind} is already in use")
        await CredentialRow.create(
            id=new_id(),
            person_id=person_id,
            kind=kind,
            value_hash=h,
            value_enc=self._ctx.cipher.encrypt(value, kind),
            created_at=now,
        )
        self._ctx.changed()

    async def ensure_alternative_credential(self, person_id: str, *, now: float) -> str | None:
        """Give a person without face consent a PIN when they have no card/PIN; returns the new PIN."""
        if await CredentialRow.filter(person_id=person_id, kind__in=["card", "pin"], revoked=False).exists():
            return None
        for _ in range(20):
            pin = f"{secrets.randbelow(10**6):06d}"
            try:
                await self.add_credential(person_id, "pin", pin, now=now)
            except RegistryConflict:
                continue
            return pin
        raise RegistryConflict("pin_space_exhausted", "could not allocate a unique PIN")
