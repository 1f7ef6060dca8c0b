// The dashboard's panels. Each one shows what the API answers and follows the subscription
// events that concern it: small changes are applied at once from the event, and the list is
// then read again (debounced) so that it always ends up as the server has it.

import {
  CLOSE_WITHDRAWAL,
  CONVERT_WITHDRAWAL,
  OPEN_BREACHES,
  ORDER,
  ORDER_COUNTS,
  ORDERS,
  RETRY_WITHDRAWAL,
  RETURNS,
  WITHDRAWALS,
  graphql,
} from "./api.js";
import { STATUSES } from "./chart.js";
import {
  byId,
  debounce,
  h,
  humanise,
  latestOnly,
  setText,
  statusBadge,
  syncList,
  timeEl,
  when,
} from "./dom.js";

const REFRESH_MS = 60;
const TAB_KEY = "supplygraph.dashboard.tab";

/** An element showing an order's (or return's) number, filled in once it is known. */
function numberEl(numbers, id, fallback = "…") {
  const el = h("span", { class: "number", dataset: { id } });
  const known = numbers.lookup(id, (number) => setText(el, number));
  setText(el, known ?? fallback);
  return el;
}

function panelError(panel) {
  let el = panel.querySelector(":scope > .panel-error");
  if (!el) {
    el = h("p", { class: "panel-error error", role: "alert", hidden: true });
    panel.querySelector(":scope > h2").after(el);
  }
  return (message) => {
    el.hidden = !message;
    setText(el, message ?? "");
  };
}

/** Run `load`, showing its failure in the panel (and clearing an earlier one). */
function guarded(showError, load) {
  return async (...args) => {
    try {
      const value = await load(...args);
      showError(null);
      return value;
    } catch (error) {
      showError(error.message);
      return null;
    }
  };
}

// --- orders: status tabs with counts, the selected tab's orders, an order's timeline ----------

