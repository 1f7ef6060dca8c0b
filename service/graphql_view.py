"""Strawberry's ASGI view with this service's context and authentication."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from domain import tokens
from resolvers.context import Context
from service.observability import new_request_id
from service.settings import Settings

BAD_TOKEN = "The token is invalid, expired or revoked."


def _bearer(value: object) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` value, else None."""
    if not isinstance(value, str):
        return None
    scheme, _, secret = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


class GraphQLView(GraphQL):
    def __init__(self, schema: Any, settings: Settings) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.debug else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
            allowed_origins=settings.ws_allowed_origins,
        )

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        request_id = request.scope.get("state", {}).get("request_id") or new_request_id()
        context = Context(
            request=request,
            response=response,
            request_id=request_id,
            hub=request.app.state.hub,
        )
        if isinstance(request, Request):
            header = request.headers.get("authorization")
            if header is not None:
                await self._authenticate(context, _bearer(header))
        context.fresh_loaders()
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate a WebSocket from its ``connection_init`` payload.

        Accepts ``{"Authorization": "Bearer <secret>"}`` (also ``authorization``) or
        ``{"token": "<secret>"}``; a missing or bad token closes the socket with 4403.
        """
        params = context.connection_params or {}
        secret = _bearer(params.get("Authorization") or params.get("authorization"))
        if secret is None and isinstance(params.get("token"), str):
            secret = params["token"]
        await self._authenticate(context, secret)
        if context.viewer is None:
            raise ConnectionRejectionError({"message": context.auth_problem or BAD_TOKEN})
        context.fresh_loaders()
        return {"organisationId": str(context.viewer.organisation_id)}

    async def _authenticate(self, context: Context, secret: str | None) -> None:
        viewer = await tokens.authenticate(secret=secret) if secret else None
        if viewer is None:
            context.auth_problem = BAD_TOKEN if secret else "Authentication required."
        context.viewer = viewer

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["cache-control"] = "no-store"
        return response
