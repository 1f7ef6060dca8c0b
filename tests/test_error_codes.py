"""The error codes a client can get are one list: ``domain.errors.ErrorCode`` with its
``MEANINGS`` for ``userErrors``, ``schema.error_codes.TOP_LEVEL_CODES`` for top-level errors.
Every code the service answers with is on it, and the README's tables are what it prints."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from domain.errors import MEANINGS, ErrorCode
from schema.error_codes import TOP_LEVEL_CODES, markdown
from service import cli
from service.graphql_http import STATUS_CODES
from service.limits.throttle import MAX_COST_EXCEEDED, THROTTLED
from service.persisted_documents import NOT_FOUND, NOT_IN_LIST

ROOT = Path(__file__).resolve().parent.parent
# how the service spells a top-level code it answers with
ANSWERED = (
    re.compile(r'"code":\s*"([A-Z_]+)"'),
    re.compile(r'\bcode="([A-Z_]+)"'),
    re.compile(r'PersistedDocumentError\(\s*"([A-Z_]+)"'),
)
CLASSIFIED = re.compile(r'^\s+return "([A-Z_]+)"$', re.MULTILINE)  # schema/build.py's _code_of


def test_every_user_error_code_has_a_meaning() -> None:
    assert list(MEANINGS) == list(ErrorCode)
    assert all(meaning.endswith(".") for meaning in MEANINGS.values())


def test_every_top_level_code_the_service_answers_is_listed() -> None:
    answered: dict[str, str] = {}
    for package in ("service", "schema", "resolvers"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for pattern in ANSWERED:
                for code in pattern.findall(text):
                    answered.setdefault(code, str(path.relative_to(ROOT)))
    classified = (ROOT / "schema" / "build.py").read_text(encoding="utf-8")
    answered.update({code: "schema/build.py" for code in CLASSIFIED.findall(classified)})
    answered.update(
        {code: "service/graphql_http.py" for code in STATUS_CODES.values()}
        | {code: "a constant" for code in (MAX_COST_EXCEEDED, THROTTLED, NOT_FOUND, NOT_IN_LIST)}
    )
    assert len(answered) >= 15  # the patterns still find what they look for
    unlisted = {
        code: where
        for code, where in answered.items()
        if code not in TOP_LEVEL_CODES and code not in ErrorCode.__members__
    }
    assert unlisted == {}, "add them to schema/error_codes.py"
    never_answered = set(TOP_LEVEL_CODES) - set(answered)
    assert never_answered == set(), "codes listed that nothing answers"


def test_the_readme_tables_are_what_error_codes_prints() -> None:
    printed = CliRunner().invoke(cli.app, ["error-codes"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.splitlines() == markdown()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Error codes\n", 1)[1].split("\n## ", 1)[0]
    start = section.index("| `userErrors` code | Meaning |")
    assert section[start:].rstrip("\n").splitlines() == markdown()