export class OrdersPanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.tabs = byId("tabs");
    this.list = byId("orders");
    this.empty = byId("orders-empty");
    this.detail = byId("order-detail");
    this.selected = sessionStorage.getItem(TAB_KEY) ?? "AWAITING_SHIPPING";
    this.openId = null;
    const showError = panelError(byId("orders-panel"));
    const token = ctx.token;

    this.buildTabs();
    this.loadCounts = guarded(
      showError,
      latestOnly(
        () => graphql(token, ORDER_COUNTS),
        (data) => this.showCounts(data.orderCounts),
        ctx.active,
      ),
    );
    this.loadList = guarded(
      showError,
      latestOnly(
        (status) => graphql(token, ORDERS, { statuses: [status] }),
        (data) => this.showList(data.orders.edges.map((e) => e.node)),
        ctx.active,
      ),
    );
    this.loadDetail = guarded(
      showError,
      latestOnly(
        (id) => graphql(token, ORDER, { id }),
        (data) => this.showDetail(data.order),
        ctx.active,
      ),
    );
    this.refreshCounts = debounce(() => this.loadCounts(), REFRESH_MS);
    this.refreshList = debounce(() => this.loadList(this.selected), REFRESH_MS);
    this.refreshDetail = debounce(() => this.openId && this.loadDetail(this.openId), REFRESH_MS);
    byId("detail-close").addEventListener("click", () => this.closeDetail());
  }

  buildTabs() {
    this.tabs.replaceChildren(
      ...STATUSES.map((status) =>
        h(
          "button",
          {
            type: "button",
            role: "tab",
            class: `tab st-${status}`,
            id: `tab-${status}`,
            dataset: { status },
            "aria-selected": String(status === this.selected),
            onclick: () => this.select(status),
          },
          h("span", { class: "tab-label", text: humanise(status) }),
          h("span", { class: "count", dataset: { count: 0 }, text: "0" }),
        ),
      ),
    );
  }

  select(status) {
    this.selected = status;
    sessionStorage.setItem(TAB_KEY, status);
    for (const tab of this.tabs.children) {
      tab.setAttribute("aria-selected", String(tab.dataset.status === status));
    }
    this.list.replaceChildren();
    this.empty.hidden = true;
    this.loadList(status);
  }

  async load() {
    await Promise.all([this.loadCounts(), this.loadList(this.selected), this.refreshDetail()]);
  }

  showCounts(counts) {
    const byStatus = new Map(counts.map((c) => [c.status, c.count]));
    for (const tab of this.tabs.children) {
      const count = tab.querySelector(".count");
      const value = byStatus.get(tab.dataset.status) ?? 0;
      count.dataset.count = value;
      setText(count, value);
    }
  }

  showList(orders) {
    for (const order of orders) this.ctx.numbers.remember(order.id, order.number);
    syncList(
      this.list,
      orders,
      (order) => order.id,
      (order) =>
        h(
          "li",
          { class: "row order", dataset: { orderId: order.id } },
          h(
            "button",
            { type: "button", class: "row-button", onclick: () => this.openDetail(order.id) },
            h("span", { class: "number" }),
            h("span", { class: "slot-status" }),
            h("span", { class: "who" }),
            h("span", { class: "slot-time" }),
          ),
        ),
      (li, order) => {
        li.dataset.status = order.status;
        li.classList.toggle("open", order.id === this.openId);
        setText(li.querySelector(".number"), order.number);
        li.querySelector(".slot-status").replaceChildren(statusBadge(order.status));
        // a supplier's orders come from many buyers; a buyer's are all its own
        const buyer = this.ctx.me.organisation.kind === "SUPPLIER" ? order.buyerName : null;
        const who = [buyer, order.customerName].filter(Boolean).join(" · ");
        setText(li.querySelector(".who"), who);
        li.querySelector(".slot-time").replaceChildren(timeEl(order.updatedAt));
      },
    );
    this.empty.hidden = orders.length > 0;
  }

  openDetail(id) {
    this.openId = id;
    for (const li of this.list.children) li.classList.toggle("open", li.dataset.orderId === id);
    this.loadDetail(id);
  }

  closeDetail() {
    this.openId = null;
    this.detail.hidden = true;
    delete this.detail.dataset.shown;
    for (const li of this.list.children) li.classList.remove("open");
  }

  showDetail(order) {
    if (!order || order.id !== this.openId) return;
    this.ctx.numbers.remember(order.id, order.number);
    this.detail.hidden = false;
    this.detail.dataset.orderId = order.id;
    setText(byId("detail-title"), `Order ${order.number}`);
    const meta = [humanise(order.status), order.buyerName, order.customerName];
    if (order.carrier) meta.push(`${order.carrier} ${order.trackingNumber ?? ""}`.trim());
    setText(byId("detail-meta"), meta.filter(Boolean).join(" · "));
    if (!this.detail.dataset.shown || this.detail.dataset.shown !== order.id) {
      this.detail.dataset.shown = order.id;
      this.detail.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
    byId("timeline").replaceChildren(
      ...order.timeline.map((entry) =>
        h(
          "li",
          { dataset: { to: entry.toStatus } },
          statusBadge(entry.toStatus),
          entry.fromStatus ? h("span", { class: "from", text: `from ${humanise(entry.fromStatus)}` }) : null,
          timeEl(entry.at),
          entry.reason ? h("span", { class: "reason", text: entry.reason }) : null,
        ),
      ),
    );
  }

  /** An orderStatusChanged event. */
  changed(change) {
    this.refreshCounts();
    if (change.fromStatus === this.selected || change.toStatus === this.selected) {
      this.refreshList();
    }
    if (change.orderId === this.openId) this.refreshDetail();
  }
}

// --- withdrawals: the latest withdraw requests, and the ways out of a failed one -------------

const WAYS_OUT = [
  { action: "retry", mutation: "retryWithdrawal", label: "Retry" },
  { action: "convert", mutation: "convertWithdrawalToReturn", label: "Convert to return…" },
  { action: "close", mutation: "closeWithdrawal", label: "Close…" },
];
const RESOLUTIONS = {
  RETRIED: "Retried",
  CONVERTED_TO_RETURN: "Converted to a return",
  CLOSED: "Closed",
};

