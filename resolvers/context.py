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
    _loaders: Loaders | None = field(default=None, repr=False)

    @property
    def loaders(self) -> Loaders:
        """The DataLoaders of the current viewer, made on first use (an idle WebSocket or a
        request that loads nothing never pays for them)."""
        if self._loaders is None:
            self._loaders = Loaders(self.viewer)
        return self._loaders

    def fresh_loaders(self) -> None:
        """Forget loaded objects (each request, and each subscription event): the next use
        makes new loaders for the current viewer, so nothing goes stale."""
        self._loaders = None
