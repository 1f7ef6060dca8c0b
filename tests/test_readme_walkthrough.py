"""The README's "The whole flow in ten minutes", run as written against a served demo world.

The section is read from ``README.md`` each run, so a document or command there that stops
working fails this test. Its steps are the fenced blocks that an HTML comment marks:

    <!-- walkthrough: NAME [as=ROLE] [wait] [expect=PATH=VALUE]... [save=NAME:PATH[|key]]... -->

followed by a ```graphql block (and, when it has variables, a ```json block right after) or a
```sh block holding one ``curl`` command against a simulator's control endpoint. The comment's
words are split as a shell would (quotes keep spaces). ``as`` names the demo owner whose token
the GraphQL document runs with (``supplier``, ``seller``, ``distributor``: the tokens
``seed-demo`` printed). A subscription (a document that starts with ``subscription``) is opened
when its block comes and runs to the end; its ``expect``s must each be met by one of the events
it received by then. Every other step runs once (with ``wait``: again, until its ``expect``s
hold, as the reader runs it again) and its answer must hold every ``expect``.

``PATH`` is read in the answer's ``data`` (a curl: the JSON it answers): names and indices
(``orders.edges[0].node.status``); a name over a list maps over it and flattens
(``storeProducts.nodes.variants``); ``[field=value]`` picks the first item whose ``field`` reads
``value``. ``VALUE`` is compared with the value as JSON writes it (``null``, ``true``, numbers
bare, strings unquoted). ``save=NAME:PATH`` keeps what the path reads for later steps, and a
later ``<NAME>`` in a document's variables, a command or a path is replaced by it: that is the
id the README tells the reader to copy. ``|key`` keeps the number a global id ends with
(``gid://supplygraph/Store/3`` → ``3``). The README's address, ``http://127.0.0.1:8000``,
becomes the test server's.

A GraphQL answer must have no ``errors`` and no ``userErrors``; a command must answer 2xx with
JSON. Every ```graphql and ```sh block of the section must be a marked step, and the prose
before a GraphQL step must name the organisation whose token it takes.

The README's "The simulators" is checked too: its tables of command-line options and control
endpoints against the simulators' own (``--help``, their routes), its commands that start them
alone by running them, and the mutations it shows against the schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import build_schema, parse, validate
from starlette.routing import Route

from integrations.stores.simulator import create_store_simulator
from integrations.warehouses.simulator import create_warehouse_simulator
from service import demo
from tests.conftest import ServerFactory
from tests.support.graphql_client import GraphQLWebSocket
from tests.support.server import RunningServer, free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TITLE = "## The whole flow in ten minutes"
README_URL = "http://127.0.0.1:8000"
ROLES = {"supplier": "Demo Supplier", "seller": "Demo Seller", "distributor": "Demo Distributor"}
STEP = re.compile(
    r"<!-- walkthrough: (?P<words>.*?) -->\n```(?P<kind>graphql|sh)\n(?P<text>.*?)```\n"
    r"(?:```json\n(?P<variables>.*?)```\n)?",
    re.DOTALL,
)
FENCE = re.compile(r"^```(graphql|sh)$", re.MULTILINE)
PLACEHOLDER = re.compile(r"<([a-z][a-z0-9-]*)>")
PATH_PART = re.compile(r"\[[^\]]*\]|[^.\[\]]+")
WAIT_SECONDS = 30.0
EVENT_SECONDS = 15.0


class NotYet(AssertionError):
    """An answer that does not hold yet what its step expects (a ``wait`` step runs again)."""


@dataclass
class Step:
    """One marked block of the walkthrough."""

    name: str
    kind: str  # "graphql" or "sh"
    text: str
    variables: str | None
    prose: str  # the README's words since the block before, on one line
    role: str | None = None
    wait: bool = False
    expects: list[tuple[str, str]] = field(default_factory=list)
    saves: list[tuple[str, str]] = field(default_factory=list)

    @property
    def subscription(self) -> bool:
        return self.kind == "graphql" and self.text.lstrip().startswith("subscription")


def section() -> str:
    text = README.read_text(encoding="utf-8")
    assert TITLE in text, f"the README has no {TITLE!r}"
    return text.split(TITLE, 1)[1].split("\n## ", 1)[0]


def steps(text: str) -> list[Step]:
    """The section's marked steps, in order."""
    found: list[Step] = []
    last = 0
    for match in STEP.finditer(text):
        words = shlex.split(match["words"])
        step = Step(
            name=words[0],
            kind=match["kind"],
            text=match["text"],
            variables=match["variables"],
            prose=" ".join(text[last : match.start()].split()),
        )
        last = match.end()
        for word in words[1:]:
            key, _, value = word.partition("=")
            if key == "as":
                assert value in ROLES, f"{step.name}: as={value}, not one of {sorted(ROLES)}"
                step.role = value
            elif key == "wait" and not value:
                step.wait = True
            elif key == "expect":
                path, _, expected = value.rpartition("=")
                assert path, f"{step.name}: expect={value} is not PATH=VALUE"
                step.expects.append((path, expected))
            elif key == "save":
                name, _, path = value.partition(":")
                assert name and path, f"{step.name}: save={value} is not NAME:PATH"
                step.saves.append((name, path))
            else:
                raise AssertionError(f"{step.name}: unknown word {word!r} in its marker")
        found.append(step)
    return found


