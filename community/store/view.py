"""The in-memory view access decisions read, built from the community registry (decrypts credentials)."""

from __future__ import annotations

from community.edge import decode_template
from community.models import CredentialRow, HouseholdRow, PassRow, PersonRow, VehicleRow, WatchRow
from community.snapshot import PassState, PersonInfo, RegistrySnapshot, WatchEntry
from community.store.context import StoreContext
from community.store.places import Places
from community.store.visitors import claims_of
from vision.gallery import DEFAULT_THRESHOLD, FaceGallery


async def load_snapshot(
    ctx: StoreContext, *, liveness_threshold: float = 0.8, face_threshold: float = DEFAULT_THRESHOLD
) -> RegistrySnapshot:
    """Build the in-memory view decisions run against (decrypts credentials)."""
    buildings = {h.id: h.building_id for h in await HouseholdRow.filter(site=ctx.site)}
    snap = RegistrySnapshot(
        site=ctx.site,
        pass_key=ctx.cipher.pass_key,
        ref_key=ctx.cipher.lookup_key,
        liveness_threshold=liveness_threshold,
        faces=FaceGallery(threshold=face_threshold),
        watch_faces=FaceGallery(threshold=face_threshold),
    )
    for p in await PersonRow.filter(site=ctx.site):
        snap.people[p.id] = PersonInfo(
            p.id,
            p.role,
            p.household_id,
            buildings.get(p.household_id or ""),
            p.lease_start,
            p.lease_end,
            p.face_consent,
            p.active,
        )
    snap.devices.update(await Places(ctx).devices())
    for v in await VehicleRow.filter(site=ctx.site):
        snap.plates[v.plate] = v.owner_id
    for c in await CredentialRow.filter(revoked=False, person_id__in=list(snap.people)):
        value = ctx.cipher.decrypt(c.value_enc, c.kind)
        if c.kind == "face":
            if snap.people[c.person_id].face_consent:
                template = decode_template(value)
                snap.faces.add(c.person_id, template)
                snap.face_templates[c.person_id] = template
        elif c.kind == "card":
            snap.cards[value] = c.person_id
        elif c.kind == "pin":
            snap.pins[value] = c.person_id
    for r in await PassRow.filter(site=ctx.site):
        snap.passes[r.id] = PassState(claims_of(r), r.issued_by, r.uses, r.revoked)
    for w in await WatchRow.filter(site=ctx.site, active=True):
        snap.watch[w.id] = WatchEntry(w.id, w.kind, w.reason, w.plate, w.label)
        if w.kind == "plate" and w.plate:
            snap.watch_plates[w.plate] = w.id
        elif w.kind == "face" and w.template_enc:
            snap.watch_faces.add(w.id, decode_template(ctx.cipher.decrypt(w.template_enc, "watch")))
    return snap
