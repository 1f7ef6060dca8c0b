// A graphql-ws client (the build the dashboard vendors) subscribed to `events`, resuming with
// `afterEventId` after the server closes its socket, as the dashboard does: the id of the last
// event it saw is kept in the very `variables` object it subscribed with, which graphql-ws
// serialises again when it resubscribes. It retries as the dashboard does
// (service/static/dashboard/app/live.js): after anything but a refusal of its token, for as
// long as it takes, here 200 ms apart (a connection refused while the instance restarts is an
// error event, which graphql-ws's default shouldRetry would take as fatal). Whether a close
// code ends the client whatever shouldRetry says is graphql-ws's own rule: 1012 must not.
//
// Prints one JSON line per happening: {"connected": wasRetry}, {"event": id},
// {"closed": code, "reason": reason}, {"error": message}. Ends when its standard input ends.
//
// Usage: node [--experimental-websocket] graphql_ws_resume.mjs CLIENT_JS WS_URL TOKEN [AFTER]
// (Node 20 has WebSocket behind --experimental-websocket; Node 22 has it by default.)
import { createRequire } from "node:module";

const [clientPath, url, token, after] = process.argv.slice(2);
const { createClient } = createRequire(import.meta.url)(clientPath);

const REFUSED = new Set([4400, 4401, 4403]); // the dashboard's: retrying cannot help
const say = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: Number.POSITIVE_INFINITY,
  shouldRetry: (closed) => !REFUSED.has(closed?.code),
  retryWait: () => new Promise((resolve) => setTimeout(resolve, 200)),
  on: {
    connected: (_socket, _payload, wasRetry) => say({ connected: Boolean(wasRetry) }),
    closed: (event) => say({ closed: event?.code ?? null, reason: event?.reason ?? null }),
  },
});

const variables = { after: after || null };
const dispose = client.subscribe(
  {
    query: "subscription($after: ID) { events(afterEventId: $after) { id type } }",
    variables,
  },
  {
    next: ({ data, errors }) => {
      if (errors) {
        say({ error: JSON.stringify(errors) });
        return;
      }
      variables.after = data.events.id;
      say({ event: data.events.id });
    },
    error: (error) => say({ error: String(error?.message ?? error), code: error?.code ?? null }),
    complete: () => say({ complete: true }),
  },
);

process.stdin.resume();
process.stdin.on("end", async () => {
  dispose();
  await client.dispose();
  process.exit(0);
});
