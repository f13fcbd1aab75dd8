// GraphQL over HTTP: the conformance audit of the graphql-http package (every
// server audit) against the real server, and what the audit leaves open.
// Run: PLANGRAPH_BIN=/path/to/plangraph node --test tests/board/

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { serverAudits } from 'graphql-http';
import { Server } from './helpers.mjs';

// MAYs that plangraph leaves alone on purpose: a JSON body without `query`
// (e.g. `qeury`) is answered as it always was under application/json, with
// 200 and a GraphQL error; under application/graphql-response+json it is a 400.
const KEPT_NOTICES = ['8764', '3E3A'];

const TIMEOUT = { timeout: 90_000 };
const NEW_TYPE = 'application/graphql-response+json';

let server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server?.destroy();
});

test('every GraphQL-over-HTTP server audit passes, with no warnings', TIMEOUT, async (t) => {
  {
    const results = [];
    for (const audit of serverAudits({ url: `${server.url}/graphql`, fetchFn: fetch })) {
      results.push(await audit.fn());
    }
    const counts = {};
    for (const result of results) (counts[result.status] ??= []).push(result);
    t.diagnostic(Object.entries(counts).map(([status, found]) => `${status}: ${found.length}`).join(', '));
    const describe = (result) => `${result.id} ${result.name}: ${result.reason}`;
    assert.ok(results.length > 50, `the audit ran (${results.length} audits)`);
    assert.deepEqual((counts.error ?? []).map(describe), [], 'no failures');
    assert.deepEqual((counts.warn ?? []).map(describe), [], 'no warnings');
    assert.deepEqual((counts.notice ?? []).map((result) => result.id).sort(), [...KEPT_NOTICES].sort());
  }
});

/** POSTs `body` as JSON, accepting `accept`; the status, content type and parsed body. */
async function post(body, { accept, key } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (accept) headers.accept = accept;
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(`${server.url}/graphql`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: response.status, type: response.headers.get('content-type'), body: await response.json() };
}

test('a document that does not validate is a 400 without data for the new type, and as before for JSON', TIMEOUT, async () => {
  const invalid = { query: '{ noSuchField }' };

  const json = await post(invalid, { accept: 'application/json' });
  assert.equal(json.status, 200);
  assert.equal(json.type, 'application/json');
  assert.equal(json.body.data, null);
  assert.equal(json.body.errors[0].extensions.code, 'BAD_USER_INPUT');

  const graphql = await post(invalid, { accept: `${NEW_TYPE}, application/json;q=0.9` });
  assert.equal(graphql.status, 400);
  assert.match(graphql.type, /^application\/graphql-response\+json/);
  assert.equal('data' in graphql.body, false);
  assert.equal(graphql.body.errors[0].extensions.code, 'BAD_USER_INPUT');
  assert.match(graphql.body.errors[0].message, /noSuchField/);
});

test('a field error under the new type is still a 200 with data', TIMEOUT, async () => {
  // `viewer` needs a key: the error belongs to a field, so the request ran.
  const reply = await post({ query: '{ __typename viewer { email } }' }, { accept: NEW_TYPE });
  assert.equal(reply.status, 200);
  assert.equal(reply.body.data.__typename, 'Query');
  assert.deepEqual(reply.body.errors[0].path, ['viewer']);
  assert.equal(reply.body.errors[0].extensions.code, 'UNAUTHENTICATED');
});

test('a refused key under the new type is a 401 without data, with its code', TIMEOUT, async () => {
  const reply = await post({ query: '{ __typename }' }, { accept: NEW_TYPE, key: 'pg_not_a_key' });
  assert.equal(reply.status, 401);
  assert.match(reply.type, /^application\/graphql-response\+json/);
  assert.deepEqual(Object.keys(reply.body), ['errors']);
  assert.equal(reply.body.errors[0].extensions.code, 'UNAUTHENTICATED');
});

test('a POST body that is not declared as JSON is refused with a GraphQL error', TIMEOUT, async () => {
  for (const headers of [{}, { 'content-type': 'text/plain' }, { 'content-type': 'application/x-www-form-urlencoded' }]) {
    const response = await fetch(`${server.url}/graphql`, { method: 'POST', headers, body: '{"query": "{ __typename }"}' });
    assert.equal(response.status, 400, JSON.stringify(headers));
    const body = await response.json();
    assert.equal(body.errors[0].extensions.code, 'BAD_USER_INPUT');
    assert.match(body.errors[0].message, /Content-Type: application\/json/);
  }
});

test('GET picks the operation named by the standard operationName, and by operation_name as before', TIMEOUT, async () => {
  const query = 'query First { first: __typename } query Second { second: __typename }';
  for (const parameter of ['operationName', 'operation_name']) {
    const url = `${server.url}/graphql?${new URLSearchParams({ query, [parameter]: 'Second' })}`;
    const response = await fetch(url);
    assert.equal(response.status, 200, parameter);
    assert.deepEqual(await response.json(), { data: { second: 'Query' } }, parameter);
  }
});
