"""Strawberry's ASGI view with this service's context, authentication and response cache.

HTTP requests pass through ``GraphQLView.__call__``: it authenticates the bearer token, answers
a repeated query from the response cache (``service/response_cache.py``) without entering
Strawberry, and otherwise runs Strawberry as usual, storing a query's error-free answer and
invalidating the caller's organisation after a mutation. Responses that went through the cache
carry ``x-cache: hit`` or ``x-cache: miss``. Media types, statuses and error bodies follow
GraphQL over HTTP (``service/graphql_http.py``); a JSON array of operations is a batch, run one
operation after the other, each as if it came alone.

Abuse limits (``service/limits/``): a request without a valid token counts against its client
address's bucket, refused 429 past it; an operation's cost is charged to its token by the
schema's ``QueryCost`` when it runs, and here when it is answered from the cache; a single
operation refused ``THROTTLED`` is a 429 with ``Retry-After``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, OperationType
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from compat.strawberry import core_schema
from domain.access import Viewer
from domain.db import DATABASE_UNAVAILABLE
from domain.organisations import tokens
from resolvers.context import Context, Services
from schema.global_ids import gid
from service.graphiql import page_response as graphiql_page
from service.graphql_http import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    error_response,
    is_request_error,
    response_media_type,
)
from service.limits.bodies import with_cost, without_cost
from service.limits.throttle import (
    COST_STATE,
    RETRY_AFTER_STATE,
    THROTTLED,
    Charge,
    Throttle,
    anonymous_message,
    retry_after_header,
)
from service.metrics import Metrics
from service.observability import bind_viewer, new_request_id
from service.persisted_documents import (
    DocumentRef,
    MemoryDocuments,
    PersistedDocumentError,
    PersistedDocuments,
)
from service.ports import integration_services
from service.response_cache import (
    MAX_DOCUMENT_CHARS,
    Key,
    Operation,
    OperationIndex,
    ResponseCache,
    request_key,
)
from service.settings import Settings

log = logging.getLogger("supplygraph.graphql")
BAD_TOKEN = "The token is invalid, expired or revoked."
# keys of ``scope["state"]`` this view sets for Strawberry's part of a request
_VIEWER = "supplygraph.viewer"  # authenticated before Strawberry ran (value: Viewer or None)
_ERRORS = "supplygraph.errors"  # whether the executed result had errors
_REQUEST_ERROR = "supplygraph.request_error"  # a single operation that did not execute
_DOCUMENTS = "supplygraph.documents"  # persisted documents this request resolved, by hash
_BATCH = "supplygraph.batch"  # the request is a batch of operations
_STREAMING_ACCEPT = ("multipart/mixed", "text/event-stream")
# extensions a request may carry and still be answered from the response cache
_CACHEABLE_EXTENSIONS = frozenset({"clientLibrary", "persistedQuery", "documentId"})
_HIT_HEADERS = [(b"cache-control", b"no-store"), (b"x-cache", b"hit")]
_BATCH_ITEM_KEYS = {
    "query": (str, "a string"),
    "operationName": (str, "a string"),
    "variables": (dict, "an object"),
    "extensions": (dict, "an object"),
}


def _bearer(value: object) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` value, else None."""
    if not isinstance(value, str):
        return None
    scheme, _, secret = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def _client_address(connection: Request | WebSocket) -> str:
    client = connection.scope.get("client")
    return str(client[0]) if client else "unknown"


def _count_hit(metrics: Metrics, operation: Operation, seconds: float) -> None:
    """A cache hit, in the figures ``OperationMetrics`` keeps for executed operations too."""
    name = metrics.operation_label(operation.name)
    metrics.response_cache.labels("hit").inc()
    metrics.operations.labels(name, "query", "ok").inc()
    metrics.operation_seconds.labels(name, "query").observe(seconds)


@dataclass(frozen=True, slots=True)
class _Plan:
    """An authenticated request for a query or mutation the cache takes part in."""

    viewer: Viewer
    operation: Operation
    key: Key
    settled: bool  # the cache reflects every commit of this process so far: it may answer
    document: str
    name: str | None
    variables: dict[str, Any] | None


