"""API tokens: issued to a user, stored as a SHA-256 digest, shown once, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from domain import visibility
from domain.access import Viewer
from domain.db import transaction
from domain.errors import DomainError, ErrorCode, not_found
from domain.events import EventType, record_event
from domain.models.organisations import ApiToken, Organisation, Role, User
from domain.pages import keyset_page
from domain.rows import placeholder
from domain.validation import clean_text, utc_datetime

TOKEN_PREFIX = "sg_"
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def issue_token(
    *, user: User, name: str, expires_at: datetime | None = None, actor_user_id: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the secret (never stored, shown once)."""
    name = clean_text(name, field="name", max_length=100)
    if expires_at is not None:
        expires_at = utc_datetime(expires_at, field="expiresAt")
        if expires_at <= datetime.now(UTC):
            raise DomainError(
                ErrorCode.INVALID, "The expiry must be in the future.", field="expiresAt"
            )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with transaction():
        token = await ApiToken.create(
            user_id=user.id,
            organisation_id=user.organisation_id,
            name=name,
            prefix=secret[:10],
            secret_hash=_digest(secret),
            expires_at=expires_at,
        )
        await record_event(
            type=EventType.API_TOKEN_CREATED,
            subject_type="ApiToken",
            subject_id=token.id,
            audience=[user.organisation_id],
            payload={"name": name, "userId": user.id, "prefix": token.prefix},
            actor_user_id=actor_user_id if actor_user_id is not None else user.id,
        )
    return token, secret


async def create_token(
    *, viewer: Viewer, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """The viewer creates a token for themself."""
    user = await User.get(id=viewer.user_id)
    return await issue_token(
        user=user, name=name, expires_at=expires_at, actor_user_id=viewer.user_id
    )


async def list_tokens(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[ApiToken], bool]:
    """A page of tokens in id order: admins see every token of their organisation; others see
    their own."""
    return await keyset_page(visibility.api_tokens(viewer), first=first, after=after)


async def revoke_token(*, viewer: Viewer, token_id: int) -> ApiToken:
    """Revoke one of the viewer's own tokens, or (admins) any token of the organisation."""
    async with transaction():
        token = await ApiToken.get_or_none(id=token_id, organisation_id=viewer.organisation_id)
        if token is None or (token.user_id != viewer.user_id and not viewer.has_role(Role.ADMIN)):
            raise not_found("Token", field="id")
        if token.revoked_at is not None:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION, "This token is already revoked.", field="id"
            )
        token.revoked_at = datetime.now(UTC)
        await token.save(update_fields=["revoked_at"])
        await record_event(
            type=EventType.API_TOKEN_REVOKED,
            subject_type="ApiToken",
            subject_id=token.id,
            audience=[viewer.organisation_id],
            payload={"name": token.name, "userId": token.user_id, "prefix": token.prefix},
            actor_user_id=viewer.user_id,
        )
    return token


_AUTHENTICATE_SQL: dict[str, str] = {}  # per SQL dialect


def _authenticate_sql(dialect: str) -> str:
    """The token with its user's state and role and its organisation's kind, in one statement
    (written out: every request runs it, and building it through the ORM cost more than
    running it)."""
    sql = _AUTHENTICATE_SQL.get(dialect)
    if sql is None:
        token, user = ApiToken._meta.db_table, User._meta.db_table
        organisation = Organisation._meta.db_table
        sql = _AUTHENTICATE_SQL[dialect] = (
            'SELECT t."id", t."user_id", t."organisation_id", t."expires_at", t."last_used_at", '
            'u."is_active", u."role", o."kind" '
            f'FROM "{token}" t JOIN "{user}" u ON u."id" = t."user_id" '
            f'JOIN "{organisation}" o ON o."id" = t."organisation_id" '
            f'WHERE t."secret_hash" = {placeholder(dialect, 1)} AND t."revoked_at" IS NULL LIMIT 1'
        )
    return sql


async def authenticate(*, secret: str) -> Viewer | None:
    """The viewer a bearer secret stands for, or None if it is unknown, revoked or expired."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    db = ApiToken._meta.db
    _, rows = await db.execute_query(_authenticate_sql(db.capabilities.dialect), [_digest(secret)])
    if not rows:
        return None
    row = rows[0]
    token_fields, user_fields = ApiToken._meta.fields_map, User._meta.fields_map
    now = datetime.now(UTC)
    if not user_fields["is_active"].to_python_value(row["is_active"]):
        return None
    expires_at = token_fields["expires_at"].to_python_value(row["expires_at"])
    if expires_at is not None and expires_at <= now:
        return None
    last_used_at = token_fields["last_used_at"].to_python_value(row["last_used_at"])
    if last_used_at is None or now - last_used_at > _LAST_USED_RESOLUTION:
        await ApiToken.filter(id=row["id"]).update(last_used_at=now)
    return Viewer(
        user_id=row["user_id"],
        organisation_id=row["organisation_id"],
        organisation_kind=Organisation._meta.fields_map["kind"].to_python_value(row["kind"]),
        role=user_fields["role"].to_python_value(row["role"]),
        token_id=row["id"],
    )


async def still_valid(*, token_id: int) -> bool:
    """Whether a token that authenticated earlier (a socket's) is still unrevoked, unexpired and
    its user active: checked again before a long-lived connection starts another operation."""
    token = (
        await ApiToken.filter(id=token_id, revoked_at__isnull=True).select_related("user").first()
    )
    if token is None or not token.user.is_active:
        return False
    return token.expires_at is None or token.expires_at > datetime.now(UTC)
