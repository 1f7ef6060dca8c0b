"""The schema as a contract: the snapshot in review, a `Requires` on every root field,
migrations that match the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from strawberry.schema.schema_converter import GraphQLCoreConverter

from resolvers.permissions import declared
from schema.build import Mutation, Query, Subscription, create_schema

ROOT = Path(__file__).resolve().parent.parent


def test_schema_snapshot_is_up_to_date() -> None:
    checked_in = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert create_schema().as_str() + "\n" == checked_in, (
        "schema.graphql is stale: run `make schema` (python main.py export-schema) and commit it"
    )


def test_export_schema_command_prints_the_schema() -> None:
    result = subprocess.run(
        [sys.executable, "main.py", "export-schema", "--output", "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == (ROOT / "schema.graphql").read_text(encoding="utf-8")


def test_every_root_field_declares_who_may_use_it() -> None:
    """A ``Requires`` declaration (``resolvers.permissions.requires``) on every root field, and
    it is in the field's description in the schema."""
    undeclared = []
    for root in (Query, Mutation, Subscription):
        for field in root.__strawberry_definition__.fields:
            if declared(field) is None:
                undeclared.append(f"{root.__name__}.{field.python_name}")
    assert undeclared == []
    schema = create_schema()._schema
    for root_type in (schema.query_type, schema.mutation_type, schema.subscription_type):
        assert root_type is not None
        for name, graphql_field in root_type.fields.items():
            field = graphql_field.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
            requires = declared(field)
            assert requires is not None, name
            assert (graphql_field.description or "").endswith(requires.describe()), name


def test_every_mutation_returns_a_payload_with_user_errors() -> None:
    schema = create_schema()
    mutation_type = schema._schema.mutation_type
    assert mutation_type is not None
    for name, field in mutation_type.fields.items():
        payload = field.type.of_type  # NonNull(Payload)
        assert "userErrors" in payload.fields, name


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """`makemigrations` against the migrated schema finds nothing to do."""
    db = f"sqlite://{tmp_path / 'm.sqlite3'}"
    env = {"DATABASE_URL": db, "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "main.py", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    result = subprocess.run(
        [sys.executable, "-c", _CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "no changes", result.stdout


_CHECK = """
import asyncio, os
from tortoise.context import TortoiseContext
from tortoise.migrations.autodetector import MigrationAutodetector
from domain.db import tortoise_config

async def main():
    config = tortoise_config(os.environ["DATABASE_URL"])
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    print("no changes" if not writers else [w.name for w in writers])

asyncio.run(main())
"""
