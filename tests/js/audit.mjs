// The GraphQL-over-HTTP server audit of `graphql-http` against a served instance.
// Usage: node audit.mjs <url>; prints one JSON line per audit: {id, name, status, reason}.
import { auditServer } from "graphql-http";

const url = process.argv[2];
if (!url) {
  console.error("usage: node audit.mjs <graphql url>");
  process.exit(2);
}
const results = await auditServer({ url });
for (const r of results) {
  let body;
  if (r.status !== "ok" && r.response) {
    try { body = await r.response.text(); } catch { body = undefined; }
  }
  console.log(JSON.stringify({ id: r.id, name: r.name, status: r.status, reason: r.reason, body }));
}
