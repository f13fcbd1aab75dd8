// The GraphQL-over-HTTP conformance audit of the graphql-http package, every
// server audit, against the real server.
// Run: PLANGRAPH_BIN=/path/to/plangraph node --test tests/board/

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverAudits } from 'graphql-http';
import { Server } from './helpers.mjs';

// MAYs that plangraph leaves alone on purpose: a JSON body without `query`
// (e.g. `qeury`) is answered as it always was under application/json, with
// 200 and a GraphQL error; under application/graphql-response+json it is a 400.
const KEPT_NOTICES = ['8764', '3E3A'];

test('every GraphQL-over-HTTP server audit passes, with no warnings', { timeout: 90_000 }, async (t) => {
  const server = await Server.start();
  try {
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
  } finally {
    await server.destroy();
  }
});