def read(answer: Any, path: str) -> Any:
    """What ``path`` reads in ``answer`` (see the module docstring); ``NotYet`` when it does
    not lead anywhere."""
    value = answer
    for part in PATH_PART.findall(path):
        if part.startswith("["):
            inner = part[1:-1]
            if not isinstance(value, list):
                raise NotYet(f"{path}: {part} of {value!r}, not a list")
            if inner.isdigit():
                if int(inner) >= len(value):
                    raise NotYet(f"{path}: {part} of a list of {len(value)}")
                value = value[int(inner)]
                continue
            key, _, wanted = inner.partition("=")
            picked = [v for v in value if isinstance(v, dict) and shown(v.get(key)) == wanted]
            if not picked:
                raise NotYet(f"{path}: no {key}={wanted} in {value!r}")
            value = picked[0]
        elif isinstance(value, list):
            mapped = [item[part] for item in value if isinstance(item, dict) and part in item]
            value = [x for item in mapped for x in (item if isinstance(item, list) else [item])]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise NotYet(f"{path}: no {part!r} in {value!r}")
    return value


def shown(value: Any) -> str:
    """A value as the README writes it in an ``expect``: JSON's words, strings unquoted."""
    return value if isinstance(value, str) else json.dumps(value)


def check(step: Step, answer: Any, saved: dict[str, str]) -> None:
    for path, expected in step.expects:
        path = fill(path, saved, step)
        got = shown(read(answer, path))
        if got != expected:
            raise NotYet(f"{step.name}: {path} is {got!r}, not {expected!r}")


def fill(text: str, saved: dict[str, str], step: Step) -> str:
    """``text`` with each ``<name>`` replaced by what an earlier step saved."""

    def value(match: re.Match[str]) -> str:
        name = match[1]
        assert name in saved, f"{step.name} uses <{name}>, which no earlier step saves"
        return saved[name]

    return PLACEHOLDER.sub(value, text)


def user_errors(answer: Any) -> list[Any]:
    """Every ``userErrors`` entry anywhere in a GraphQL answer's data."""
    if isinstance(answer, dict):
        found = list(answer.get("userErrors") or [])
        return found + [e for v in answer.values() for e in user_errors(v)]
    if isinstance(answer, list):
        return [e for v in answer for e in user_errors(v)]
    return []


def curl(command: str) -> tuple[str, str, dict[str, str], str | None]:
    """The request a ``curl`` command sends: method, URL, headers and body."""
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == "curl", f"not a curl command: {command}"
    method: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    body: str | None = None
    given = iter(words[1:])
    for word in given:
        if word in ("-s", "-sS", "--silent"):
            continue
        if word == "-X":
            method = next(given)
        elif word == "-H":
            name, _, value = next(given).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data"):
            body = next(given)
        elif word.startswith("-"):
            raise AssertionError(f"curl option {word} is not understood here: {command}")
        else:
            assert url is None, f"two addresses in {command}"
            url = word
    assert url is not None, f"no address in {command}"
    return method or ("POST" if body is not None else "GET"), url, headers, body


@dataclass
class Watch:
    """A subscription of the walkthrough, and every event it received."""

    step: Step
    socket: GraphQLWebSocket
    events: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def listen(self) -> None:
        while True:
            self.events.append(await self.socket.next_data(timeout=3600))

    def unmet(self, saved: dict[str, str]) -> list[str]:
        missing = []
        for path, expected in self.step.expects:
            path = fill(path, saved, self.step)
            seen = []
            for event in self.events:
                with contextlib.suppress(NotYet):
                    seen.append(shown(read(event, path)))
            if expected not in seen:
                missing.append(f"{path}={expected} (seen: {seen})")
        return missing


