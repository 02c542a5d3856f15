"""Tortoise models over the tables of ``migrations/0002_community.sql`` (app label ``models``).

The schema comes only from the SQL migration; these classes map onto it. ``*_enc`` columns hold
:class:`community.crypto.FieldCipher` ciphertext, ``*_hash`` its keyed look-up hashes.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

__all__ = [
    "AccessDecisionRow",
    "ApiTokenRow",
    "AuditRow",
    "CaptureRow",
    "ChangeRow",
    "CredentialRow",
    "EdgeKeyRow",
    "EnrolmentRow",
    "HouseholdRow",
    "PassRow",
    "PersonRow",
    "VehicleRow",
    "WatchRow",
]


class HouseholdRow(Model):
    """A household living in one room of a unit of a building."""

    id = fields.CharField(pk=True, max_length=64)
    site = fields.TextField()
    building_id = fields.TextField()
    unit = fields.IntField(null=True)
    room = fields.TextField(null=True)

    class Meta:
        table = "community_households"


class EdgeKeyRow(Model):
    """The generation of a door's edge key (community.edge); a door never rotated has no row (0)."""

    device_id = fields.CharField(pk=True, max_length=64)
    site = fields.TextField()
    epoch = fields.IntField(default=0)

    class Meta:
        table = "community_edge_keys"


class PersonRow(Model):
    """A registered person (resident, tenant, staff, police); contact data encrypted."""

    id = fields.CharField(pk=True, max_length=64)
    site = fields.TextField()
    role = fields.TextField()
    household_id = fields.TextField(null=True)
    name_enc = fields.TextField(null=True)
    phone_enc = fields.TextField(null=True)
    phone_hash = fields.TextField(null=True)
    id_number_enc = fields.TextField(null=True)
    id_number_hash = fields.TextField(null=True)
    face_consent = fields.BooleanField(default=False)
    lease_start = fields.FloatField(null=True)
    lease_end = fields.FloatField(null=True)
    registered_by = fields.TextField(null=True)
    active = fields.BooleanField(default=True)
    created_at = fields.FloatField()

    class Meta:
        table = "community_people"


class EnrolmentRow(Model):
    """A "人证合一" check: the live face compared with the ID-card photo by an operator."""

    id = fields.CharField(pk=True, max_length=64)
    person_id = fields.TextField()
    operator = fields.TextField()
    match_score = fields.FloatField()
    threshold = fields.FloatField()
    matched = fields.BooleanField()
    ts = fields.FloatField()

    class Meta:
        table = "community_enrolments"


class CredentialRow(Model):
    """A credential (face template, card, PIN, fingerprint template id); value encrypted."""

    id = fields.CharField(pk=True, max_length=64)
    person_id = fields.TextField()
    kind = fields.TextField()
    value_enc = fields.TextField()
    value_hash = fields.TextField(null=True)
    created_at = fields.FloatField()
    revoked = fields.BooleanField(default=False)

    class Meta:
        table = "community_credentials"


class VehicleRow(Model):
    """A registered vehicle (blue 7-character or green 8-character plate)."""

    id = fields.CharField(pk=True, max_length=64)
    site = fields.TextField()
    plate = fields.TextField()
    color = fields.TextField()
    owner_id = fields.TextField()
    created_at = fields.FloatField()

    class Meta:
        table = "community_vehicles"


class PassRow(Model):
    """A visitor pass as issued; ``uses``/``revoked`` are the state its signature cannot carry."""

    id = fields.CharField(pk=True, max_length=64)
    site = fields.TextField()
    issued_by = fields.TextField()
    visitor_name_enc = fields.TextField(null=True)
    visitor_phone_enc = fields.TextField(null=True)
    visitor_phone_hash = fields.TextField(null=True)
    plate = fields.TextField(null=True)
    valid_from = fields.FloatField()
    valid_until = fields.FloatField()
    doors = fields.TextField()
    max_uses = fields.IntField()
    uses = fields.IntField(default=0)
    revoked = fields.BooleanField(default=False)
    revoked_at = fields.FloatField(null=True)
    created_at = fields.FloatField()

    class Meta:
        table = "community_passes"


class WatchRow(Model):
    """A police watchlist entry: a face template (encrypted) or a plate, with the reason."""

    id = fields.CharField(pk=True, max_length=64)
    site = fields.TextField()
    kind = fields.TextField()
    plate = fields.TextField(null=True)
    template_enc = fields.TextField(null=True)
    label = fields.TextField(null=True)
    reason = fields.TextField()
    added_by = fields.TextField()
    active = fields.BooleanField(default=True)
    created_at = fields.FloatField()

    class Meta:
        table = "community_watchlist"


class CaptureRow(Model):
    """A capture seen by any camera, door or gate (kept for the capture retention period)."""

    id = fields.CharField(pk=True, max_length=64)
    site = fields.TextField()
    ts = fields.FloatField()
    device_id = fields.TextField()
    camera = fields.TextField(null=True)
    credential_kind = fields.TextField()
    plate = fields.TextField(null=True)
    subject_id = fields.TextField(null=True)
    score = fields.FloatField(null=True)
    snapshot_ref = fields.TextField(null=True)

    class Meta:
        table = "community_captures"


class AccessDecisionRow(Model):
    """One access decision, central or edge."""

    id = fields.CharField(pk=True, max_length=64)
    site = fields.TextField()
    ts = fields.FloatField()
    device_id = fields.TextField()
    mode = fields.TextField()
    allowed = fields.BooleanField()
    reason = fields.TextField()
    subject_id = fields.TextField(null=True)
    subject_role = fields.TextField(null=True)
    credential_kind = fields.TextField()
    credential_ref = fields.TextField(null=True)
    score = fields.FloatField(null=True)
    pass_id = fields.TextField(null=True)
    capture_id = fields.TextField(null=True)
    command_ok = fields.BooleanField(null=True)

    class Meta:
        table = "access_decisions"


class Meta:
    table = "community_alarms"


class ApiTokenRow(Model):
    """An API bearer token, stored as its SHA-256 hash only, bound to a site and a role (community/tokens.py)."""

    token_hash = fields.CharField(pk=True, max_length=64)
    id = fields.CharField(max_length=32, null=True)  # public id to list and revoke by (migrations/0051)
    person_id = fields.TextField()
    site = fields.TextField(null=True)
    role = fields.TextField(null=True)
    label = fields.TextField(null=True)
    created_at = fields.FloatField()
    expires_at = fields.FloatField(null=True)
    revoked = fields.BooleanField(default=False)
    revoked_at = fields.FloatField(null=True)
    created_by = fields.TextField(null=True)

    class Meta:
        table = "community_api_tokens"


class AuditRow(Model):
    """Who viewed, exported or changed personal data, and when."""

    id = fields.CharField(pk=True, max_length=64)
    ts = fields.FloatField()
    actor = fields.TextField()
    actor_role = fields.TextField(null=True)
    action = fields.TextField()
    target = fields.TextField(null=True)
    detail = fields.TextField(null=True)
    purpose = fields.TextField(null=True)

    class Meta:
        table = "community_audit_log"


class ChangeRow(Model):
    """The site's registry change counter (``migrations/0050``): database triggers raise ``seq`` in the
    same transaction as every change that access decisions read."""

    site = fields.CharField(pk=True, max_length=64)
    seq = fields.BigIntField()

    class Meta:
        table = "community_changes"
