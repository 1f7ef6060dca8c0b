// Apollo Client with createPersistedQueryLink (automatic persisted queries), as a mobile or
// web app sets it up, hashed queries over GET, against a served instance.
// Usage: node apollo_apq.mjs <graphql url> <token>
// Prints one JSON object: every HTTP request the links sent, and the two answers.
import { createHash } from "node:crypto";
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";

const [url, token] = process.argv.slice(2);
const requests = [];
const recordingFetch = async (input, init) => {
  const response = await fetch(input, init);
  const target = new URL(typeof input === "string" ? input : input.url);
  requests.push({
    method: init?.method ?? "GET",
    hasQuery: init?.body ? "query" in JSON.parse(init.body) : target.searchParams.has("query"),
    extensions: init?.body
      ? JSON.parse(init.body).extensions
      : JSON.parse(target.searchParams.get("extensions") ?? "null"),
    status: response.status,
    cache: response.headers.get("x-cache"),
  });
  return response;
};

const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const client = new ApolloClient({
  cache: new InMemoryCache(),
  link: new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` }, fetch: recordingFetch }),
  ),
});

const ME = gql`query Me { me { tokenId organisation { id name } } }`;
const first = await client.query({ query: ME, fetchPolicy: "network-only" });
const second = await client.query({ query: ME, fetchPolicy: "network-only" });
const third = await client.query({ query: ME, fetchPolicy: "network-only" });
console.log(JSON.stringify({ requests, first: first.data, second: second.data, third: third.data }));
