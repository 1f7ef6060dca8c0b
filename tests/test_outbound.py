"""Calls to stores and warehouses build no TLS context of their own: building one blocks the
event loop (and every live delivery) for about 20 ms, so the process builds one at start-up."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from integrations import outbound
from integrations.stores.client import StoreClient
from integrations.warehouses.client import WarehouseClient
from integrations.warehouses.worker import WarehouseWorker, WorkerSettings


@pytest.fixture
def contexts_built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    built: list[Any] = []
    original = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(args or kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return built


async def test_clients_of_stores_and_warehouses_share_the_process_context(
    contexts_built: list[Any],
) -> None:
    outbound.tls_context()  # built at start-up
    contexts_built.clear()
    for _ in range(3):
        async with StoreClient(base_url="https://shop.example", access_token="t"):
            pass
        async with WarehouseClient(base_url="https://wh.example", api_key="k"):
            pass
    worker = WarehouseWorker(WorkerSettings())
    worker._client(type("Connection", (), {"api_url": "https://wh.example", "api_key": "k"})())
    await worker.stop()
    assert contexts_built == []


async def test_the_process_context_is_built_once_and_verifies(contexts_built: list[Any]) -> None:
    outbound.tls_context.cache_clear()
    first = outbound.tls_context()
    assert outbound.tls_context() is first and len(contexts_built) == 1
    assert first.verify_mode is ssl.CERT_REQUIRED and first.check_hostname
