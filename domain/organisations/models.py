"""Organisations, their people and the API tokens those people act through."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class OrganisationKind(StrEnum):
    BUYER = "BUYER"  # sellers and distributors: own stores and a wallet
    SUPPLIER = "SUPPLIER"  # quote, ship, resolve disputes


class Role(StrEnum):
    """Roles in increasing order of power; see ``domain.access.ROLE_RANK``."""

    VIEWER = "VIEWER"
    STAFF = "STAFF"
    ADMIN = "ADMIN"
    OWNER = "OWNER"


class Organisation(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    kind = fields.CharEnumField(OrganisationKind, max_length=16)
    currency = fields.CharField(max_length=3, default="USD")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "organisation"


class User(Model):
    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="users", on_delete=fields.CASCADE
    )
    organisation_id: int
    email = fields.CharField(max_length=254)  # unique within its organisation only
    name = fields.CharField(max_length=200)
    role = fields.CharEnumField(Role, max_length=16)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "user"
        # An e-mail is unique within an organisation, not across them: a platform-wide rule
        # would tell one tenant which addresses others use (and let it squat them). E-mail
        # first, so the operator's look-ups by e-mail alone (``create-token``) use it too.
        unique_together = (("email", "organisation_id"),)
        indexes = (("organisation_id", "id"),)


class ApiToken(Model):
    """A bearer token. Only its SHA-256 is stored, the secret is shown once, at creation.

    (No semicolons in model docstrings: Tortoise copies them into SQLite DDL comments.)
    """

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="tokens", on_delete=fields.CASCADE
    )
    user_id: int
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="tokens", on_delete=fields.CASCADE
    )
    organisation_id: int
    name = fields.CharField(max_length=100)
    prefix = fields.CharField(max_length=16)
    secret_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"
        indexes = (("organisation_id", "id"),)
