"""No answer tells one tenant about another (issue 19, "no oracles").

- ``addUser``: an e-mail is unique within an organisation only. Adding an address another
  organisation uses answers exactly as a brand-new address does; the same address twice in one
  organisation is ALREADY_EXISTS (the caller's own organisation: nothing learnt). The operator's
  look-ups by e-mail (``create-token``, the demo's owners) are scoped too.
- ``topUpWallet``: a supplier tops up only buyers it trades with (an ACCEPTED partnership or an
  order of any status between them, ``domain.trading``). Any other id, a buyer's or not, gets
  the answer an unknown id gets, byte for byte, whatever the currency; a malformed currency is
  refused before the buyer is looked at; CURRENCY_MISMATCH only for a trading party.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from domain.orders.models import Order, OrderStatus
from domain.payments.models import Wallet
from domain.persistence import trading as persisted_trading
from domain.trading import trades_with
from schema.global_ids import gid
from service import demo
from service.settings import Settings
from tests.conftest import ROOT, MakeMember, Member
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.support.services import postgres_url
from tests.support.trading import partner
from tests.test_order_flow import ok, supplier_catalogue

# ---------------------------------------------------------------------------- addUser

ADD_USER = """mutation($e: String!) { addUser(input: {email: $e, name: "Bob", role: STAFF}) {
  user { id email name role isActive createdAt } userErrors { code field message } } }"""


def _normalised(body: dict[str, Any]) -> dict[str, Any]:
    """The answer with what differs between two users anyway (id, e-mail, time) blanked."""
    user = (body.get("data") or {}).get("addUser", {}).get("user")
    if user is not None:
        user.update(id="<id>", email="<email>", createdAt="<time>")
    return body


async def test_an_email_used_by_another_organisation_is_added_like_a_new_one(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    admin_a = await make_member("BUYER", role="ADMIN")
    admin_b = await make_member("BUYER", role="ADMIN")
    bob = f"bob-{uuid.uuid4().hex[:10]}@x.test"
    fresh = f"new-{uuid.uuid4().hex[:10]}@x.test"

    in_a = await client.post(ADD_USER, {"e": bob}, token=admin_a.token)
    assert in_a["data"]["addUser"]["userErrors"] == [], in_a
    used_elsewhere = await client.post(ADD_USER, {"e": bob}, token=admin_b.token)
    brand_new = await client.post(ADD_USER, {"e": fresh}, token=admin_b.token)

    assert used_elsewhere["data"]["addUser"]["user"]["email"] == bob
    assert _normalised(used_elsewhere) == _normalised(brand_new)
    assert used_elsewhere["data"]["addUser"]["userErrors"] == []

    # the same address twice in one organisation: the caller's own, so nothing is learnt
    for admin in (admin_b, admin_a):
        again = await client.post(ADD_USER, {"e": bob.upper()}, token=admin.token)
        assert again == {
            "data": {
                "addUser": {
                    "user": None,
                    "userErrors": [
                        {
                            "code": "ALREADY_EXISTS",
                            "field": "input.email",
                            "message": "A user of this organisation already has this e-mail.",
                        }
                    ],
                }
            }
        }, again
    # each organisation lists its own Bob only
    for admin in (admin_a, admin_b):
        users = await client.data("{ users { nodes { email } } }", token=admin.token)
        assert [u["email"] for u in users["users"]["nodes"]].count(bob) == 1


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "SECRETS_KEY": settings.secrets_key,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_create_token_asks_which_organisation_when_several_use_the_email(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    base_settings: Settings,
) -> None:
    admin_a = await make_member("BUYER", role="ADMIN")
    admin_b = await make_member("SUPPLIER", role="ADMIN")
    carol = f"carol-{uuid.uuid4().hex[:10]}@x.test"
    for admin in (admin_a, admin_b):
        await ok(client, ADD_USER, {"e": carol}, token=admin.token)

    both = await asyncio.to_thread(_cli, base_settings, "create-token", "--email", carol)
    assert both.returncode != 0
    ids = sorted((admin_a.organisation_id, admin_b.organisation_id))
    assert f"2 users have the e-mail {carol!r} (organisations {ids[0]}, {ids[1]})" in both.stderr
    assert "--organisation" in both.stderr

    org = str(admin_b.organisation_id)
    issued = await asyncio.to_thread(
        _cli, base_settings, "create-token", "--email", carol.upper(), "--organisation", org
    )
    assert issued.returncode == 0, issued.stderr
    me = await client.data(
        "{ me { user { email } organisation { id } } }", token=issued.stdout.strip()
    )
    assert me["me"] == {"user": {"email": carol}, "organisation": {"id": admin_b.gid}}

    nowhere = await asyncio.to_thread(
        _cli, base_settings, "create-token", "--email", carol, "--organisation", "2147483647"
    )
    assert nowhere.returncode != 0
    assert f"no user with e-mail {carol!r} in organisation 2147483647" in nowhere.stderr


async def test_a_tenant_user_with_a_demo_address_is_never_taken_for_the_demo_owner(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """``seed-demo`` and ``simulate`` print tokens for the demo owners: a user a tenant adds
    with a demo address (which it may: the address is another organisation's) is not one."""
    before = await demo.owner_of(demo.SELLER)
    tenant = await make_member("BUYER", role="OWNER")
    added = await ok(client, ADD_USER, {"e": demo.SELLER.email}, token=tenant.token)
    assert added["user"]["email"] == demo.SELLER.email
    after = await demo.owner_of(demo.SELLER)
    assert (after and after.id) == (before and before.id)
    assert after is None or after.organisation_id != tenant.organisation_id


# ---------------------------------------------------------------------------- topUpWallet

TOP_UP = """mutation($b: ID!, $c: String!) { topUpWallet(buyerId: $b, amount: "10.00",
  currency: $c, note: "hello from a stranger") {
  wallet { id buyerId supplierId balance currency } userErrors { code field message } } }"""
UNKNOWN = gid("Organisation", 2**31 - 1)  # an id no organisation has
MANUAL_ORDER = """mutation($k: ID!, $m: ID!) { createManualOrder(input: {lines: [{skuId: $k,
  quantity: 1}], logisticsMethodId: $m, shippingAddress: {name: "Ann", address1: "1 High St",
  city: "London", zip: "N1", countryCode: "GB"}}) { order { id } userErrors { code message } } }"""
CANCEL = """mutation($o: ID!) { cancelOrders(orderIds: [$o], reason: "changed my mind") {
  userErrors { code message } } }"""


async def _raw_top_up(client: GraphQLHttp, supplier: Member, buyer: str, currency: str) -> bytes:
    """The whole HTTP answer's body, as sent."""
    response = await client.http.post(
        "/graphql",
        json={"query": TOP_UP, "variables": {"b": buyer, "c": currency}},
        headers={"authorization": f"Bearer {supplier.token}"},
    )
    assert response.status_code == 200, response.text
    return response.content


async def _order(client: GraphQLHttp, buyer: Member, catalogue: dict[str, Any]) -> str:
    made = await ok(
        client,
        MANUAL_ORDER,
        {"k": catalogue["skus"]["TEE-R-M"], "m": catalogue["method"]},
        token=buyer.token,
    )
    return made["order"]["id"]


async def test_a_buyer_the_supplier_does_not_trade_with_answers_as_an_unknown_id(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, other_supplier = await make_member("SUPPLIER"), await make_member("SUPPLIER")
    stranger, applicant = await make_member("BUYER"), await make_member("BUYER")
    catalogue = await supplier_catalogue(client, other_supplier)
    await _order(client, stranger, catalogue)  # it trades, but with another supplier
    await ok(  # a PENDING application is no partnership yet
        client,
        "mutation($s: ID!) { applyForPartnership(supplierId: $s) { userErrors { code } } }",
        {"s": supplier.gid},
        token=applicant.token,
    )

    for currency in ("USD", "XYZ", "usd", " EUR "):  # valid, unknown, either case, spaced
        unknown = await _raw_top_up(client, supplier, UNKNOWN, currency)
        assert json.loads(unknown) == {
            "data": {
                "topUpWallet": {
                    "wallet": None,
                    "userErrors": [
                        {"code": "NOT_FOUND", "field": "buyerId", "message": "Buyer not found."}
                    ],
                }
            }
        }
        for buyer in (stranger, applicant, other_supplier, supplier):  # buyers or not
            assert await _raw_top_up(client, supplier, buyer.gid, currency) == unknown, (
                currency,
                buyer,
            )
    # a malformed currency is refused first, the same way whoever the buyer is
    for currency in ("dollars", "", "U$D", "12"):
        malformed = await _raw_top_up(client, supplier, UNKNOWN, currency)
        assert json.loads(malformed)["data"]["topUpWallet"]["userErrors"] == [
            {"code": "INVALID", "field": "currency", "message": "A three-letter ISO 4217 code."}
        ]
        for buyer in (stranger, applicant, other_supplier):
            assert await _raw_top_up(client, supplier, buyer.gid, currency) == malformed
    # nothing was written: no wallet with the supplier, no event for the buyers
    for buyer in (stranger, applicant):
        assert not await Wallet.exists(
            buyer_id=buyer.organisation_id, supplier_id=supplier.organisation_id
        )
        events = await client.data(
            "{ events(types: [WALLET_CHANGED]) { edges { node { id } } } }", token=buyer.token
        )
        assert events["events"]["edges"] == []


async def test_a_trading_party_is_topped_up_and_told_a_currency_mismatch(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier = await make_member("SUPPLIER")
    ordering, cancelled, partnered = [await make_member("BUYER") for _ in range(3)]
    catalogue = await supplier_catalogue(client, supplier)
    await _order(client, ordering, catalogue)
    order = await _order(client, cancelled, catalogue)
    await ok(client, CANCEL, {"o": order}, token=cancelled.token)  # any status counts
    await partner(client, supplier, partnered)  # no order at all

    for buyer in (ordering, cancelled, partnered):
        made = json.loads(await _raw_top_up(client, supplier, buyer.gid, "usd"))
        payload = made["data"]["topUpWallet"]
        assert payload["userErrors"] == [], made
        assert payload["wallet"]["buyerId"] == buyer.gid
        assert (payload["wallet"]["balance"], payload["wallet"]["currency"]) == ("10.00", "USD")
        mismatch = json.loads(await _raw_top_up(client, supplier, buyer.gid, "EUR"))
        assert mismatch["data"]["topUpWallet"] == {
            "wallet": None,
            "userErrors": [
                {
                    "code": "CURRENCY_MISMATCH",
                    "field": "currency",
                    "message": "This wallet is in USD.",
                }
            ],
        }
        wallets = await client.data(
            "{ wallets { nodes { supplierId balance } } }", token=buyer.token
        )
        assert wallets["wallets"]["nodes"] == [{"supplierId": supplier.gid, "balance": "10.00"}]


async def test_trades_with_is_the_partnership_or_an_order_between_the_two(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, other = await make_member("SUPPLIER"), await make_member("SUPPLIER")
    buyer, rejected = await make_member("BUYER"), await make_member("BUYER")
    s, o, b = supplier.organisation_id, other.organisation_id, buyer.organisation_id

    assert not await trades_with(supplier_id=s, buyer_id=b)
    applied = await ok(
        client,
        "mutation($s: ID!) { applyForPartnership(supplierId: $s) { partnership { id } userErrors { code } } }",
        {"s": supplier.gid},
        token=rejected.token,
    )
    await ok(
        client,
        "mutation($p: ID!) { decidePartnership(partnershipId: $p, accept: false) { userErrors { code } } }",
        {"p": applied["partnership"]["id"]},
        token=supplier.token,
    )
    assert not await trades_with(supplier_id=s, buyer_id=rejected.organisation_id)

    catalogue = await supplier_catalogue(client, other)
    await _order(client, buyer, catalogue)
    assert await trades_with(supplier_id=o, buyer_id=b)
    assert not await trades_with(supplier_id=s, buyer_id=b)  # the order is the other's
    assert not await trades_with(supplier_id=b, buyer_id=o)  # not the other way round
    for key in (0, -1, 2**31, 2**63 - 1):  # ids no row can have
        assert not await trades_with(supplier_id=o, buyer_id=key)
        assert not await trades_with(supplier_id=key, buyer_id=b)
    [order] = await Order.filter(buyer_id=b, supplier_id=o)
    assert order.status is OrderStatus.AWAITING_PAYMENT


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _plan_nodes(child)
    return found


@pytest.mark.skipif(postgres_url() is None, reason="EXPLAIN needs PostgreSQL")
async def test_trades_with_is_one_statement_of_index_seeks(
    server: RunningServer, make_member: MakeMember
) -> None:
    """The statement ``trades_with`` sends, planned with sequential scans priced out (the
    planner then takes an index whenever one can serve): each EXISTS seeks an index. Orders by
    the pair, both columns in the index condition (a supplier may have millions of orders, a
    buyer many: only ``(supplier_id, buyer_id)`` bounds the seek by the pair's own rows);
    partnerships through the buyer at least (the pair's unique index, or the distributor's,
    which holds a handful)."""
    from tortoise.transactions import in_transaction

    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    sql = persisted_trading._sql("postgres")
    args = [supplier.organisation_id, buyer.organisation_id, "ACCEPTED"] * 2
    async with in_transaction() as tx:
        await tx.execute_query("SET LOCAL enable_seqscan = off")
        _, rows = await tx.execute_query(f"EXPLAIN (FORMAT JSON) {sql}", args[:5])
    raw = rows[0]["QUERY PLAN"]
    [plan] = json.loads(raw) if isinstance(raw, str) else raw
    nodes = _plan_nodes(plan["Plan"])
    scans = {n["Relation Name"]: n for n in nodes if "Relation Name" in n}
    assert set(scans) == {"partnership", "supply_order"}, nodes
    partnership, orders = scans["partnership"], scans["supply_order"]
    for scan in (partnership, orders):
        assert scan["Node Type"] in {"Index Scan", "Index Only Scan"}, scan
    assert "distributor_id" in partnership["Index Cond"], partnership
    assert "supplier_id" in orders["Index Cond"] and "buyer_id" in orders["Index Cond"], orders
    assert "Filter" not in orders, orders
