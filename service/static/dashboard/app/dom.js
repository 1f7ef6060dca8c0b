// Small DOM helpers. The page never parses HTML from strings (its CSP enforces Trusted Types
// with no policy): every element is made here and every text is set as text.

const SVG = "http://www.w3.org/2000/svg";

/** An element: h("li", {class: "row", dataset: {id}}, child, "text", ...). "svg:rect" makes
 * an SVG element. Props: class, dataset, text, on<event> (listeners); anything else is an
 * attribute (true: present, null/false: absent). */
export function h(tag, props = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value == null || value === false) continue;
    if (key === "dataset") {
      for (const [name, v] of Object.entries(value)) if (v != null) el.dataset[name] = String(v);
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Make `container`'s children the rows of `items`, in order, keyed by `keyOf(item)`: a row
 * that exists is kept (with whatever the user is typing in it) and `update`d, a new one is
 * `create`d, and rows of items no longer there are removed. */
export function syncList(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const el of container.children) existing.set(el.dataset.key, el);
  let previous = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let el = existing.get(key);
    if (el) {
      existing.delete(key);
    } else {
      el = create(item);
      el.dataset.key = key;
    }
    update(el, item);
    const expected = previous ? previous.nextSibling : container.firstChild;
    if (el !== expected) container.insertBefore(el, expected);
    previous = el;
  }
  for (const el of existing.values()) el.remove();
}

export function setText(el, text) {
  const value = text == null ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el;
}

/** Call `fn` once, `ms` after the last of a burst of calls. */
export function debounce(fn, ms) {
  let timer = null;
  const call = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn(...args);
    }, ms);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}

/** Wraps an async loader so that only the answer of the latest call is applied: a slow answer
 * to an earlier request never overwrites a newer one (nor any once `active()` is false). */
export function latestOnly(load, apply, active = () => true) {
  let generation = 0;
  return async (...args) => {
    const mine = ++generation;
    const value = await load(...args);
    if (mine === generation && active()) apply(value);
    return value;
  };
}

const TIME = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const DATE_TIME = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

/** A time of today as hh:mm:ss, another day's as "Mar 3, 14:05" (the viewer's time zone). */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString() ? TIME.format(date) : DATE_TIME.format(date);
}

export function timeEl(iso) {
  return h("time", { datetime: iso, title: iso, text: when(iso) });
}

/** ORDER_STATUS → "Order status". */
export function humanise(name) {
  if (!name) return "";
  const words = String(name).toLowerCase().replaceAll("_", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function statusBadge(status, extra = "") {
  return h("span", {
    class: `status st-${status} ${extra}`.trim(),
    dataset: { status },
    text: humanise(status),
  });
}
