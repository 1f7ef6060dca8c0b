// Apollo Client with BatchHttpLink, as a web app sets it up, against a served instance.
// Usage: node apollo_batch.mjs <graphql url> <token> <new organisation name>
// Prints one JSON object: the HTTP requests the link sent and what each operation returned.
import { ApolloClient, InMemoryCache, gql } from "@apollo/client";
import { BatchHttpLink } from "@apollo/client/link/batch-http";

const [url, token, name] = process.argv.slice(2);
const requests = [];
const recordingFetch = async (input, init) => {
  const response = await fetch(input, init);
  requests.push({
    body: JSON.parse(init.body),
    status: response.status,
    contentType: response.headers.get("content-type"),
  });
  return response;
};

const client = new ApolloClient({
  cache: new InMemoryCache(),
  link: new BatchHttpLink({
    uri: url,
    headers: { authorization: `Bearer ${token}` },
    batchMax: 10,
    batchInterval: 50,
    fetch: recordingFetch,
  }),
});

const ME = gql`query Me { me { tokenId organisation { id name } } }`;
const EVENTS = gql`query Recent { events(first: 1) { edges { node { id type } } } }`;
const RENAME = gql`mutation Rename($n: String!) {
  renameOrganisation(input: { name: $n }) { organisation { id name } userErrors { code } }
}`;

// two queries fired together: one HTTP request
const [me, events] = await Promise.all([
  client.query({ query: ME, fetchPolicy: "network-only" }),
  client.query({ query: EVENTS, fetchPolicy: "network-only" }),
]);
// a mutation, then the query again (network-only): both answered, the query sees the change
const renamed = await client.mutate({ mutation: RENAME, variables: { n: name } });
const again = await client.query({ query: ME, fetchPolicy: "network-only" });
console.log(
  JSON.stringify({
    requests,
    me: me.data,
    events: events.data,
    renamed: renamed.data,
    again: again.data,
    cached: client.cache.extract(),
  }),
);
