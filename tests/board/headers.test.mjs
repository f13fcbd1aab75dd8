// Security headers: the HTML pages (board, GraphiQL) run only this origin's
// scripts and styles, talk only to it and cannot be framed; no response may
// be sniffed as another type. The board, live over a WebSocket, keeps
// working under its policy.
// Run: PLANGRAPH_BIN=/path/to/plangraph node --test tests/board/

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, createTeam, launchBrowser, openPage, recordCspViolations, signIn } from './helpers.mjs';

const TIMEOUT = { timeout: 90_000 };

let server;
let browser;
before(async () => {
  [server, browser] = await Promise.all([Server.start(), launchBrowser()]);
});
after(async () => {
  await browser?.close();
  await server?.destroy();
});

/** The policy's directives by name, e.g. `{ 'script-src': ["'self'"] }`. */
function directives(policy) {
  return Object.fromEntries(
    policy
      .split(';')
      .map((directive) => directive.trim().split(/\s+/))
      .filter(([name]) => name)
      .map(([name, ...sources]) => [name, sources]),
  );
}

test('the board and GraphiQL pages allow only this origin and cannot be framed', TIMEOUT, async () => {
  for (const path of ['/board', '/graphql']) {
    const response = await fetch(`${server.url}${path}`, { headers: { accept: 'text/html' } });
    assert.equal(response.status, 200, path);
    assert.match(response.headers.get('content-type'), /^text\/html/, path);
    const policy = directives(response.headers.get('content-security-policy') ?? '');
    assert.deepEqual(policy['default-src'], ["'none'"], path);
    assert.deepEqual(policy['script-src'], ["'self'"], path);
    assert.deepEqual(policy['connect-src'], ["'self'"], path);
    assert.deepEqual(policy['frame-ancestors'], ["'none'"], path);
    assert.equal(policy['style-src'][0], "'self'", path);
    // GraphiQL's run-time <style> gets a fresh nonce per page; nothing else is inline.
    for (const source of policy['style-src'].slice(1)) assert.match(source, /^'nonce-[A-Za-z0-9+/=]{20,}'$/, path);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff', path);
    assert.equal(response.headers.get('referrer-policy'), 'no-referrer', path);
  }
  const first = directives((await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } })).headers.get('content-security-policy'));
  const second = directives((await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } })).headers.get('content-security-policy'));
  assert.notDeepEqual(first['style-src'], second['style-src'], 'a new nonce for every page');
});

test('every response tells browsers not to sniff its type', TIMEOUT, async () => {
  const requests = [
    fetch(`${server.url}/healthz`),
    fetch(`${server.url}/board/app.js`),
    fetch(`${server.url}/graphql/assets/playground.js`),
    fetch(`${server.url}/graphql?query=%7B__typename%7D`),
    fetch(`${server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' }),
    fetch(`${server.url}/no-such-page`),
  ];
  for (const response of await Promise.all(requests)) {
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff', response.url);
  }
});

test('the board goes live over its WebSocket with no policy violation', TIMEOUT, async () => {
  const team = await createTeam(server);
  await team.plan('Login form', 'READY');
  const page = await openPage(browser);
  await recordCspViolations(page);

  await signIn(page, server, team.owner);

  await page.click('.card');
  await page.waitForSelector('#detail[open]');
  assert.deepEqual(page.cspViolations, []);
  assert.deepEqual(page.errors, []);
});