class Walk:
    """Runs the steps against ``server`` with the demo owners' ``tokens``."""

    def __init__(
        self, server: RunningServer, http: httpx.AsyncClient, tokens: dict[str, str]
    ) -> None:
        self.server = server
        self.http = http
        self.tokens = tokens
        self.saved: dict[str, str] = {}
        self.watches: list[Watch] = []

    async def run(self, step: Step) -> None:
        if step.subscription:
            await self.watch(step)
            return
        answer = await self.until_expected(step)
        for name, path in step.saves:
            path, _, transform = path.partition("|")
            value = shown(read(answer, fill(path, self.saved, step)))
            if transform == "key":
                value = value.rsplit("/", 1)[-1]
                assert value.isdigit(), f"{step.name}: {path} is not a global id"
            else:
                assert not transform, f"{step.name}: unknown |{transform}"
            assert not re.search(r'["\\<>\s]', value), f"{step.name}: {name} = {value!r}"
            self.saved[name] = value

    async def until_expected(self, step: Step) -> Any:
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while True:
            answer = await self.answer(step)
            try:
                check(step, answer, self.saved)
                return answer
            except NotYet as error:
                if not step.wait or asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{error}\nanswer: {json.dumps(answer)}") from None
            await asyncio.sleep(0.2)

    async def answer(self, step: Step) -> Any:
        if step.kind == "sh":
            return await self.command(step)
        assert step.role is not None, f"{step.name}: a GraphQL step names its token (as=...)"
        variables = json.loads(fill(step.variables, self.saved, step)) if step.variables else {}
        response = await self.http.post(
            "/graphql",
            json={"query": step.text, "variables": variables},
            headers={"Authorization": f"Bearer {self.tokens[step.role]}"},
        )
        assert response.status_code == 200, f"{step.name}: {response.text}"
        body = response.json()
        assert "errors" not in body, f"{step.name}: {body}"
        assert not user_errors(body["data"]), f"{step.name}: {body}"
        return body["data"]

    async def command(self, step: Step) -> Any:
        method, url, headers, body = curl(fill(step.text, self.saved, step))
        assert url.startswith(README_URL + "/"), f"{step.name}: {url} is not the served demo's"
        url = self.server.url + url.removeprefix(README_URL)
        if body is not None:
            body = body.replace(README_URL, self.server.url)
            json.loads(body)  # the README's body is JSON, as the endpoint takes it
        response = await self.http.request(method, url, headers=headers, content=body)
        assert response.is_success, f"{step.name}: {response.status_code} {response.text}"
        return response.json()

    async def watch(self, step: Step) -> None:
        assert step.role is not None, f"{step.name}: a subscription names its token (as=...)"
        socket = await GraphQLWebSocket.connect(self.server.ws_url, token=self.tokens[step.role])
        await socket.acknowledged()
        await socket.subscribe(step.text)
        watch = Watch(step, socket)
        watch.task = asyncio.create_task(watch.listen())
        self.watches.append(watch)
        await self.server.wait_for_subscribers(len(self.watches))

    async def watched(self) -> None:
        """Every subscription received what its ``expect``s name (they may still be on the
        way when the last step ends)."""
        deadline = asyncio.get_running_loop().time() + EVENT_SECONDS
        for watch in self.watches:
            while missing := watch.unmet(self.saved):
                assert watch.task is not None and not watch.task.done(), (
                    f"{watch.step.name} ended: {watch.task and watch.task.exception()}"
                )
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{watch.step.name} did not receive {missing}")
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        for watch in self.watches:
            if watch.task is not None:
                watch.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watch.task
            await watch.socket.close()


def test_the_walkthrough_is_made_of_marked_steps() -> None:
    """Every block of the section is a step this test runs, each GraphQL step's prose names
    whose token it takes, and every ``<name>`` comes from an earlier step."""
    text = section()
    found = steps(text)
    assert len(found) == len(FENCE.findall(text)), "a graphql or sh block without its marker"
    assert len({s.name for s in found}) == len(found), "two steps of one name"
    saved: set[str] = set()
    for step in found:
        if step.kind == "graphql":
            assert step.role is not None, step.name
            assert ROLES[step.role] in step.prose, f"{step.name}: its prose names no {step.role}"
        if step.subscription:
            assert step.expects, f"{step.name}: a subscription expects events"
        used = PLACEHOLDER.findall(f"{step.text} {step.variables or ''} {step.expects}")
        assert set(used) <= saved, f"{step.name} uses {set(used) - saved} before it is saved"
        saved |= {name for name, _ in step.saves}
    assert any(s.subscription for s in found) and any(s.kind == "sh" for s in found)


@contextlib.asynccontextmanager
async def walking(server: RunningServer, tokens: dict[str, str]) -> AsyncIterator[Walk]:
    limits = httpx.Limits(keepalive_expiry=2)  # see tests/support/server.py IDLE_SAFE
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
        walk = Walk(server, http, tokens)
        try:
            yield walk
        finally:
            await walk.close()


