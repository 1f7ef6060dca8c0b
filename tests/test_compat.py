"""The internals of other libraries that ``compat/`` relies on are still where it expects.

Each compat module names the version it was checked against; an installed version that differs
fails here first, with what to re-check, before anything subtler breaks elsewhere.
"""

from __future__ import annotations

from importlib.metadata import version
from types import ModuleType

import pytest
from graphql import parse
from tortoise import Tortoise

from compat import broadcaster, graphql_core, httpx, strawberry, tortoise, uvicorn
from schema.build import create_schema
from schema.execution import FastExecutionContext
from tests.support.server import RunningServer

MODULES = [broadcaster, graphql_core, httpx, strawberry, tortoise, uvicorn]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_each_compat_module_was_checked_against_the_installed_version(module: ModuleType) -> None:
    installed = version(module.PACKAGE)
    assert installed == module.TESTED_WITH, (
        f"{module.PACKAGE} {installed} is installed; {module.__name__} was checked against "
        f"{module.TESTED_WITH}. Re-check the internals its docstring lists (its probe below "
        f"helps), then set TESTED_WITH = {installed!r}."
    )


async def test_broadcaster_internals() -> None:
    await broadcaster.probe()


def test_httpx_internals() -> None:
    httpx.probe()


async def test_uvicorn_internals() -> None:
    await uvicorn.probe()


def test_strawberry_and_graphql_core_internals() -> None:
    schema = create_schema()
    strawberry.probe(schema)
    core = strawberry.core_schema(schema)
    executor = FastExecutionContext.build(core, parse("{ __typename }"))
    assert isinstance(executor, FastExecutionContext)
    graphql_core.probe(executor)


async def test_tortoise_internals(server: RunningServer) -> None:
    models = list(Tortoise.apps["models"].values())
    assert models
    for model in models:
        tortoise.probe(model)
