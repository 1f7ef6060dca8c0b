"""The event outbox.

A service writes its ``Event`` (and who may see it) in the same transaction as the change it
describes. ``seq`` is the public, gap-free event id: it is assigned after commit, in commit
order, by ``domain.outbox.assign_sequence`` — so a client resuming after id N can never miss an
event that committed later with a smaller row id.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Event(Model):
    id = fields.BigIntField(primary_key=True)
    seq = fields.BigIntField(null=True, unique=True)
    type = fields.CharField(max_length=64)
    subject_type = fields.CharField(max_length=64)
    subject_id = fields.CharField(max_length=64)
    payload = fields.JSONField(default=dict)
    actor_user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.SET_NULL, null=True
    )  # who did it: history that outlives the user
    actor_user_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)
    published_at = fields.DatetimeField(null=True, db_index=True)

    audience: fields.ReverseRelation[EventAudience]

    class Meta:
        table = "event"


class EventAudience(Model):
    """One row per organisation that may see an event."""

    id = fields.BigIntField(primary_key=True)
    event: fields.ForeignKeyRelation[Event] = fields.ForeignKeyField(
        "models.Event", related_name="audience", on_delete=fields.CASCADE
    )
    event_id: int
    # who may see the event: a row about an organisation goes with it
    organisation: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.CASCADE
    )
    organisation_id: int

    class Meta:
        table = "event_audience"
        unique_together = (("organisation_id", "event_id"),)
        indexes = (("event_id",),)
