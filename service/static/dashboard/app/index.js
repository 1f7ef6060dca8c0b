// The live operations dashboard (served at /dashboard by every instance). It signs in with an
// API token kept in this tab's sessionStorage, reads over POST /graphql and follows changes
// over graphql-transport-ws, both on this page's own origin: the public API only.

import {
  ApiError,
  BREACH_CHANGES,
  ME,
  Numbers,
  ORDER_CHANGES,
  ORDERS_UPDATED_SINCE,
  RETURN_CHANGES,
  WITHDRAWAL_CHANGES,
  WITHDRAWALS,
  graphql,
  mutationsAllowed,
} from "./api.js";
import { TodayChart, startOfTodayUtc } from "./chart.js";
import { byId, debounce, humanise, setText } from "./dom.js";
import { Live } from "./live.js";
import { BreachesPanel, Feed, OrdersPanel, ReturnsPanel, WithdrawalsPanel } from "./panels.js";

const TOKEN_KEY = "supplygraph.dashboard.token";
const CHART_PAGES = 3; // at most 300 orders and 300 withdrawals read for the chart
const CONNECTION_LABELS = {
  connecting: "Connecting…",
  connected: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  refused: "Token refused",
  "signed-out": "Signed out",
};

function showConnection(state) {
  const el = byId("connection");
  el.dataset.state = state;
  setText(el.querySelector(".label"), CONNECTION_LABELS[state] ?? state);
}

/** Everything shown for one signed-in token; `close()` forgets it all. */
class Session {
  constructor(token, me, { onRefused }) {
    this.token = token;
    this.me = me;
    this.onRefused = onRefused;
    this.closed = false;
  }

  async open() {
    const { me, token } = this;
    setText(byId("org-name"), me.organisation.name);
    setText(byId("org-kind"), humanise(me.organisation.kind));
    byId("org-kind").dataset.kind = me.organisation.kind;
    setText(byId("user-name"), me.user.name);
    setText(byId("user-role"), me.user.role);
    byId("user-role").dataset.role = me.user.role;
    byId("identity").hidden = false;
    byId("sign-in").hidden = true;
    byId("board").hidden = false;

    let allowed = new Set();
    try {
      allowed = await mutationsAllowed(token, me, [
        "retryWithdrawal",
        "convertWithdrawalToReturn",
        "closeWithdrawal",
      ]);
    } catch {
      // without the schema's word on who may call them, no action is offered
    }
    if (this.closed) return;
    const ctx = { token, me, numbers: new Numbers(token), allowed, active: () => !this.closed };
    this.orders = new OrdersPanel(ctx);
    this.withdrawals = new WithdrawalsPanel(ctx);
    this.returns = new ReturnsPanel(ctx);
    this.breaches = new BreachesPanel(ctx);
    this.feed = new Feed(ctx);
    this.chart = new TodayChart(byId("chart"), { onNewDay: () => this.loadChart() });
    this.refreshAll = debounce(() => this.load(), 100);
    this.dayTimer = setInterval(() => this.chart.render(), 60_000);

    // Subscribe first, then read: a change made in between is both in what is read and in an
    // event, and applying it twice shows the same thing.
    this.live = new Live({
      token,
      onState: (state) => !this.closed && showConnection(state),
      onResume: () => this.refreshAll(),
      onRefused: () => this.onRefused(),
    });
    this.live.stream({
      query: ORDER_CHANGES,
      field: "orderStatusChanged",
      onEvent: (change, sequence) => {
        this.feed.add("order", change, sequence);
        this.orders.changed(change);
        this.chart.orderChanged(change.orderId, change.toStatus, change.at);
      },
    });
    this.live.stream({
      query: WITHDRAWAL_CHANGES,
      field: "withdrawalStatusChanged",
      onEvent: (change, sequence) => {
        this.feed.add("withdrawal", change, sequence);
        this.withdrawals.changed(change);
        this.chart.withdrawalChanged(change.withdrawalId, change.status, change.at);
      },
    });
    this.live.stream({
      query: RETURN_CHANGES,
      field: "returnStatusChanged",
      onEvent: (change, sequence) => {
        this.feed.add("return", change, sequence);
        this.returns.changed(change);
        // a withdraw converted to a return is resolved without an event of its own
        this.withdrawals.refresh();
      },
    });
    this.live.stream({
      query: BREACH_CHANGES,
      field: "slaBreachChanged",
      onEvent: (change, sequence) => {
        this.feed.add("sla", change, sequence);
        this.breaches.changed(change);
      },
    });
    await this.load();
  }