export class WithdrawalsPanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.list = byId("withdrawals");
    this.empty = byId("withdrawals-empty");
    this.items = [];
    const showError = panelError(byId("withdrawals-panel"));
    this.load = guarded(
      showError,
      latestOnly(
        () => graphql(ctx.token, WITHDRAWALS, { first: 20 }),
        (data) => {
          this.items = data.withdrawals.nodes;
          this.render();
        },
        ctx.active,
      ),
    );
    this.refresh = debounce(() => this.load(), REFRESH_MS);
  }

  /** A withdrawalStatusChanged event: shown at once, then read again. */
  changed(change) {
    let item = this.items.find((w) => w.id === change.withdrawalId);
    if (!item) {
      item = {
        id: change.withdrawalId,
        orderId: change.orderId,
        afterSalesId: change.afterSalesId,
        resolution: null,
        resolutionNote: "",
        failure: null,
      };
      this.items.unshift(item);
    }
    item.status = change.status;
    item.updatedAt = change.at;
    if (change.status === "WITHDRAW_FAILED") item.failure = change.reason || item.failure;
    if (change.resolution) {
      // resolved (retried, closed, converted): its ways out are gone at once
      item.resolution = change.resolution;
      item.resolutionNote = change.resolutionNote || "";
    }
    this.render();
    this.refresh();
  }

  render() {
    syncList(
      this.list,
      this.items,
      (w) => w.id,
      (w) => this.createRow(w),
      (li, w) => this.updateRow(li, w),
    );
    this.empty.hidden = this.items.length > 0;
  }

  createRow(w) {
    const subject = w.orderId
      ? h("span", { class: "subject" }, "Order ", numberEl(this.ctx.numbers, w.orderId))
      : h("span", { class: "subject" }, "Return ", numberEl(this.ctx.numbers, w.afterSalesId));
    return h(
      "li",
      { class: "row withdrawal", dataset: { withdrawalId: w.id, orderId: w.orderId } },
      h("div", { class: "line" }, subject, h("span", { class: "slot-status" }), h("span", { class: "slot-time" })),
      h("p", { class: "failure", hidden: true }),
      h("p", { class: "resolution", hidden: true }),
      h("div", { class: "actions", hidden: true }),
      h("form", { class: "way-out", hidden: true }),
      h("p", { class: "row-error error", role: "alert", hidden: true }),
    );
  }

  updateRow(li, w) {
    li.dataset.status = w.status;
    li.querySelector(".slot-status").replaceChildren(statusBadge(w.status));
    li.querySelector(".slot-time").replaceChildren(timeEl(w.updatedAt));
    const failure = li.querySelector(".failure");
    failure.hidden = !(w.status === "WITHDRAW_FAILED" && w.failure);
    setText(failure, w.failure ?? "");
    const resolution = li.querySelector(".resolution");
    resolution.hidden = !w.resolution;
    const label = RESOLUTIONS[w.resolution] ?? humanise(w.resolution);
    const said = w.resolutionNote && w.resolutionNote.toLowerCase() !== label.toLowerCase();
    setText(resolution, w.resolution ? `${label}${said ? `: ${w.resolutionNote}` : ""}` : "");
    const ways =
      w.status === "WITHDRAW_FAILED" && !w.resolution
        ? WAYS_OUT.filter((way) => this.ctx.allowed.has(way.mutation))
        : [];
    const actions = li.querySelector(".actions");
    const key = ways.map((way) => way.action).join(",");
    if (actions.dataset.ways !== key) {
      actions.dataset.ways = key;
      actions.replaceChildren(
        ...ways.map((way) =>
          h("button", {
            type: "button",
            class: "action",
            dataset: { action: way.action },
            text: way.label,
            onclick: () => this.wayOut(li, w.id, way.action),
          }),
        ),
      );
    }
    // a form the user has opened stays, even if the withdrawal was resolved meanwhile: what
    // they send is then refused by the server, and the refusal is shown
    actions.hidden = ways.length === 0;
  }

  wayOut(li, id, action) {
    if (action === "retry") {
      this.run(li, RETRY_WITHDRAWAL, { id }, "retryWithdrawal");
      return;
    }
    const form = li.querySelector(".way-out");
    const isClose = action === "close";
    const input = h("input", {
      type: "text",
      name: isClose ? "note" : "reason",
      required: true,
      maxlength: 500,
      "aria-label": isClose ? "Note" : "Reason for the return",
      placeholder: isClose ? "Why it is closed" : "Reason for the return",
    });
    form.replaceChildren(
      input,
      h("button", { type: "submit", text: isClose ? "Close withdrawal" : "Convert" }),
      h("button", {
        type: "button",
        class: "quiet",
        text: "Cancel",
        onclick: () => {
          form.hidden = true;
        },
      }),
    );
    form.onsubmit = (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      if (isClose) this.run(li, CLOSE_WITHDRAWAL, { id, note: text }, "closeWithdrawal");
      else this.run(li, CONVERT_WITHDRAWAL, { id, reason: text }, "convertWithdrawalToReturn");
    };
    form.hidden = false;
    input.focus();
  }

  async run(li, mutation, variables, field) {
    const error = li.querySelector(".row-error");
    const controls = li.querySelectorAll("button, input");
    for (const c of controls) c.disabled = true;
    error.hidden = true;
    try {
      const payload = (await graphql(this.ctx.token, mutation, variables))[field];
      if (payload.userErrors.length) {
        error.hidden = false;
        setText(error, payload.userErrors.map((e) => e.message).join(" "));
      } else {
        li.querySelector(".way-out").hidden = true;
        this.refresh();
      }
    } catch (failure) {
      error.hidden = false;
      setText(error, failure.message);
    } finally {
      for (const c of controls) c.disabled = false;
    }
  }
}

