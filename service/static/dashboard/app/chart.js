// The chart of the day, drawn as inline SVG (no chart library): orders by the hour (UTC) of
// their latest change, stacked by their status now; and today's withdraw outcomes.

import { h, humanise } from "./dom.js";

export const STATUSES = [
  "UNRECOGNIZED",
  "AWAITING_PAYMENT",
  "AWAITING_SHIPPING",
  "SHIPPED",
  "FULFILLED",
  "CANCELLED",
  "ABNORMAL",
  "REFUNDED",
];
const OUTCOMES = ["WITHDRAWN", "WITHDRAW_FAILED"];

const WIDTH = 480;
const HEIGHT = 180;
const LEFT = 30;
const RIGHT = 6;
const TOP = 8;
const BOTTOM = 20;

/** Midnight UTC of today, as an ISO string (the chart's day). */
export function startOfTodayUtc(now = new Date()) {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate())).toISOString();
}

function niceCeiling(value) {
  if (value <= 4) return 4;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

export class TodayChart {
  constructor(container, { onNewDay }) {
    this.container = container;
    this.onNewDay = onNewDay;
    this.day = startOfTodayUtc();
    this.orders = new Map(); // order id → {status, hour}
    this.withdrawals = new Map(); // withdrawal id → status
  }

  isToday(iso) {
    return iso != null && iso >= this.day && new Date(iso) < new Date(Date.parse(this.day) + 864e5);
  }

  setOrders(nodes) {
    this.orders.clear();
    for (const order of nodes) this.orderChanged(order.id, order.status, order.updatedAt, false);
    this.render();
  }

  setWithdrawals(nodes) {
    this.withdrawals.clear();
    for (const w of nodes) this.withdrawalChanged(w.id, w.status, w.updatedAt, false);
    this.render();
  }

  orderChanged(id, status, at, render = true) {
    if (!this.isToday(at)) return;
    this.orders.set(id, { status, hour: new Date(at).getUTCHours() });
    if (render) this.render();
  }

  withdrawalChanged(id, status, at, render = true) {
    if (!this.isToday(at)) return;
    this.withdrawals.set(id, status);
    if (render) this.render();
  }

  render() {
    if (startOfTodayUtc() !== this.day) {
      this.day = startOfTodayUtc();
      this.orders.clear();
      this.withdrawals.clear();
      this.onNewDay();
    }
    this.container.replaceChildren(this.ordersChart(), this.outcomesChart());
  }

  ordersChart() {
    const hours = Array.from({ length: 24 }, () => new Map());
    for (const { status, hour } of this.orders.values()) {
      hours[hour].set(status, (hours[hour].get(status) ?? 0) + 1);
    }
    const totals = hours.map((counts) => [...counts.values()].reduce((a, b) => a + b, 0));
    const top = niceCeiling(Math.max(0, ...totals));
    const plotWidth = WIDTH - LEFT - RIGHT;
    const plotHeight = HEIGHT - TOP - BOTTOM;
    const column = plotWidth / 24;
    const scale = plotHeight / top;
    const svg = h("svg:svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      class: "chart orders-chart",
      role: "img",
      "aria-labelledby": "orders-chart-title",
      dataset: { total: this.orders.size },
    });
    svg.append(
      h("svg:title", {
        id: "orders-chart-title",
        text: `Orders changed today by hour (UTC) and status: ${this.orders.size} in all`,
      }),
    );
    for (const fraction of [0, 0.5, 1]) {
      const y = TOP + plotHeight - fraction * plotHeight;
      svg.append(
        h("svg:line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y, y2: y, class: "grid" }),
        h("svg:text", { x: LEFT - 4, y: y + 3, class: "axis", "text-anchor": "end", text: fraction * top }),
      );
    }
    hours.forEach((counts, hour) => {
      let y = TOP + plotHeight;
      const x = LEFT + hour * column + 1;
      for (const status of STATUSES) {
        const count = counts.get(status);
        if (!count) continue;
        const height = count * scale;
        y -= height;
        svg.append(
          h(
            "svg:rect",
            {
              x: x.toFixed(1),
              y: y.toFixed(1),
              width: (column - 2).toFixed(1),
              height: height.toFixed(1),
              class: `bar st-${status}`,
              dataset: { hour, status, count },
            },
            h("svg:title", {
              text: `${String(hour).padStart(2, "0")}:00 UTC · ${humanise(status)}: ${count}`,
            }),
          ),
        );
      }
      if (hour % 3 === 0) {
        svg.append(
          h("svg:text", {
            x: (x + column / 2 - 1).toFixed(1),
            y: HEIGHT - 6,
            class: "axis",
            "text-anchor": "middle",
            text: String(hour).padStart(2, "0"),
          }),
        );
      }
    });
    const present = STATUSES.filter((s) => [...this.orders.values()].some((o) => o.status === s));
    const legend = h(
      "ul",
      { class: "legend" },
      present.map((status) =>
        h("li", {}, h("span", { class: `swatch st-${status}`, "aria-hidden": "true" }), humanise(status)),
      ),
    );
    return h(
      "figure",
      { class: "figure" },
      h("figcaption", { text: "Orders by hour of their latest change" }),
      svg,
      legend,
    );
  }

  outcomesChart() {
    const counts = Object.fromEntries(OUTCOMES.map((o) => [o, 0]));
    for (const status of this.withdrawals.values()) if (status in counts) counts[status] += 1;
    const top = Math.max(1, ...Object.values(counts));
    const width = 480;
    const row = 26;
    const label = 130;
    const svg = h("svg:svg", {
      viewBox: `0 0 ${width} ${row * OUTCOMES.length + 4}`,
      class: "chart outcomes-chart",
      role: "img",
      "aria-labelledby": "outcomes-chart-title",
    });
    svg.append(
      h("svg:title", {
        id: "outcomes-chart-title",
        text: `Withdraws today: ${counts.WITHDRAWN} withdrawn, ${counts.WITHDRAW_FAILED} failed`,
      }),
    );
    OUTCOMES.forEach((outcome, i) => {
      const y = 2 + i * row;
      const length = ((width - label - 40) * counts[outcome]) / top;
      svg.append(
        h("svg:text", { x: 0, y: y + 16, class: "axis label", text: humanise(outcome) }),
        h("svg:rect", {
          x: label,
          y: y + 3,
          width: Math.max(counts[outcome] ? 2 : 0, length).toFixed(1),
          height: row - 8,
          class: `bar st-${outcome}`,
          dataset: { outcome, count: counts[outcome] },
        }),
        h("svg:text", {
          x: (label + length + 6).toFixed(1),
          y: y + 16,
          class: "axis value",
          dataset: { outcome },
          text: counts[outcome],
        }),
      );
    });
    return h(
      "figure",
      { class: "figure" },
      h("figcaption", { text: "Withdraw outcomes" }),
      svg,
    );
  }
}