  async load() {
    if (this.closed) return;
    await Promise.all([
      this.orders.load(),
      this.withdrawals.load(),
      this.returns.load(),
      this.breaches.load(),
      this.loadChart(),
    ]);
  }

  async loadChart() {
    const from = startOfTodayUtc();
    try {
      const orders = [];
      let after = null;
      for (let page = 0; page < CHART_PAGES; page++) {
        const data = await graphql(this.token, ORDERS_UPDATED_SINCE, { from, after });
        orders.push(...data.orders.edges.map((e) => e.node));
        if (!data.orders.pageInfo.hasNextPage) break;
        after = data.orders.pageInfo.endCursor;
      }
      const withdrawals = [];
      after = null;
      for (let page = 0; page < CHART_PAGES; page++) {
        const data = await graphql(this.token, WITHDRAWALS, { first: 100, after });
        const nodes = data.withdrawals.nodes;
        withdrawals.push(...nodes.filter((w) => w.updatedAt >= from));
        // newest first: once a page reaches before today, the rest is older still
        if (!data.withdrawals.pageInfo.hasNextPage || nodes.some((w) => w.createdAt < from)) break;
        after = data.withdrawals.pageInfo.endCursor;
      }
      if (this.closed) return;
      this.chart.setOrders(orders);
      this.chart.setWithdrawals(withdrawals);
    } catch {
      this.chart.render(); // what it has; the next change or reconnect reads again
    }
  }

  close() {
    this.closed = true;
    this.live?.dispose();
    this.refreshAll?.cancel();
    clearInterval(this.dayTimer);
  }
}

let session = null;

function resetPage() {
  for (const id of ["tabs", "orders", "timeline", "breaches", "withdrawals", "returns", "chart", "feed"]) {
    byId(id).replaceChildren();
  }
  for (const el of document.querySelectorAll(".panel-error")) el.remove();
  byId("order-detail").hidden = true;
  for (const id of ["breaches-empty", "withdrawals-empty", "returns-empty", "feed-empty"]) {
    byId(id).hidden = false;
  }
  byId("orders-empty").hidden = true;
  setText(byId("breach-count"), "0");
  byId("board").hidden = true;
  byId("identity").hidden = true;
  byId("sign-in").hidden = false;
}

function signOut(message = null) {
  session?.close();
  session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  resetPage();
  showConnection("signed-out");
  const error = byId("sign-in-error");
  error.hidden = !message;
  setText(error, message ?? "");
  byId("token").value = "";
  byId("token").focus();
}

async function signIn(token) {
  const error = byId("sign-in-error");
  error.hidden = true;
  showConnection("connecting");
  let me;
  try {
    me = (await graphql(token, ME)).me;
  } catch (failure) {
    const refused = failure instanceof ApiError && failure.code === "UNAUTHENTICATED";
    signOut(refused ? "That token was not accepted." : failure.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  session?.close();
  session = new Session(token, me, {
    onRefused: () => signOut("The server no longer accepts this token: sign in again."),
  });
  await session.open();
}

byId("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = byId("token").value.trim();
  if (token) signIn(token);
});
byId("sign-out").addEventListener("click", () => signOut());

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
else showConnection("signed-out");
document.documentElement.dataset.ready = "true";