// --- after-sales returns -----------------------------------------------------------------------

export class ReturnsPanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.list = byId("returns");
    this.empty = byId("returns-empty");
    this.items = [];
    const showError = panelError(byId("returns-panel"));
    this.load = guarded(
      showError,
      latestOnly(
        () => graphql(ctx.token, RETURNS),
        (data) => {
          this.items = data.afterSalesOrders.edges.map((e) => e.node);
          this.render();
        },
        ctx.active,
      ),
    );
    this.refresh = debounce(() => this.load(), REFRESH_MS);
  }

  changed(change) {
    let item = this.items.find((r) => r.id === change.afterSalesId);
    if (!item) {
      item = { id: change.afterSalesId, number: change.number, distributorName: "" };
      this.items.unshift(item);
    }
    Object.assign(item, {
      status: change.status,
      pushStatus: change.pushStatus,
      withdrawalStatus: change.withdrawalStatus,
      pushError: change.error,
      updatedAt: change.at,
    });
    this.render();
    this.refresh();
  }

  render() {
    for (const r of this.items) this.ctx.numbers.remember(r.id, r.number);
    syncList(
      this.list,
      this.items,
      (r) => r.id,
      (r) =>
        h(
          "li",
          { class: "row return", dataset: { returnId: r.id } },
          h(
            "div",
            { class: "line" },
            h("span", { class: "number" }),
            h("span", { class: "slot-status" }),
            h("span", { class: "slot-time" }),
          ),
          h("p", { class: "meta" }),
          h("p", { class: "failure", hidden: true }),
        ),
      (li, r) => {
        li.dataset.status = r.status;
        setText(li.querySelector(".number"), r.number);
        const badges = [statusBadge(r.status)];
        if (r.withdrawalStatus) badges.push(statusBadge(r.withdrawalStatus, "secondary"));
        li.querySelector(".slot-status").replaceChildren(...badges);
        li.querySelector(".slot-time").replaceChildren(timeEl(r.updatedAt));
        const meta = [`Push: ${humanise(r.pushStatus)}`, r.distributorName].filter(Boolean);
        setText(li.querySelector(".meta"), meta.join(" · "));
        const failure = li.querySelector(".failure");
        failure.hidden = !r.pushError;
        setText(failure, r.pushError ?? "");
      },
    );
    this.empty.hidden = this.items.length > 0;
  }
}

// --- open SLA breaches, newest first -----------------------------------------------------------

const SUBJECTS = [
  ["orderId", "Order"],
  ["withdrawalId", "Withdrawal of order"],
  ["quoteId", "Quote"],
  ["stockItemId", "Stock item"],
];

export class BreachesPanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.list = byId("breaches");
    this.empty = byId("breaches-empty");
    this.count = byId("breach-count");
    this.open = new Map();
    this.cleared = new Set(); // a cleared breach never opens again (a new episode is a new one)
    this.opened = []; // [receivedAt, breach] of this session's opened events
    const showError = panelError(byId("breaches-panel"));
    this.load = guarded(showError, async () => {
      const asked = performance.now();
      const data = await graphql(ctx.token, OPEN_BREACHES);
      if (ctx.active()) this.replace(data.slaBreaches.nodes, asked);
    });
  }

  /** The open breaches as read, with what the events said since the read was sent. */
  replace(nodes, asked) {
    this.open = new Map();
    for (const breach of nodes) {
      if (breach.isOpen && !this.cleared.has(breach.id)) this.open.set(breach.id, breach);
    }
    for (const [receivedAt, breach] of this.opened) {
      if (receivedAt >= asked && !this.cleared.has(breach.id)) this.open.set(breach.id, breach);
    }
    this.render();
  }

  /** A slaBreachChanged event: opened → shown, cleared → gone. */
  changed(change) {
    const { breach } = change;
    if (change.opened && breach.isOpen) {
      this.opened.push([performance.now(), breach]);
      if (this.opened.length > 500) this.opened.shift();
      if (!this.cleared.has(breach.id)) this.open.set(breach.id, breach);
    } else {
      this.cleared.add(breach.id);
      this.open.delete(breach.id);
    }
    this.render();
  }

  render() {
    const items = [...this.open.values()].sort(
      (a, b) => b.openedAt.localeCompare(a.openedAt) || b.id.localeCompare(a.id),
    );
    syncList(
      this.list,
      items,
      (b) => b.id,
      (b) => {
        const [field, label] = SUBJECTS.find(([f]) => b[f]) ?? [null, null];
        let subject = null;
        if (field === "orderId" || (field === "withdrawalId" && b.orderId)) {
          subject = h("span", { class: "subject" }, "Order ", numberEl(this.ctx.numbers, b.orderId));
        } else if (label) {
          subject = h("span", { class: "subject", text: label });
        }
        return h(
          "li",
          { class: "row breach", dataset: { breachId: b.id, rule: b.rule, orderId: b.orderId } },
          h("div", { class: "line" }, h("strong", { class: "rule", text: humanise(b.rule) }), subject),
          h("p", { class: "meta" }, "Due ", timeEl(b.dueAt), " · opened ", timeEl(b.openedAt)),
        );
      },
      () => {},
    );
    this.empty.hidden = items.length > 0;
    setText(this.count, items.length);
    this.count.dataset.count = items.length;
  }
}