def _has_lone_surrogate(value: object) -> bool:
    """Whether a string in this parsed JSON cannot be encoded as UTF-8 (``"\\ud800"``): the
    database drivers refuse such text."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _document_request(data: GraphQLRequestData) -> DocumentRef:
    """The members of a parsed operation that name its document (a ``documentId`` or
    ``doc_id`` travels in ``extensions``: ``_keep_document_id``)."""
    extensions = data.extensions or {}
    return DocumentRef(data.query, data.extensions, extensions.get("documentId"))


def _keep_document_id(operation: dict[str, Any]) -> dict[str, Any]:
    """Strawberry keeps only ``query``, ``variables``, ``operationName`` and ``extensions`` of
    an operation: a persisted document's ``documentId`` (Relay: ``doc_id``) goes along in
    ``extensions``."""
    document_id = operation.pop("documentId", operation.pop("doc_id", None))
    if document_id is not None:
        extensions = operation.get("extensions")
        if extensions is None:
            operation["extensions"] = extensions = {}
        if isinstance(extensions, dict):
            extensions["documentId"] = document_id
    return operation


def _check_batch_item(item: object) -> None:
    """One operation of a batch: an object whose members have the types a single request's do."""
    if not isinstance(item, dict):
        raise HTTPException(400, "Each operation of a batch must be a JSON object.")
    for key, (kind, name) in _BATCH_ITEM_KEYS.items():
        if item.get(key) is not None and not isinstance(item[key], kind):
            raise HTTPException(400, f"The `{key}` of each operation of a batch must be {name}.")


