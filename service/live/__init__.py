"""Live GraphQL over WebSockets: graphql-transport-ws served with multiplexed subscriptions.

``endpoint`` is the ASGI endpoint, ``session`` one socket's protocol, ``connection`` the
socket's operations and sends, ``multiplexer`` the groups sharing one execution, ``protocol``
the messages and frames.
"""

from service.live.endpoint import LiveEndpoint
from service.live.multiplexer import Multiplexer

__all__ = ["LiveEndpoint", "Multiplexer"]
