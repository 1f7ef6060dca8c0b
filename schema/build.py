"""The Schema object: root types from ``resolvers``, plus the error policy and limits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_limit
from strawberry.extensions.query_depth_limiter import create_validator as depth_limit
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from domain.errors import DomainError
from resolvers.catalogue import CatalogueMutations, CatalogueQueries
from resolvers.distribution import (
    DistributionMutations,
    DistributionQueries,
    DistributionSubscriptions,
)
from resolvers.errors import PublicError
from resolvers.events import EventQueries, EventSubscriptions, OrderSubscriptions
from resolvers.nodes import NodeQueries
from resolvers.orders import OrderMutations, OrderQueries
from resolvers.organisations import OrganisationMutations, OrganisationQueries
from resolvers.sla import SlaMutations, SlaQueries, SlaSubscriptions
from resolvers.stock import StockMutations, StockQueries, StockSubscriptions
from resolvers.stores import StoreMutations, StoreQueries
from schema.execution import FastExecutionContext
from schema.extension_runner import LeanExtensionsRunner
from schema.trusted_documents import trusted_documents_only

log = logging.getLogger("supplygraph.graphql")

Query = merge_types(
    "Query",
    (
        NodeQueries,
        OrganisationQueries,
        EventQueries,
        CatalogueQueries,
        StoreQueries,
        OrderQueries,
        DistributionQueries,
        StockQueries,
        SlaQueries,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        OrganisationMutations,
        CatalogueMutations,
        StoreMutations,
        OrderMutations,
        DistributionMutations,
        StockMutations,
        SlaMutations,
    ),
)
Subscription = merge_types(
    "Subscription",
    (
        EventSubscriptions,
        OrderSubscriptions,
        DistributionSubscriptions,
        StockSubscriptions,
        SlaSubscriptions,
    ),
)


def is_expected(error: GraphQLError) -> bool:
    """Errors shown as they are: those about the client's document or variables (raised before
    execution, so they have no path) and ``PublicError``s. Anything else raised while resolving
    is unexpected."""
    original = error.original_error
    if error.path is None or original is None:
        return True
    return isinstance(original, PublicError | DomainError)


def _request_id(context: Any) -> str | None:
    return getattr(context, "request_id", None)


class ErrorPolicy(MaskErrors):
    """Masks unexpected errors (no stack traces or SQL to clients) and gives every error a code.

    Masked errors carry ``extensions.code = INTERNAL_SERVER_ERROR`` and the ``requestId`` under
    which the full exception was logged.
    """

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda e: not is_expected(e))

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {
            "code": "INTERNAL_SERVER_ERROR",
            "requestId": _request_id(self.execution_context.context),
        }
        return masked


def _code_of(error: GraphQLError) -> str:
    message = error.message
    if "exceeds maximum operation depth" in message or "aliases found" in message:
        return "QUERY_TOO_COMPLEX"
    if "more than" in message and "tokens" in message:
        return "QUERY_TOO_COMPLEX"
    if message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if error.path is None:
        return "GRAPHQL_VALIDATION_FAILED"
    return "BAD_USER_INPUT"


class SupplygraphSchema(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> LeanExtensionsRunner:
        """Extension hooks at the cost of what they do (``schema/extension_runner.py``)."""
        return LeanExtensionsRunner(execution_context, extensions)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Give expected errors a ``code``; log unexpected ones with their request id.

        Runs before ``ErrorPolicy`` masks, so the log keeps the original exception.
        """
        for error in errors:
            if isinstance(error.original_error, DomainError):
                # a query refused by a domain rule (a mutation would return userErrors)
                domain_error = error.original_error
                error.extensions = {"code": domain_error.code.value, "field": domain_error.field}
            elif is_expected(error):
                if not (error.extensions or {}).get("code"):
                    error.extensions = {**(error.extensions or {}), "code": _code_of(error)}
            else:
                log.error(
                    "unexpected error in %s: %s",
                    ".".join(str(p) for p in error.path or ()) or "operation",
                    error.message,
                    exc_info=error.original_error,
                    extra={
                        "request_id": _request_id(execution_context and execution_context.context)
                    },
                )


def create_schema(
    *,
    max_depth: int = 12,
    max_tokens: int = 3000,
    max_aliases: int = 30,
    max_batch_operations: int = 10,
    trusted_digests: Collection[str] | None = None,
    extra_extensions: Sequence[Callable[[], SchemaExtension]] = (),
    after_validation: Sequence[Callable[[], SchemaExtension]] = (),
) -> SupplygraphSchema:
    """The schema with its limits; ``extra_extensions`` (such as metrics) come from the app.
    ``after_validation`` extensions come after the validation cache, so a refusal they set in
    ``on_validate`` is not replaced by the cached (empty) list of errors.

    The depth and alias rules are built once here: Strawberry's limiter extensions build new
    rule classes for every request, and the validation cache (keyed by the rules) would then
    never hit.
    """
    limits = [depth_limit(max_depth, None, None), alias_limit(max_aliases)]
    if trusted_digests is not None:
        limits.insert(0, trusted_documents_only(trusted_digests))
    extensions: Sequence[Callable[[], SchemaExtension]] = [
        *extra_extensions,
        ErrorPolicy,
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: AddValidationRules(limits),
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        *after_validation,
    ]
    return SupplygraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=list(extensions),
        execution_context_class=FastExecutionContext,
        config=StrawberryConfig(batching_config={"max_operations": max_batch_operations}),
    )
