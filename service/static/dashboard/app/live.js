// Subscriptions over graphql-transport-ws on this origin's /graphql, with the vendored
// graphql-ws client (window.graphqlWs, service/static/dashboard/vendor/).
//
// Resuming: every typed subscription payload has an `eventId`, and every subscription accepts
// `afterEventId` (the server then first sends what came after it, then live events: no gap,
// no duplicate). Each Stream keeps the last eventId it saw in the very `variables` object it
// subscribed with; graphql-ws re-sends that same subscribe payload when it reconnects (it
// serialises it again at each send), so a resubscription asks for what was missed.
// Events are also deduplicated by eventId, and a stream that the server completes is started
// again.

const { createClient } = window.graphqlWs;

// Close codes after which retrying cannot help (graphql-ws gives up on most 44xx by itself):
// 4403 is this server's answer to a missing or refused token.
const REFUSED = new Set([4400, 4401, 4403]);
const PING_TIMEOUT_MS = 6_000;
const KEEP_ALIVE_MS = 12_000;
const MAX_BACKOFF_MS = 10_000;
const SEEN_LIMIT = 2_000;

export function socketUrl() {
  const url = new URL("/graphql", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function isCloseEvent(value) {
  return value != null && typeof value === "object" && typeof value.code === "number";
}

/** One socket for the page's subscriptions. `onState(state)`: "connecting", "connected",
 * "reconnecting", "offline" or "refused"; `onResume()`: connected again after a drop (the
 * page re-reads its lists); `onRefused(reason)`: the server will not take this token. */
export class Live {
  constructor({ token, onState, onResume, onRefused }) {
    this.streams = [];
    this.latest = null; // the id of the latest event received on any stream
    this.received = 0; // events received: their order on this page (event ids are opaque)
    this.waits = new Set(); // pending retry waits, cut short when the browser comes online
    this.socket = null;
    this.pingTimer = null;
    this.disposed = false;
    this.onState = onState;
    this.onRefused = onRefused;
    this.state = null;

    this.handleOnline = () => {
      this.setState(this.socket ? "connected" : "reconnecting");
      for (const wake of [...this.waits]) wake();
    };
    this.handleOffline = () => {
      this.setState("offline");
      // the socket may linger without a network: drop it now, graphql-ws retries (with backoff)
      if (this.socket) this.client.terminate();
    };
    window.addEventListener("online", this.handleOnline);
    window.addEventListener("offline", this.handleOffline);

    this.client = createClient({
      url: socketUrl,
      connectionParams: () => ({ Authorization: `Bearer ${token}` }),
      lazy: false,
      onNonLazyError: (error) => this.refuse(error),
      keepAlive: KEEP_ALIVE_MS,
      retryAttempts: Number.POSITIVE_INFINITY,
      retryWait: (retries) => this.backoff(retries),
      shouldRetry: (closed) => !(isCloseEvent(closed) && REFUSED.has(closed.code)),
      on: {
        connecting: (isRetry) => {
          if (!navigator.onLine) this.setState("offline");
          else this.setState(isRetry ? "reconnecting" : "connecting");
        },
        connected: (socket, _payload, wasRetry) => {
          this.socket = socket;
          this.setState("connected");
          if (wasRetry) onResume();
        },
        ping: (received) => {
          if (received) return;
          // our ping: a socket whose pong does not come back in time is dead, close it
          clearTimeout(this.pingTimer);
          const socket = this.socket;
          this.pingTimer = setTimeout(() => {
            if (socket && socket.readyState === WebSocket.OPEN) socket.close(4408, "Ping timeout");
          }, PING_TIMEOUT_MS);
        },
        pong: (received) => {
          if (received) clearTimeout(this.pingTimer);
        },
        closed: (event) => {
          this.socket = null;
          clearTimeout(this.pingTimer);
          if (this.disposed) return;
          if (isCloseEvent(event) && REFUSED.has(event.code)) {
            this.refuse(event);
            return;
          }
          this.prepareResume();
          this.setState(navigator.onLine ? "reconnecting" : "offline");
        },
      },
    });
  }

  setState(state) {
    if (this.disposed || state === this.state) return;
    this.state = state;
    this.onState(state);
  }

  refuse(reason) {
    if (this.disposed || this.state === "refused") return;
    this.setState("refused");
    this.onRefused(reason);
  }

  /** Exponential backoff with jitter, at most MAX_BACKOFF_MS; ended early by `online`. */
  backoff(retries) {
    const delay = Math.min(MAX_BACKOFF_MS, 400 * 2 ** retries) * (0.75 + Math.random() * 0.5);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waits.delete(done);
        resolve();
      };
      const timer = setTimeout(done, delay);
      this.waits.add(done);
    });
  }

  /** Before graphql-ws resubscribes: a stream that has seen no event of its own yet resumes
   * after the latest event any stream received (the socket delivers events in the order they
   * happened, and every id it gets is this organisation's), so that what happens while the
   * socket is down is not lost to it either. */
  prepareResume() {
    if (!this.latest) return;
    for (const stream of this.streams) {
      if (!stream.variables.afterEventId) stream.variables.afterEventId = this.latest;
    }
  }

  /** A new event: its place in the order of arrival. */
  noteEvent(eventId) {
    this.latest = eventId;
    this.received += 1;
    return this.received;
  }

  /** Subscribe `query`; `onEvent(payload, sequence)` gets each new `data[field]` once, in
   * order, with its place in the order of arrival; `onError(message)` a refusal of the
   * operation (it is tried again after a while). */
  stream({ query, field, onEvent, onError }) {
    const stream = new Stream(this, { query, field, onEvent, onError });
    this.streams.push(stream);
    stream.start();
    return stream;
  }

  dispose() {
    this.disposed = true;
    window.removeEventListener("online", this.handleOnline);
    window.removeEventListener("offline", this.handleOffline);
    for (const stream of this.streams) stream.stop();
    for (const wake of [...this.waits]) wake();
    clearTimeout(this.pingTimer);
    this.client.dispose();
  }
}

