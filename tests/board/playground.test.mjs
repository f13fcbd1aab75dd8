// GraphiQL at /graphql, served from the binary: it must start with no network
// but this server's, take the API key from its Headers pane, and run queries
// (HTTP) and subscriptions (/graphql/ws) through the UI, under the page's
// Content-Security-Policy.
// Run: PLANGRAPH_BIN=/path/to/plangraph node --test tests/board/

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, blockOutside, createTeam, eventually, launchBrowser, openPage, recordCspViolations, typeInto } from './helpers.mjs';

const TIMEOUT = { timeout: 90_000 };
const HEADERS_EDITOR = '.graphiql-editor-tool .graphiql-editor:not(.hidden)';
const QUERY_EDITOR = '.graphiql-query-editor';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Runs `body` with a fresh server, always cleaned up. */
function withServer(body) {
  return async (t) => {
    const server = await Server.start();
    try {
      await body(server, t);
    } finally {
      await server.destroy();
    }
  };
}

/** GraphiQL opened offline, with every request it makes recorded. */
async function openGraphiql(server) {
  const page = await openPage(browser);
  await recordCspViolations(page);
  const outside = await blockOutside(page, server);
  const responses = [];
  page.on('response', (response) => responses.push(response));
  const document = await page.goto(`${server.url}/graphql`);
  await page.waitForSelector('.graphiql-container', { timeout: 15_000 });
  return { page, outside, responses, document };
}

/** Types the key into the Headers pane and a named operation into the query editor. */
async function prepare(page, key, operation, name) {
  const headers = await typeInto(page, HEADERS_EDITOR, `{"Authorization": "Bearer ${key}"}`);
  assert.deepEqual(JSON.parse(headers), { Authorization: `Bearer ${key}` });
  assert.equal(await typeInto(page, QUERY_EDITOR, operation), operation);
  // GraphiQL reads the operation name from the editor a moment after typing;
  // the tab shows it once it has, and running earlier would send the old one.
  await page.waitForFunction((expected) => document.querySelector('.graphiql-tab-button')?.textContent === expected, name);
}

test(
  'GraphiQL starts with the outside network blocked and runs a query with the key from the Headers pane',
  TIMEOUT,
  withServer(async (server) => {
    const { page, outside, responses, document } = await openGraphiql(server);

    const headers = document.headers();
    assert.match(headers['content-security-policy'], /script-src 'self';/);
    assert.match(headers['content-security-policy'], /frame-ancestors 'none'/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    assert.equal(headers['referrer-policy'], 'no-referrer');
    assert.equal(await page.isVisible('text=Loading GraphiQL'), false);

    await prepare(page, server.adminKey, 'query Whoami { viewer { email isAdmin } }', 'Whoami');
    await page.click('.graphiql-execute-button');

    await eventually(async () => {
      const shown = await page.$eval('.result-window .CodeMirror', (element) => element.CodeMirror.getValue());
      assert.deepEqual(JSON.parse(shown), { data: { viewer: { email: 'admin@localhost', isAdmin: true } } });
    }, 10_000);
    assert.deepEqual(outside, [], 'nothing was attempted outside the server');
    const urls = responses.map((response) => response.url());
    assert.ok(urls.every((url) => url.startsWith(`${server.url}/`)), urls.join('\n'));
    const vendored = responses.filter((response) => response.url().includes('/graphql/assets/graphiql-'));
    assert.equal(vendored.length, 2, 'GraphiQL script and stylesheet');
    for (const response of vendored) {
      assert.equal(response.status(), 200);
      assert.match(response.headers()['cache-control'], /immutable/);
    }
    assert.deepEqual(page.cspViolations, []);
    assert.deepEqual(page.errors, []);
  }),
);

test(
  'a subscription run in GraphiQL streams events over /graphql/ws, authenticated by the Headers pane',
  TIMEOUT,
  withServer(async (server) => {
    const team = await createTeam(server);
    const first = await team.plan('Login form', 'READY');
    const { events } = (
      await server.gql(team.owner, 'query($id: ID!) { plan(id: $id) { events { cursor } } }', { id: first })
    ).plan;
    const { page, outside } = await openGraphiql(server);
    const sockets = [];
    page.on('websocket', (socket) => sockets.push(socket.url()));

    // Resuming after the last known event means the next plan's event
    // arrives whether or not the socket was up when it was created.
    const subscription = `subscription Live { planEvents(projectId: "${team.project}", after: "${events.at(-1).cursor}") { kind plan { title } } }`;
    await prepare(page, team.owner, subscription, 'Live');
    await page.click('.graphiql-execute-button');
    await team.plan('Logout button', 'DRAFT');

    await eventually(async () => {
      const shown = await page.$eval('.result-window .CodeMirror', (element) => element.CodeMirror.getValue());
      assert.deepEqual(JSON.parse(shown), { data: { planEvents: { kind: 'CREATED', plan: { title: 'Logout button' } } } });
    }, 10_000);
    assert.deepEqual(sockets, [`${server.url.replace('http', 'ws')}/graphql/ws`]);
    assert.deepEqual(outside, []);
    assert.deepEqual(page.cspViolations, []);
    assert.deepEqual(page.errors, []);
  }),
);
