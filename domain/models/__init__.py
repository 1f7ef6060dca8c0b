"""All Tortoise models of the application, registered as the ``models`` app."""

from domain.models.events import Event, EventAudience
from domain.models.organisations import ApiToken, Organisation, User

__all__ = ["ApiToken", "Event", "EventAudience", "Organisation", "User"]