class Stream {
  constructor(live, { query, field, onEvent, onError }) {
    this.live = live;
    this.query = query;
    this.field = field;
    this.onEvent = onEvent;
    this.onError = onError ?? (() => {});
    this.variables = {}; // graphql-ws sends this object again on every resubscription
    this.seen = new Set();
    this.stopped = false;
    this.dispose = null;
    this.restart = null;
  }

  start() {
    if (this.stopped) return;
    this.dispose = this.live.client.subscribe(
      { query: this.query, variables: this.variables },
      {
        next: (result) => this.receive(result),
        error: (error) => {
          if (this.stopped || this.live.disposed) return;
          const errors = Array.isArray(error) ? error : [error];
          const codes = errors.map((e) => e?.extensions?.code);
          if (codes.includes("UNAUTHENTICATED")) {
            this.live.refuse(error);
            return;
          }
          if (isCloseEvent(error)) return; // the connection's fate: shown by the indicator
          this.onError(errors.map((e) => e?.message ?? String(e)).join(" "));
          this.again(5_000);
        },
        // a dashboard's stream never ends by itself: the server completed it (a restart),
        // so start it again, after the last event seen
        complete: () => this.again(500),
      },
    );
  }

  again(ms) {
    if (this.stopped || this.live.disposed) return;
    clearTimeout(this.restart);
    this.restart = setTimeout(() => this.start(), ms);
  }

  receive(result) {
    if (result.errors?.length) {
      this.onError(result.errors.map((e) => e.message).join(" "));
      return;
    }
    const change = result.data?.[this.field];
    if (!change?.eventId) return;
    if (this.seen.has(change.eventId)) return;
    this.seen.add(change.eventId);
    if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.values().next().value);
    this.variables.afterEventId = change.eventId;
    this.onEvent(change, this.live.noteEvent(change.eventId));
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.restart);
    this.dispose?.();
  }
}
