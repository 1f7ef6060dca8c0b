"""The layers' import rules, checked on the source (every import: module level, in functions,
under ``TYPE_CHECKING``; ``from domain import x`` imports ``domain.x``).

- ``domain/`` has no import cycle among its modules (imports only for type checkers, under
  ``if TYPE_CHECKING:``, are not run and may point back), and imports nothing from
  ``resolvers/``, ``schema/``, ``service/`` or ``integrations/``;
- ``resolvers/`` and ``schema/`` import no ``integrations`` module: what they need of the
  integrations reaches them through the request context, filled by ``service/``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("domain", "integrations", "resolvers", "schema", "service", "compat")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.relative_to(ROOT).parts:
            continue
        yield _module_name(path), path


def _known_modules() -> set[str]:
    return {name for package in PACKAGES for name, _ in _sources(package)}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            inside.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return inside


def imports_of(module: str, path: Path, known: set[str], *, typing: bool = True) -> set[str]:
    """The first-party modules ``module`` imports anywhere in its source (``typing=False``:
    not counting imports under ``if TYPE_CHECKING:``)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = set() if typing else _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = module.split(".")
                if not is_package:
                    base_parts = base_parts[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            # ``from domain import stock``: the submodule domain.stock.commands
            found.update(
                f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known
            )
    return {name for name in found if name.split(".")[0] in PACKAGES and name != module}


def _graph(package: str, *, typing: bool = True) -> dict[str, set[str]]:
    known = _known_modules()
    return {name: imports_of(name, path, known, typing=typing) for name, path in _sources(package)}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the graph's own modules, or None."""
    inside = {name: {m for m in targets if m in graph} for name, targets in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(inside[name]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(inside):
        if name not in state and (found := visit(name)) is not None:
            return found
    return None


def _offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {target}"
        for module, targets in sorted(_graph(package).items())
        for target in sorted(targets)
        if target.split(".")[0] in forbidden
    ]


def test_the_import_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import domain.db\n"
        "from domain import limits, errors\n"
        "from .events import EventType\n"
        "if TYPE_CHECKING:\n"
        "    from integrations.bus.hub import EventHub\n"
        "def later():\n"
        "    from resolvers.context import Context\n"
    )
    known = {"domain.limits", "domain.errors"}
    everything = {
        "domain",
        "domain.db",
        "domain.limits",
        "domain.errors",
        "domain.events",
        "integrations.bus.hub",
        "resolvers.context",
    }
    assert imports_of("domain.example", source, known) == everything
    run = imports_of("domain.example", source, known, typing=False)
    assert run == everything - {"integrations.bus.hub"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_domain_modules_import_each_other_without_a_cycle() -> None:
    cycle = _cycle(_graph("domain", typing=False))
    assert cycle is None, "import cycle in domain/: " + " -> ".join(cycle or [])


def test_domain_imports_no_outer_layer() -> None:
    assert _offending("domain", ("resolvers", "schema", "service", "integrations")) == []


def test_resolvers_and_schema_import_no_integration() -> None:
    assert _offending("resolvers", ("integrations",)) == []
    assert _offending("schema", ("integrations",)) == []


def test_resolvers_take_what_they_need_from_the_context_not_the_application() -> None:
    """No ``request.app.state`` reach-ins: settings and background workers are the service's
    (``info.context.services``; background work is woken by commit-listener topics)."""
    reach_ins = [
        f"{name}:{line_no}"
        for package in ("resolvers", "schema")
        for name, path in _sources(package)
        for line_no, line in enumerate(path.read_text().splitlines(), 1)
        if "app.state" in line
    ]
    assert reach_ins == []
