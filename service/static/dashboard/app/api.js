// The public GraphQL API over HTTP, as any client uses it: POST /graphql on this origin with
// the user's bearer token. Field names are those of schema.graphql.

export class ApiError extends Error {
  constructor(message, code = null) {
    super(message);
    this.name = "ApiError";
    this.code = code;
  }
}

/** The `data` of a query or mutation; an ApiError for a request error or any GraphQL error. */
export async function graphql(token, query, variables = {}) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/graphql-response+json, application/json",
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ query, variables }),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    throw new ApiError(`The server cannot be reached (${error.message}).`, "NETWORK");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The server answered HTTP ${response.status}.`, "HTTP");
  }
  if (body.errors?.length) {
    const [first] = body.errors;
    throw new ApiError(
      body.errors.map((e) => e.message).join(" "),
      first.extensions?.code ?? null,
    );
  }
  return body.data;
}

export const ME = `query Me { me { user { name email role } organisation { id name kind } } }`;

// Who may call each mutation is stated at the end of its description ("Requires: ...").
export const MUTATION_FIELDS = `query MutationRules { __type(name: "Mutation") { fields { name description } } }`;

export const ORDER_COUNTS = `query OrderCounts { orderCounts { status count } }`;

export const ORDERS = `query Orders($statuses: [OrderStatus!]) {
  orders(first: 20, filter: {statuses: $statuses}) {
    edges { node { id number status updatedAt buyerName customerName paidAmount currency } }
  }
}`;

export const ORDER = `query Order($id: ID!) {
  order(id: $id) {
    id number status buyerName customerName carrier trackingNumber updatedAt
    timeline { fromStatus toStatus reason at actorUserId }
  }
}`;

export const ORDERS_UPDATED_SINCE = `query OrdersUpdatedSince($from: DateTime!, $after: String) {
  orders(first: 100, after: $after, filter: {updatedFrom: $from}) {
    edges { node { id status updatedAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const WITHDRAWAL_FIELDS = `id orderId afterSalesId status reason failure resolution resolutionNote createdAt updatedAt`;

export const WITHDRAWALS = `query Withdrawals($first: Int!, $after: String) {
  withdrawals(first: $first, after: $after) {
    nodes { ${WITHDRAWAL_FIELDS} }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const RETURNS = `query Returns {
  afterSalesOrders(first: 20) {
    edges { node { id number orderId status pushStatus pushError withdrawalStatus distributorName updatedAt } }
  }
}`;

export const OPEN_BREACHES = `query OpenBreaches {
  slaBreaches(filter: {open: true}, first: 50) {
    nodes { id rule orderId withdrawalId quoteId stockItemId dueAt openedAt isOpen }
  }
}`;

export const NUMBERS = `query Numbers($ids: [ID!]!) {
  nodes(ids: $ids) { ... on Order { id number } ... on AfterSalesOrder { id number } }
}`;

export const RETRY_WITHDRAWAL = `mutation RetryWithdrawal($id: ID!) {
  retryWithdrawal(withdrawalId: $id) { withdrawal { id status } userErrors { code field message } }
}`;

export const CONVERT_WITHDRAWAL = `mutation ConvertWithdrawal($id: ID!, $reason: String!) {
  convertWithdrawalToReturn(withdrawalId: $id, reason: $reason) {
    afterSalesOrder { id number status } userErrors { code field message }
  }
}`;

export const CLOSE_WITHDRAWAL = `mutation CloseWithdrawal($id: ID!, $note: String!) {
  closeWithdrawal(withdrawalId: $id, note: $note) {
    withdrawal { id status resolution } userErrors { code field message }
  }
}`;

// Subscriptions: each payload has an eventId, and each accepts afterEventId to resume.
export const ORDER_CHANGES = `subscription OrderChanges($afterEventId: ID) {
  orderStatusChanged(afterEventId: $afterEventId) { eventId orderId fromStatus toStatus reason at }
}`;

export const WITHDRAWAL_CHANGES = `subscription WithdrawalChanges($afterEventId: ID) {
  withdrawalStatusChanged(afterEventId: $afterEventId) {
    eventId withdrawalId orderId afterSalesId status reason resolution resolutionNote at
  }
}`;

export const RETURN_CHANGES = `subscription ReturnChanges($afterEventId: ID) {
  returnStatusChanged(afterEventId: $afterEventId) {
    eventId afterSalesId number status pushStatus withdrawalStatus error at
  }
}`;

export const BREACH_CHANGES = `subscription BreachChanges($afterEventId: ID) {
  slaBreachChanged(afterEventId: $afterEventId) {
    eventId opened at
    breach { id rule orderId withdrawalId quoteId stockItemId isOpen dueAt openedAt clearedAt }
  }
}`;

const ROLES = ["VIEWER", "STAFF", "ADMIN", "OWNER"];
const KINDS = { "any organisation": null, "a buyer": "BUYER", "a supplier": "SUPPLIER" };
const REQUIRES =
  /Requires: (any organisation|a buyer|a supplier), (?:any role|(VIEWER|STAFF|ADMIN|OWNER) or higher)/;

/** The `Requires: ...` sentence of a field's description as {kind, role}; null when there is
 * none (then the page offers the field to nobody). */
export function parseRequires(description) {
  const match = REQUIRES.exec(description ?? "");
  if (!match) return null;
  return { kind: KINDS[match[1]], role: match[2] ?? "VIEWER" };
}

export function allows(rule, me) {
  if (!rule) return false;
  if (rule.kind && rule.kind !== me.organisation.kind) return false;
  return ROLES.indexOf(me.user.role) >= ROLES.indexOf(rule.role);
}

/** Which of `names` the signed-in user may call, read from the schema's own descriptions. */
export async function mutationsAllowed(token, me, names) {
  const data = await graphql(token, MUTATION_FIELDS);
  const fields = new Map((data.__type?.fields ?? []).map((f) => [f.name, f.description]));
  return new Set(names.filter((name) => allows(parseRequires(fields.get(name)), me)));
}

/** Order and return numbers by id, looked up in batches (`nodes(ids:)`) and remembered. */
export class Numbers {
  constructor(token) {
    this.token = token;
    this.known = new Map();
    this.waiting = new Map(); // id → [resolve]
    this.timer = null;
  }

  remember(id, number) {
    if (id && number) this.known.set(id, number);
  }

  /** The number now if known, else null and `then(number)` once it is. */
  lookup(id, then) {
    if (!id) return null;
    if (this.known.has(id)) return this.known.get(id);
    const waiters = this.waiting.get(id) ?? [];
    waiters.push(then);
    this.waiting.set(id, waiters);
    this.timer ??= setTimeout(() => this.flush(), 20);
    return null;
  }

  async flush() {
    this.timer = null;
    const batch = new Map([...this.waiting].slice(0, 100));
    for (const id of batch.keys()) this.waiting.delete(id);
    if (this.waiting.size) this.timer = setTimeout(() => this.flush(), 0);
    let found = [];
    try {
      found = (await graphql(this.token, NUMBERS, { ids: [...batch.keys()] })).nodes;
    } catch {
      return; // shown without a number
    }
    for (const node of found) {
      if (node?.id) this.remember(node.id, node.number);
    }
    for (const [id, waiters] of batch) {
      const number = this.known.get(id);
      if (number) for (const then of waiters) then(number);
    }
  }
}
