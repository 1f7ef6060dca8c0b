"""Log lines (``service/observability.py``): one JSON object a line, or readable text coloured
only on a terminal; the same fields from a standard-library logger as from a structlog one; and
the request id and organisation of the request or subscription being served on every line."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog
import websockets
from structlog.contextvars import bound_contextvars

from domain.access import Viewer
from domain.organisations.models import OrganisationKind, Role
from domain.request_context import request_id_var
from service.observability import bind_request, bind_viewer, configure_logging, unbind_request
from tests.conftest import MakeMember
from tests.support.graphql_client import EVENTS_SUBSCRIPTION, GraphQLHttp, GraphQLWebSocket
from tests.support.server import RunningServer

RENAME = "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"
ANSI = "\x1b["
LOGGER = "tests.logging"


@contextmanager
def logging_as(fmt: str, level: str = "INFO") -> Iterator[None]:
    """``configure_logging(level=level, fmt=fmt)`` inside the block; the root logger and
    structlog as they were afterwards (the rest of the run logs through pytest's handlers).
    Standard error is the test's ``capsys`` (not a terminal) unless the test replaced it."""
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    configure_logging(level=level, fmt=fmt)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        structlog.reset_defaults()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as JSON: a line that is not one object fails the test."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines), lines
    return lines


def of_logger(lines: list[dict[str, Any]], message: str) -> dict[str, Any]:
    [line] = [e for e in lines if e["logger"] == LOGGER and e["message"] == message]
    return line


async def test_a_requests_lines_are_json_with_its_request_id_and_organisation(
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from domain.organisations import queries as organisation_queries

    member = await make_member()

    async def list_users(**kwargs: object) -> None:
        logging.getLogger(LOGGER).info("listing users for %s", "a test")
        structlog.get_logger(LOGGER).info("listing users", page=1)
        raise RuntimeError("SELECT secret FROM internals")

    monkeypatch.setattr(organisation_queries, "list_users", list_users)
    with logging_as("json"):
        response = await client.http.post(
            "/graphql",
            json={"query": "{ users { nodes { id } } }"},
            headers={"authorization": f"Bearer {member.token}", "x-request-id": "req-log-1"},
        )
    assert response.headers["x-request-id"] == "req-log-1"
    assert response.json()["errors"][0]["extensions"]["requestId"] == "req-log-1"

    lines = json_lines(capsys.readouterr().err)
    stdlib = of_logger(lines, "listing users for a test")
    native = of_logger(lines, "listing users")
    [error] = [e for e in lines if e["logger"] == "supplygraph.graphql"]
    for line in (stdlib, native, error):
        assert line["request_id"] == "req-log-1"
        assert line["organisation_id"] == member.organisation_id
        assert list(line)[:4] == ["time", "level", "logger", "message"]
        assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)
    # a standard-library line has the shape of a structlog one (which adds its own keys)
    assert stdlib.keys() == native.keys() - {"page"} and native["page"] == 1
    assert stdlib["level"] == native["level"] == "INFO"
    assert error["level"] == "ERROR" and error["message"].startswith("unexpected error in users")
    assert "Traceback" in error["exception"] and "FROM internals" in error["exception"]


async def test_a_sockets_and_a_subscriptions_lines_carry_their_request_id_and_organisation(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An operation over a socket logs the socket's request id and organisation. Results of a
    subscription are delivered by its group, in a task of its own: its lines name the group's
    request id (not the socket's, nor the mutation's) and the organisation."""
    from domain.events import queries as event_queries
    from domain.organisations import queries as organisation_queries

    member = await make_member()
    list_users, shown_to = organisation_queries.list_users, event_queries.shown_to

    async def logged_list_users(**kwargs: Any) -> Any:
        logging.getLogger(LOGGER).info("listing users over the socket")
        return await list_users(**kwargs)

    def logged_shown_to(viewer: Viewer, event: Any) -> bool:
        logging.getLogger(LOGGER).info("delivering %s", event.type)
        return shown_to(viewer, event)

    monkeypatch.setattr(organisation_queries, "list_users", logged_list_users)
    monkeypatch.setattr(event_queries, "shown_to", logged_shown_to)
    with logging_as("json"):
        ws = GraphQLWebSocket(
            await websockets.connect(
                server.ws_url,
                subprotocols=["graphql-transport-ws"],
                additional_headers={"x-request-id": "req-socket"},
            )
        )
        try:
            await ws.send(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {member.token}"}}
            )
            await ws.acknowledged()
            await ws.subscribe("{ users { nodes { id } } }")
            assert (await ws.next_data())["users"]["nodes"] == [{"id": member.user_gid}]
            assert (await ws.receive())["type"] == "complete"
            await ws.subscribe(EVENTS_SUBSCRIPTION, {"types": ["ORGANISATION_UPDATED"]})
            await server.wait_for_subscribers(1)
            response = await client.http.post(
                "/graphql",
                json={"query": RENAME, "variables": {"n": "Logged"}},
                headers={"authorization": f"Bearer {member.token}", "x-request-id": "req-rename"},
            )
            assert response.json()["data"]["renameOrganisation"]["userErrors"] == []
            assert (await ws.next_data())["events"]["type"] == "ORGANISATION_UPDATED"
        finally:
            await ws.close()

    lines = json_lines(capsys.readouterr().err)
    socket = of_logger(lines, "listing users over the socket")
    assert socket["request_id"] == "req-socket"
    assert socket["organisation_id"] == member.organisation_id
    group = of_logger(lines, "delivering ORGANISATION_UPDATED")
    assert group["organisation_id"] == member.organisation_id
    assert re.fullmatch(r"[0-9a-f]{32}", group["request_id"])  # made for the group


def test_work_that_carries_a_request_id_logs_it(capsys: pytest.CaptureFixture[str]) -> None:
    """A warehouse task run sets only ``request_id_var`` (the id of the request that queued
    it): its lines carry that id."""
    with logging_as("json"):
        token = request_id_var.set("req-queued")
        try:
            logging.getLogger(LOGGER).info("running a task")
        finally:
            request_id_var.reset(token)
    line = of_logger(json_lines(capsys.readouterr().err), "running a task")
    assert line["request_id"] == "req-queued" and "organisation_id" not in line


def test_a_requests_context_ends_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger(LOGGER)
    viewer = Viewer(
        user_id=1,
        organisation_id=42,
        organisation_kind=OrganisationKind.BUYER,
        role=Role.OWNER,
        token_id=1,
    )
    with logging_as("json"):
        binding = bind_request("req-bound")
        try:
            bind_viewer(viewer)
            log.info("inside")
        finally:
            unbind_request(binding)
        log.info("after")
    lines = json_lines(capsys.readouterr().err)
    inside, after = of_logger(lines, "inside"), of_logger(lines, "after")
    assert inside["request_id"] == "req-bound" and inside["organisation_id"] == 42
    assert "request_id" not in after and "organisation_id" not in after
    assert request_id_var.get() is None


def test_text_lines_are_readable_and_plain_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = logging.getLogger(LOGGER)
    with logging_as("text"):
        with bound_contextvars(request_id="req-text", organisation_id=7):
            log.warning("stock is low: %d left", 3)
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("the sync failed")
        structlog.get_logger(LOGGER).info("synced", orders=2)
    err = capsys.readouterr().err
    assert ANSI not in err
    [low] = [line for line in err.splitlines() if "stock is low: 3 left" in line]
    assert "warning" in low and LOGGER in low
    assert "request_id=req-text" in low and "organisation_id=7" in low
    assert "Traceback" in err and "ValueError: boom" in err
    assert any("synced" in line and "orders=2" in line for line in err.splitlines())
    with pytest.raises(ValueError):
        json.loads(low)


def test_auto_is_json_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with logging_as("auto"):
        logging.getLogger(LOGGER).info("where do I go")
    line = of_logger(json_lines(capsys.readouterr().err), "where do I go")
    assert line["level"] == "INFO"


def test_auto_is_coloured_text_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    controller, terminal_fd = pty.openpty()
    try:
        with os.fdopen(terminal_fd, "w") as terminal:
            monkeypatch.setattr(sys, "stderr", terminal)
            with logging_as("auto"):
                logging.getLogger(LOGGER).warning("on a terminal")
            shown = os.read(controller, 65536).decode()
    finally:
        os.close(controller)
    assert "on a terminal" in shown and ANSI in shown
    with pytest.raises(ValueError):
        json.loads(shown.strip())


def test_below_the_level_nothing_is_written(capsys: pytest.CaptureFixture[str]) -> None:
    with logging_as("json", level="WARNING"):
        logging.getLogger(LOGGER).info("not shown")
        structlog.get_logger(LOGGER).info("not shown either")
        logging.getLogger(LOGGER).warning("shown")
    lines = json_lines(capsys.readouterr().err)
    assert [line["message"] for line in lines if line["logger"] == LOGGER] == ["shown"]
