"""Tortoise models over the core tables (schema comes from ``migrations/``, never generated)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Site(Model):
    id = fields.CharField(pk=True, max_length=64)
    name = fields.TextField()
    origin_lat = fields.FloatField(null=True)
    origin_lon = fields.FloatField(null=True)
    created_at = fields.FloatField()

    class Meta:
        table = "sites"


class SiteModelRow(Model):
    """A site's validated plan (:class:`twins.site.SiteModel`) as JSON, with a version per load."""

    site = fields.CharField(pk=True, max_length=64)
    document = fields.TextField()
    version = fields.BigIntField()
    source = fields.TextField()
    loaded_at = fields.FloatField()

    class Meta:
        table = "site_models"


class Device(Model):
    id = fields.CharField(pk=True, max_length=64)
    site_id = fields.CharField(max_length=64)
    kind = fields.CharField(max_length=32)
    name = fields.TextField()
    x = fields.FloatField(null=True)
    y = fields.FloatField(null=True)
    secret_hash = fields.TextField(null=True)
    created_at = fields.FloatField()
    updated_at = fields.FloatField()
    disabled_at = fields.FloatField(null=True)
    last_seen = fields.FloatField(null=True)

    class Meta:
        table = "devices"


class ServiceAccount(Model):
    username = fields.CharField(pk=True, max_length=64)
    role = fields.CharField(max_length=16)
    secret_hash = fields.TextField()
    created_at = fields.FloatField()

    class Meta:
        table = "service_accounts"
