"""What a client selected below a field, as a tree of field names (aliases and fragments merged).

List resolvers read it to load, in bulk and ahead of time, the children a page will ask for.
Directives (``@skip``/``@include``) are ignored: at worst something is loaded and not shown.
"""

from __future__ import annotations

from collections.abc import Iterable

from strawberry import Info
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

Tree = dict[str, "Tree"]


def _merge(into: Tree, selections: Iterable[Selection]) -> Tree:
    for selection in selections:
        if isinstance(selection, SelectedField):
            _merge(into.setdefault(selection.name, {}), selection.selections)
        elif isinstance(selection, FragmentSpread | InlineFragment):
            _merge(into, selection.selections)
    return into


def selected(info: Info, *path: str) -> Tree:
    """Field names selected below the current field, then below ``path`` (e.g. edges, node)."""
    tree: Tree = {}
    for field in info.selected_fields:
        _merge(tree, field.selections)
    for name in path:
        tree = tree.get(name, {})
    return tree