// --- the live feed: every change the subscriptions delivered, newest first --------------------

const FEED_LIMIT = 200;

export class Feed {
  constructor(ctx) {
    this.ctx = ctx;
    this.list = byId("feed");
    this.empty = byId("feed-empty");
    this.entries = []; // newest first, by arrival (`sequence`: the page's count of events)
  }

  add(kind, change, sequence) {
    const entry = { kind, change, sequence, el: this.entry(kind, change) };
    // newest first: before the first entry that arrived earlier
    let index = Number.isFinite(sequence) ? this.entries.findIndex((e) => e.sequence < sequence) : 0;
    if (index === -1) index = this.entries.length;
    const before = this.entries[index]?.el ?? null;
    this.entries.splice(index, 0, entry);
    this.list.insertBefore(entry.el, before);
    while (this.entries.length > FEED_LIMIT) this.entries.pop().el.remove();
    this.empty.hidden = true;
  }

  entry(kind, change) {
    const numbers = this.ctx.numbers;
    let status;
    let subject;
    let text;
    let orderId = change.orderId ?? null;
    if (kind === "order") {
      status = change.toStatus;
      subject = change.orderId;
      text = [
        "Order ",
        numberEl(numbers, change.orderId),
        `: ${change.fromStatus ? `${humanise(change.fromStatus)} → ` : ""}${humanise(change.toStatus)}`,
        change.reason ? ` (${change.reason})` : "",
      ];
    } else if (kind === "withdrawal") {
      status = change.status;
      subject = change.withdrawalId;
      const of = change.orderId
        ? ["order ", numberEl(numbers, change.orderId)]
        : ["return ", numberEl(numbers, change.afterSalesId)];
      text = ["Withdraw of ", ...of, `: ${humanise(change.status)}`];
      if (change.resolution) {
        text.push(`, ${humanise(change.resolution).toLowerCase()}`);
        if (change.resolutionNote) text.push(` — ${change.resolutionNote}`);
      } else if (change.status === "WITHDRAW_FAILED" && change.reason) {
        text.push(` — ${change.reason}`);
      }
    } else if (kind === "return") {
      status = change.status;
      subject = change.afterSalesId;
      numbers.remember(change.afterSalesId, change.number);
      text = [`Return ${change.number}: ${humanise(change.status)}, push ${humanise(change.pushStatus)}`];
      if (change.withdrawalStatus) text.push(`, withdraw ${humanise(change.withdrawalStatus)}`);
      if (change.error) text.push(` — ${change.error}`);
    } else {
      status = change.opened ? "OPENED" : "CLEARED";
      subject = change.breach.id;
      orderId = change.breach.orderId;
      text = [`SLA ${humanise(change.breach.rule)} ${change.opened ? "opened" : "cleared"}`];
      if (orderId) text.push(" · order ", numberEl(numbers, orderId));
    }
    return h(
      "li",
      {
        class: `feed-entry kind-${kind}`,
        dataset: {
          eventId: change.eventId,
          kind,
          status,
          subject,
          orderId,
          resolution: change.resolution ?? undefined,
        },
      },
      h("time", { datetime: change.at, title: change.at, text: when(change.at) }),
      h("span", { class: "text" }, ...text),
    );
  }
}
