"""What every resolver receives as ``info.context``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from domain.access import Viewer

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
    loaders: dict[str, Any] = field(default_factory=dict)
