// A tiny GraphQL-over-HTTP helper: POST /graphql on the same origin with the
// API key as a bearer token. Every failure becomes a GraphQLError whose `code`
// is the server's `extensions.code` (UNAUTHENTICATED, FORBIDDEN, ...) or
// UNREACHABLE when no answer came back, so callers can tell a person what to do.

export class GraphQLError extends Error {
  constructor(message, code, errors = []) {
    super(message);
    this.code = code;
    this.errors = errors;
  }
}

const UNREACHABLE =
  'Cannot reach the plangraph server. Check that it is running and that this page was opened from it.';

/** Runs an operation; resolves to `{ data, errors }` even when some fields failed. */
export async function request(key, query, variables = {}) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    // fetch only rejects when there is no HTTP answer at all.
    throw new GraphQLError(UNREACHABLE, 'UNREACHABLE');
  }
  let body;
  try {
    body = await response.json();
  } catch {
    // A proxy's HTML error page, or the server went away mid-answer.
    throw new GraphQLError(`${UNREACHABLE} (HTTP ${response.status})`, 'UNREACHABLE');
  }
  const errors = body.errors ?? [];
  if (!body.data) {
    const first = errors[0] ?? {};
    const code = first.extensions?.code ?? (response.status === 401 ? 'UNAUTHENTICATED' : 'INTERNAL');
    throw new GraphQLError(first.message ?? `HTTP ${response.status}`, code, errors);
  }
  return { data: body.data, errors };
}

/** Runs an operation whose every field is needed: any error rejects. */
export async function gql(key, query, variables) {
  const { data, errors } = await request(key, query, variables);
  if (errors.length > 0) {
    throw new GraphQLError(errors[0].message, errors[0].extensions?.code ?? 'INTERNAL', errors);
  }
  return data;
}

/**
 * Collects every node of a connection, 100 (the largest page) at a time.
 * `pick(data)` returns the connection from a response.
 */
export async function pageAll(key, query, variables, pick) {
  const nodes = [];
  let after = null;
  for (;;) {
    const connection = pick(await gql(key, query, { ...variables, after }));
    nodes.push(...connection.nodes);
    if (!connection.pageInfo.hasNextPage) return nodes;
    after = connection.pageInfo.endCursor;
  }
}
