"""A bearer token's row with what a request needs of its user and organisation, in one
statement (written out: every request runs it, and building it through the ORM cost more than
running it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from compat import tortoise as orm
from domain.organisations.models import ApiToken, Organisation, OrganisationKind, Role, User
from domain.persistence.sql import placeholder


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    user_id: int
    organisation_id: int
    expires_at: datetime | None
    last_used_at: datetime | None
    user_is_active: bool
    role: Role
    organisation_kind: OrganisationKind


_SQL: dict[str, str] = {}  # per SQL dialect


def _sql(dialect: str) -> str:
    sql = _SQL.get(dialect)
    if sql is None:
        token, user, organisation = (orm.table(m) for m in (ApiToken, User, Organisation))
        sql = _SQL[dialect] = (
            'SELECT t."id", t."user_id", t."organisation_id", t."expires_at", t."last_used_at", '
            'u."is_active", u."role", o."kind" '
            f'FROM "{token}" t JOIN "{user}" u ON u."id" = t."user_id" '
            f'JOIN "{organisation}" o ON o."id" = t."organisation_id" '
            f'WHERE t."secret_hash" = {placeholder(dialect, 1)} AND t."revoked_at" IS NULL LIMIT 1'
        )
    return sql


async def unrevoked_token(secret_hash: str) -> TokenRow | None:
    """The unrevoked token with this digest, or None."""
    db = orm.connection_of(ApiToken)
    _, rows = await db.execute_query(_sql(db.capabilities.dialect), [secret_hash])
    if not rows:
        return None
    row = rows[0]
    return TokenRow(
        id=row["id"],
        user_id=row["user_id"],
        organisation_id=row["organisation_id"],
        expires_at=orm.from_db(ApiToken, "expires_at", row["expires_at"]),
        last_used_at=orm.from_db(ApiToken, "last_used_at", row["last_used_at"]),
        user_is_active=orm.from_db(User, "is_active", row["is_active"]),
        role=orm.from_db(User, "role", row["role"]),
        organisation_kind=orm.from_db(Organisation, "kind", row["kind"]),
    )
