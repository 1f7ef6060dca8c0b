"""What every resolver receives as ``info.context``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from domain.access import Viewer
from resolvers.loaders import Loaders

if TYPE_CHECKING:
    from integrations.bus.hub import EventHub


@dataclass
class Context:
    request: Any
    response: Any
    request_id: str
    hub: EventHub
    viewer: Viewer | None = None
    auth_problem: str | None = None
    connection_params: dict[str, Any] | None = None
    loaders: Loaders = field(default_factory=lambda: Loaders(None))

    def fresh_loaders(self) -> Loaders:
        """New loaders for the current viewer (each request, and each subscription event)."""
        self.loaders = Loaders(self.viewer)
        return self.loaders
