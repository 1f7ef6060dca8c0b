"""Event bus: broadcast channels (in-memory or Redis) for GraphQL subscriptions."""

from integrations.bus.broadcast import (
    RESYNC,
    RedisPubSubBackend,
    SafeBroadcast,
    Subscriber,
    Unsubscribed,
    create_broadcast,
)

__all__ = [
    "RESYNC",
    "RedisPubSubBackend",
    "SafeBroadcast",
    "Subscriber",
    "Unsubscribed",
    "create_broadcast",
]