class GraphQLView(GraphQL):
    def __init__(
        self,
        schema: Any,
        settings: Settings,
        documents: PersistedDocuments | None = None,
        services: Services | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.debug else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
            allowed_origins=settings.ws_allowed_origins,
        )
        self.response_cache: ResponseCache | None = None
        if settings.response_cache:
            self.response_cache = ResponseCache(
                max_entries=settings.response_cache_entries,
                max_bytes=settings.response_cache_bytes,
                ttl=settings.response_cache_ttl,
            )
        self._operations = OperationIndex(max_tokens=settings.max_query_tokens)
        if documents is None:
            store = MemoryDocuments(settings.persisted_query_entries)
            documents = PersistedDocuments(store if settings.persisted_queries else None, None)
        self.documents = documents
        # what resolvers call of the integrations (``info.context.services``)
        self.services = services or integration_services(settings)
        # query cost and address limits (``service/limits/``); the schema's ``QueryCost``
        # charges executed operations, this view answers from the cache and refuses addresses
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._serve(scope, receive, send)
            return
        try:
            await self._serve(scope, receive, send)
        except DATABASE_UNAVAILABLE as error:
            # the database is unreachable (authentication is the first thing to need it): a
            # 503 the client can retry, not a bare 500; the exception is logged
            request_id = scope.get("state", {}).get("request_id")
            log.error("database unavailable: %s", error, extra={"request_id": request_id})
            response = error_response(
                503,
                "The service is unavailable; retry shortly.",
                self._media_type(Request(scope)),
                headers={"retry-after": "2"},
                code="SERVICE_UNAVAILABLE",
                requestId=request_id,
            )
            await response(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache = self.response_cache
        app = scope.get("app")
        hub = getattr(app.state, "hub", None) if app is not None else None
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        plan = None
        if cache is not None and hub is not None and not hub.closed:
            plan = await self._plan(request, cache)
        refusal = await self._refuse_anonymous(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if cache is None or plan is None:
            response = await self._execute(request)
        elif plan.operation.kind is OperationType.MUTATION:
            try:
                response = await self._execute(request)
            finally:
                cache.after_mutation(plan.viewer.organisation_id)
        else:
            started = time.perf_counter()
            metrics: Metrics | None = getattr(app.state, "metrics", None)
            body = cache.get(plan.key) if plan.settled else None
            charge = await self._charge_cached(plan) if body is not None else None
            if charge is not None and charge.refusal is not None:
                response = self._refused(request, charge)
                await response(scope, receive, send)
                return
            if body is not None:
                if charge is not None:
                    body = with_cost(body, charge.report)
                media_type = self._media_type(request).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", media_type),
                            *_HIT_HEADERS,
                            (b"content-length", b"%d" % len(body)),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                if metrics is not None:
                    _count_hit(metrics, plan.operation, time.perf_counter() - started)
                return
            if metrics is not None:
                metrics.response_cache.labels("miss").inc()
            ticket = cache.ticket()
            response = await self._execute(request)
            if (
                response.status_code == 200
                and not isinstance(response, StreamingResponse)
                and request.scope.get("state", {}).get(_ERRORS) is False
            ):
                answer = bytes(response.body)
                report = request.scope["state"].get(COST_STATE)
                # kept without its cost: each answer served from the cache reports its own
                kept = answer if report is None else without_cost(answer, report)
                if kept is not None:
                    cache.put(plan.key, ticket, kept)
            response.headers["x-cache"] = "miss"
        await response(scope, receive, send)

    async def _execute(self, request: Request) -> Response:
        """Strawberry's handling of an HTTP request (``GraphQL.__call__``), as a response in
        the media type the client accepts, a refused request as a GraphQL error."""
        media_type = self._media_type(request)
        try:
            response = await self.run(request)
        except HTTPException as e:
            headers = {"allow": "GET, POST"} if e.status_code == 405 else None
            return error_response(e.status_code, e.reason, media_type, headers)
        state = request.scope.get("state", {})
        if response.headers.get("content-type", "").startswith(JSON):
            response.headers["content-type"] = media_type
            if media_type == GRAPHQL_RESPONSE_JSON and state.get(_REQUEST_ERROR):
                response.status_code = 400
        retry_after = state.get(RETRY_AFTER_STATE)
        if retry_after is not None:  # an operation was THROTTLED; a batch's others ran
            response.headers["retry-after"] = retry_after_header(retry_after)
            if not state.get(_BATCH):
                response.status_code = 429
        return response

    async def _refuse_anonymous(self, request: Request) -> Response | None:
        """The 429 of a request without a valid token past its client address's limit, else
        None. Authenticates the bearer token if ``_plan`` has not (``get_context`` then takes
        the viewer found); the address is the ASGI client's (uvicorn's proxy headers set it
        from ``X-Forwarded-For`` for the proxies in ``FORWARDED_ALLOW_IPS``)."""
        throttle = self.throttle
        if throttle is None or not throttle.limits.addresses:
            return None
        state = request.scope.setdefault("state", {})
        viewer = state.get(_VIEWER)
        if _VIEWER not in state:
            secret = _bearer(request.headers.get("authorization"))
            if secret is not None:
                viewer = state[_VIEWER] = await tokens.authenticate(secret=secret)
                bind_viewer(viewer)  # the request's log lines name its organisation
        if viewer is not None:
            return None
        retry_after = await throttle.admit_address(_client_address(request))
        if retry_after is None:
            return None
        return error_response(
            429,
            anonymous_message(retry_after),
            self._media_type(request),
            headers={"retry-after": retry_after_header(retry_after)},
            code=THROTTLED,
            retryAfter=retry_after,
        )

    async def _charge_cached(self, plan: _Plan) -> Charge | None:
        """An answer from the cache costs what executing its document does."""
        throttle = self.throttle
        if throttle is None or not throttle.limits.costs:
            return None
        cost = throttle.price(core_schema(self.schema), plan.document, plan.name, plan.variables)
        return None if cost is None else await throttle.charge(plan.viewer.token_id, cost)

    def _refused(self, request: Request, charge: Charge) -> Response:
        """An operation refused by its cost, answered as its execution would be."""
        assert charge.refusal is not None
        media_type = self._media_type(request)
        headers = {"cache-control": "no-store"}
        status = 400 if media_type == GRAPHQL_RESPONSE_JSON else 200
        if charge.retry_after is not None:
            status = 429
            headers["retry-after"] = retry_after_header(charge.retry_after)
        body = {"errors": [charge.refusal.formatted], "extensions": {"cost": charge.report}}
        return Response(orjson.dumps(body), status, headers, media_type)

    @staticmethod
    def _media_type(request: Request) -> str:
        return response_media_type(request.headers.get("accept"))

    async def execute_operation(  # type: ignore[override]
        self,
        request: Request,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: Any,
        sub_response: Response,
    ) -> Any:
        """A single operation as Strawberry runs it; a batch one operation after the other,
        each with fresh loaders (a query after a mutation sees what it changed), a refused
        one answered by its own errors, and each mutation invalidating the response cache as a
        single one does."""
        if not isinstance(request_data, list):
            return await super().execute_operation(
                request, request_adapter, request_data, context, root_value, sub_response
            )
        request.scope.setdefault("state", {})[_BATCH] = True
        results: list[ExecutionResult] = []
        for data in request_data:
            context.fresh_loaders()
            try:
                result = await self.execute_single(
                    request=request,
                    request_adapter=request_adapter,
                    sub_response=sub_response,
                    context=context,
                    root_value=root_value,
                    request_data=data,
                )
            except HTTPException as e:
                error = GraphQLError(e.reason, extensions={"code": "BAD_REQUEST"})
                result = ExecutionResult(data=None, errors=[error])
            results.append(result)
            self._after_batched(context, data)
        return results

    async def execute_single(  # type: ignore[override]
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: Context,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """One operation, its document first resolved from its id if it names one (a failure
        is answered as a request error with its code)."""
        try:
            document = await self._resolve(request, _document_request(request_data))
        except PersistedDocumentError as e:
            error = GraphQLError(e.message, extensions={"code": e.code})
            return ExecutionResult(data=None, errors=[error])
        if document is not request_data.query:
            request_data = dataclasses.replace(request_data, query=document)
        return await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )

    async def _resolve(self, request: Request, operation: DocumentRef) -> str | None:
        """``PersistedDocuments.resolve``, once per request and document id (the response
        cache's look at a request resolves it before Strawberry runs it)."""
        if not operation.names_a_document:
            return operation.query if isinstance(operation.query, str) else None
        resolved = request.scope.setdefault("state", {}).setdefault(_DOCUMENTS, {})
        key = repr((operation.query, operation.extensions, operation.document_id))
        if key not in resolved:
            resolved[key] = await self.documents.resolve(operation)
        return resolved[key]

    def _after_batched(self, context: Context, data: GraphQLRequestData) -> None:
        cache, viewer = self.response_cache, context.viewer
        if cache is None or viewer is None or not isinstance(data.query, str):
            return
        operation = self._operations.get(data.query, data.operation_name)
        if operation is not None and operation.kind is OperationType.MUTATION:
            cache.after_mutation(viewer.organisation_id)

    async def _plan(self, request: Request, cache: ResponseCache) -> _Plan | None:
        """The cache's view of a request: None unless it is a single query or mutation over
        GET or POST JSON, without extensions, with a bearer token that authenticates.

        Reads the body (Starlette keeps it for Strawberry) and authenticates the token, a
        query's through the cache's ``TokenCache`` (the viewer is kept for ``get_context``); a
        request it cannot read is left to Strawberry, which answers it as it would without the
        cache.
        """
        secret = _bearer(request.headers.get("authorization"))
        if secret is None:
            return None
        accept = request.headers.get("accept", "")
        if any(kind in accept for kind in _STREAMING_ACCEPT):
            return None
        if request.method == "GET":
            data: Any = dict(request.query_params)
            if "variables" in data:
                try:
                    data["variables"] = json.loads(data["variables"])
                except (ValueError, RecursionError):
                    return None
        elif request.method == "POST" and "application/json" in request.headers.get(
            "content-type", ""
        ):
            try:
                data = json.loads(await request.body())
            except (ValueError, RecursionError):
                return None
        else:
            return None
        if not isinstance(data, dict):
            return None
        name = data.get("operationName")
        variables = data.get("variables")
        extensions = data.get("extensions")
        if isinstance(extensions, str):  # GET: JSON in the query string
            try:
                extensions = json.loads(extensions)
            except (ValueError, RecursionError):
                return None
        if extensions is not None and (
            not isinstance(extensions, dict) or not extensions.keys() <= _CACHEABLE_EXTENSIONS
        ):
            return None
        try:
            document = await self._resolve(
                request, DocumentRef.of({**data, "extensions": extensions})
            )
        except PersistedDocumentError:
            return None  # answered by the execution path
        if (
            not isinstance(document, str)
            or len(document) > MAX_DOCUMENT_CHARS
            or not isinstance(name, str | None)
            or not isinstance(variables, dict | None)
        ):
            return None
        operation = self._operations.get(document, name)
        if operation is None or operation.kind is OperationType.SUBSCRIPTION:
            return None
        settled = operation.kind is OperationType.QUERY and await cache.settle()
        if settled:
            viewer = await cache.tokens.authenticate(secret)
        else:  # a write, or the cache may lag behind a commit: checked against the database
            viewer = await tokens.authenticate(secret=secret)
        request.scope.setdefault("state", {})[_VIEWER] = viewer
        bind_viewer(viewer)  # the request's log lines name its organisation
        if viewer is None:
            return None
        key = request_key(viewer, operation, document, name, variables)
        return _Plan(viewer, operation, key, settled, document, name, variables)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        request_id = request.scope.get("state", {}).get("request_id") or new_request_id()
        context = Context(
            request=request,
            response=response,
            request_id=request_id,
            hub=request.app.state.hub,
            services=self.services,
        )
        if isinstance(request, Request):
            state = request.scope.get("state", {})
            if _VIEWER in state:
                context.viewer = state[_VIEWER]
                if context.viewer is None:
                    context.auth_problem = BAD_TOKEN
            else:
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
            refusal: dict[str, object] = {"message": context.auth_problem or BAD_TOKEN}
            throttle = self.throttle
            if throttle is not None and throttle.limits.addresses:
                retry_after = await throttle.admit_address(_client_address(context.request))
                if retry_after is not None:
                    refusal = {
                        "message": anonymous_message(retry_after),
                        "extensions": {"code": THROTTLED, "retryAfter": retry_after},
                    }
            raise ConnectionRejectionError(refusal)
        context.fresh_loaders()
        return {"organisationId": gid("Organisation", context.viewer.organisation_id)}

    async def _authenticate(self, context: Context, secret: str | None) -> None:
        viewer = await tokens.authenticate(secret=secret) if secret else None
        if viewer is None:
            context.auth_problem = BAD_TOKEN if secret else "Authentication required."
        context.viewer = viewer
        bind_viewer(viewer)  # the request's (or socket's) log lines name its organisation

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """The result as Strawberry shapes it, without ``data`` when nothing was executed."""
        state = request.scope.setdefault("state", {})
        state[_ERRORS] = bool(result.errors)
        response = await super().process_result(request, result)
        request_error = is_request_error(result.data, result.errors)
        state[_REQUEST_ERROR] = request_error
        if request_error:
            response.pop("data", None)
        return response

    def decode_json(self, data: str | bytes) -> object:
        """A request body (or GET ``variables``): a JSON object or, for a batch, an array, whose
        strings are valid Unicode. Anything else is a 400, not an error deep in execution."""
        try:
            value = json.loads(data)
            invalid = _has_lone_surrogate(value)
        except (UnicodeDecodeError, RecursionError) as error:
            raise HTTPException(400, "Unable to parse request body as JSON") from error
        if not isinstance(value, dict | list):
            raise HTTPException(400, "The request body must be a JSON object.")
        if invalid:
            raise HTTPException(400, "The request body holds invalid Unicode (a lone surrogate).")
        if isinstance(value, list):
            if not value:
                raise HTTPException(400, "A batch must hold at least one operation.")
            for item in value:
                _check_batch_item(item)
                _keep_document_id(item)
        else:
            _keep_document_id(value)
        return value

    def should_render_graphql_ide(self, request: Any) -> bool:
        """A browser's GET without a document, unless it names a persisted one."""
        params = request.query_params
        named = any(params.get(key) for key in ("extensions", "documentId", "doc_id"))
        return not named and super().should_render_graphql_ide(request)

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        return _keep_document_id(super().parse_query_params(params))

    def encode_json(self, data: object) -> bytes:
        """Responses serialised by orjson (a page of orders is ~50 KB: several times faster than
        ``json.dumps``). GraphQL has already turned every value into a JSON type."""
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL (``DEBUG=true``), its assets served by this app (``service/graphiql.py``)."""
        return graphiql_page()

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["cache-control"] = "no-store"
        return response
