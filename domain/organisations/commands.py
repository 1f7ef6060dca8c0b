"""Organisations and their users: creating and renaming organisations, adding users."""

from __future__ import annotations

from tortoise.exceptions import IntegrityError

from domain import limits
from domain.access import Viewer
from domain.db import transaction
from domain.errors import DomainError, ErrorCode
from domain.events import record_event
from domain.events.catalogue import OrganisationUpdated, UserCreated
from domain.organisations.models import Organisation, OrganisationKind, Role, User
from domain.organisations.queries import get_organisation
from domain.validation import clean_email, clean_text


async def create_organisation(
    *, name: str, kind: OrganisationKind, owner_email: str, owner_name: str
) -> tuple[Organisation, User]:
    """A new organisation with its first user, an OWNER (operator command, no viewer)."""
    name = clean_text(name, field="name", max_length=200)
    owner_email = clean_email(owner_email, field="ownerEmail")
    owner_name = clean_text(owner_name, field="ownerName", max_length=200)
    async with transaction():
        organisation = await Organisation.create(name=name, kind=kind)
        owner = await _insert_user(
            organisation=organisation, email=owner_email, name=owner_name, role=Role.OWNER
        )
    return organisation, owner


async def rename_organisation(*, viewer: Viewer, name: str) -> Organisation:
    viewer.require_role(Role.ADMIN)
    name = clean_text(name, field="name", max_length=200)
    async with transaction():
        organisation = await get_organisation(viewer=viewer)
        previous = organisation.name
        organisation.name = name
        await organisation.save(update_fields=["name", "updated_at"])
        await record_event(
            OrganisationUpdated.of(
                organisation, previous_name=previous, actor_user_id=viewer.user_id
            )
        )
    return organisation


async def add_user(*, viewer: Viewer, email: str, name: str, role: Role) -> User:
    """Add a person to the viewer's organisation. Only an OWNER may add another OWNER."""
    viewer.require_role(Role.ADMIN)
    if role is Role.OWNER:
        viewer.require_role(Role.OWNER)
    email = clean_email(email)
    name = clean_text(name, field="name", max_length=200)
    async with transaction():
        organisation = await get_organisation(viewer=viewer)
        await limits.ensure_room(
            User.filter(organisation_id=organisation.id),
            limits.MAX_USERS_PER_ORGANISATION,
            message=f"At most {limits.MAX_USERS_PER_ORGANISATION} users per organisation.",
            lock=Organisation.filter(id=organisation.id),
        )
        user = await _insert_user(organisation=organisation, email=email, name=name, role=role)
        await record_event(UserCreated.of(user, actor_user_id=viewer.user_id))
    return user


async def _insert_user(*, organisation: Organisation, email: str, name: str, role: Role) -> User:
    """A user of ``organisation``. An e-mail is unique within an organisation only: one used by
    another organisation is no concern of this one (refusing it would tell which addresses other
    tenants use), so ALREADY_EXISTS speaks of the caller's own organisation only."""
    if await User.exists(organisation_id=organisation.id, email=email):
        raise _already_exists()
    try:
        return await User.create(organisation=organisation, email=email, name=name, role=role)
    except IntegrityError as exc:  # a concurrent insert of the same e-mail in this organisation
        raise _already_exists() from exc


def _already_exists() -> DomainError:
    return DomainError(
        ErrorCode.ALREADY_EXISTS,
        "A user of this organisation already has this e-mail.",
        field="email",
    )
