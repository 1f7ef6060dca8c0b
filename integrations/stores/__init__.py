"""Buyers' online stores (Shopify-like): wire format, API client, and a local simulator.

``protocol`` parses and signs the wire format, ``client.StoreClient`` calls a store's API,
``simulator.create_store_simulator`` is a store platform for tests and the demo.
"""

from integrations.stores.client import StoreApiError, StoreClient
from integrations.stores.protocol import StorePayloadError, parse_order, parse_product, sign, verify

__all__ = [
    "StoreApiError",
    "StoreClient",
    "StorePayloadError",
    "parse_order",
    "parse_product",
    "sign",
    "verify",
]
