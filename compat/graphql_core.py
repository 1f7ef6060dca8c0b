"""graphql-core: the execution internals ``schema.execution`` and ``schema.shapes`` build on.

- ``Executor.execute_field`` / ``complete_value`` / ``build_per_event_executor``: the fast
  execution context overrides them, so their parameters must stay what it passes on; and
  ``execute_operation``, which graphql-core calls on what ``build_per_event_executor`` returns.
- The field collection of ``graphql.execution.collect_fields`` (not exported by the package):
  ``collect_subfields``, and ``collect_fields`` called as ``execute_operation`` calls it.
- The per-executor memos (``_relevant_sub_fields``, ``_stream_usages``) that a subscription's
  per-event executor must not share with the subscription's own executor.
"""

from __future__ import annotations

import inspect
from typing import Any

from graphql.execution import Executor
from graphql.execution.collect_fields import (
    FieldDetails,
    FieldDetailsList,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.pyutils import RefMap

PACKAGE = "graphql-core"
TESTED_WITH = "3.3.2"

__all__ = [
    "FieldDetails",
    "FieldDetailsList",
    "FragmentDetails",
    "collect_fields",
    "collect_subfields",
    "probe",
    "reset_per_event_memos",
]

# the methods the fast execution context overrides or calls, with their parameters
OVERRIDDEN: dict[str, tuple[str, ...]] = {
    "execute_field": (
        "self",
        "parent_type",
        "source",
        "field_details_list",
        "path",
        "position_context",
    ),
    "complete_value": (
        "self",
        "return_type",
        "field_details_list",
        "info",
        "path",
        "result",
        "position_context",
    ),
    "build_per_event_executor": ("self", "payload"),
    "execute_operation": ("self", "serially"),
    "build_resolve_info": ("self", "field_def", "field_nodes", "parent_type", "path"),
    "handle_field_error": ("self", "raw_error", "return_type", "field_details_list", "path"),
}


def reset_per_event_memos(executor: Any) -> None:
    """Give a per-event executor memos of its own: graphql-core's copies share the
    subscription executor's, keyed by objects rebuilt for every event, so they would grow for
    as long as the subscription lives."""
    executor._relevant_sub_fields = {}
    executor._stream_usages = RefMap()


def probe(executor: Executor) -> None:
    """Check the overridden methods' parameters, and the memos on a real ``executor``."""
    for name, expected in OVERRIDDEN.items():
        found = tuple(inspect.signature(getattr(Executor, name)).parameters)
        assert found == expected, f"Executor.{name}{found}: expected {expected}"
    for memo in ("_relevant_sub_fields", "_stream_usages"):
        assert hasattr(executor, memo), f"Executor no longer has {memo}"
    assert isinstance(executor, Executor)
    assert callable(collect_subfields) and FieldDetails and FragmentDetails
    collected = tuple(inspect.signature(collect_fields).parameters)[:6]
    assert collected == (
        "schema",
        "fragments",
        "variable_values",
        "runtime_type",
        "operation",
        "hide_suggestions",
    ), f"collect_fields{collected}"
    assert hasattr(executor, "hide_suggestions"), "Executor no longer has hide_suggestions"