async def test_the_readme_walkthrough_runs_as_written(make_server: ServerFactory) -> None:
    server = await make_server(demo=True)
    seeded = await demo.seed_demo(url=server.url)
    tokens = {
        "supplier": seeded.tokens.supplier.secret,
        "seller": seeded.tokens.seller.secret,
        "distributor": seeded.tokens.distributor.secret,
    }
    async with walking(server, tokens) as walk:
        for step in steps(section()):
            await walk.run(step)
        await walk.watched()


# -- "The simulators" -------------------------------------------------------------------------

SIMULATORS = {
    "store": "integrations.stores.simulator",
    "warehouse": "integrations.warehouses.simulator",
}
HELP_OPTION = re.compile(r"(--[a-z-]+)\s.*\[(?:default: (.*?)|(required))\]")
# what answers, with the credentials the README starts it with, once a simulator is up
API_CHECK = {
    "store": ("/admin/api/2024-01/products.json", "X-Shopify-Access-Token", "--token"),
    "warehouse": ("/v1/ping", "X-Warehouse-Key", "--key"),
}


def simulators_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert "\n### The simulators\n" in text, "the README has no '### The simulators'"
    return text.split("\n### The simulators\n", 1)[1].split("\n## ", 1)[0]


def table(text: str, *header: str) -> dict[str, list[str]]:
    """The rows of the table whose header row is ``header``: first cell (without its
    backticks) to the other cells."""
    head = "| " + " | ".join(header) + " |"
    assert head in text, f"no table {head}"
    rows: dict[str, list[str]] = {}
    for line in text.split(head, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


@pytest.mark.parametrize("kind", sorted(SIMULATORS))
def test_the_readme_lists_each_simulator_s_options(kind: str) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", SIMULATORS[kind], "--help"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    options = {
        found[1]: "(required)" if found[3] else f"`{found[2]}`"
        for line in shown.stdout.splitlines()
        if (found := HELP_OPTION.search(line)) is not None
    }
    listed = table(simulators_section(), f"{kind} simulator", "default", "meaning")
    assert {option: cells[0] for option, cells in listed.items()} == options


def control_endpoints(kind: str) -> set[str]:
    """``METHOD /_sim/...`` of every control route of a simulator, as the README writes them."""
    if kind == "store":
        app = create_store_simulator(access_token="t", webhook_secret="s")
    else:
        app = create_warehouse_simulator(api_key="k", callback_secret="s")
    found = set()
    for route in app.routes:
        if isinstance(route, Route) and route.path.startswith("/_sim/"):
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
            found |= {f"{method} {path}" for method in route.methods or () if method != "HEAD"}
    return found


@pytest.mark.parametrize("kind", sorted(SIMULATORS))
def test_the_readme_lists_each_simulator_s_control_endpoints(kind: str) -> None:
    listed = table(simulators_section(), f"{kind} simulator", "body", "what it does")
    assert set(listed) == control_endpoints(kind)


def test_the_readme_s_commands_start_the_simulators_alone() -> None:
    """Each command of the section serves its simulator (on a free port here), which takes
    the credentials it was given."""
    commands = re.findall(r"^\.venv/bin/python (-m \S+ .*)$", simulators_section(), re.MULTILINE)
    assert len(commands) == len(SIMULATORS), commands
    for command in commands:
        words = shlex.split(command)
        kind = next(k for k, module in SIMULATORS.items() if words[1] == module)
        port = free_port()
        words[words.index("--port") + 1] = str(port)
        path, header, option = API_CHECK[kind]
        secret = words[words.index(option) + 1]
        process = subprocess.Popen(
            [sys.executable, *words],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    answered = httpx.get(url + path, headers={header: secret}, timeout=2)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, f"{command} ended: {process.returncode}"
                    assert time.monotonic() < deadline, f"{command} does not answer"
                    time.sleep(0.1)
            assert answered.status_code == 200, answered.text
            refused = httpx.get(url + path, headers={header: "not-" + secret}, timeout=2)
            assert refused.status_code == 401, refused.text
        finally:
            process.terminate()
            process.wait(timeout=20)


def test_the_mutations_the_simulators_section_shows_fit_the_schema() -> None:
    schema = build_schema((ROOT / "schema.graphql").read_text(encoding="utf-8"))
    text = " ".join(simulators_section().split())
    calls = re.findall(r"`((?:connectStore|authoriseThirdPartyWarehouse)\(input: \{.*?\}\))`", text)
    assert len(calls) == 2, calls
    for call in calls:
        errors = validate(schema, parse(f"mutation {{ {call} {{ userErrors {{ code }} }} }}"))
        assert not errors, (call, errors)
