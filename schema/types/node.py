"""The ``Node`` interface: every object with an identity, fetchable again by its id."""

from __future__ import annotations

import strawberry


@strawberry.interface(
    description="An object with a global id. `node(id:)` and `nodes(ids:)` fetch any of them "
    "again; a normalised client cache (Apollo, Relay, urql) keys them by `id` alone."
)
class Node:
    id: strawberry.ID = strawberry.field(
        description="Globally unique and opaque, in the form `gid://supplygraph/<Type>/<key>`."
    )
