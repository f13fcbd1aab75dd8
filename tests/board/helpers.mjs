// Helpers for the board's end-to-end tests: the real plangraph binary (from
// tests/shared, which the MCP client tests use too), GraphQL over HTTP to
// set up data, and Debian's chromium driven by playwright-core.

import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

export { Server, createTeam } from '../shared/server.mjs';
export { sleep };

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A fresh browser context (own localStorage) with one page. Uncaught page
 * errors are collected in `page.errors` so tests can assert there were none.
 */
export async function openPage(browser, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (error) => page.errors.push(error));
  // Anything the page asks for and does not get (a favicon, say).
  page.failedRequests = [];
  page.on('response', (response) => {
    if (response.status() >= 400) page.failedRequests.push(`${response.status()} ${response.url()}`);
  });
  return page;
}

/** Retries an (async) assertion until it passes or `timeout` ms elapse. */
export async function eventually(check, timeout = 5_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await sleep(50);
  }
}

/** The number shown in each column header, by status. */
export function columnCounts(page) {
  return page.$$eval('.column', (columns) =>
    Object.fromEntries(columns.map((column) => [column.dataset.status, Number(column.querySelector('.count').textContent)])),
  );
}

/** Titles of the cards in one column. */
export function cardTitles(page, status) {
  return page.$$eval(`.column[data-status="${status}"] .card-title`, (titles) => titles.map((title) => title.textContent));
}

/** Signs in through the form and waits until the board is live. */
export async function signIn(page, server, key) {
  await page.goto(`${server.url}/board`);
  await page.fill('#key', key);
  await page.click('button[type="submit"]');
  await page.waitForSelector('#live[data-state="live"]', { timeout: 10_000 });
}

/**
 * Collects the page's Content-Security-Policy violations (directive and
 * blocked URI) in `page.cspViolations`, across navigations.
 */
export async function recordCspViolations(page) {
  page.cspViolations = [];
  await page.exposeFunction('reportCspViolation', (violation) => page.cspViolations.push(violation));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) =>
      window.reportCspViolation(`${event.effectiveDirective} ${event.blockedURI}`),
    );
  });
}

/**
 * Lets the page reach `server` only: every other request is aborted and
 * listed in the returned array (WebSockets are listed too; same-origin ones
 * are allowed). Data URLs never reach the network and are not seen here.
 */
export async function blockOutside(page, server) {
  const attempted = [];
  await page.context().route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === server.url) return route.continue();
    attempted.push(url);
    return route.abort('blockedbyclient');
  });
  page.on('websocket', (socket) => {
    if (new URL(socket.url()).host !== new URL(server.url).host) attempted.push(socket.url());
  });
  return attempted;
}

/** Replaces the text of a CodeMirror editor by typing, as a person would. */
export async function typeInto(page, editor, text) {
  await page.click(`${editor} .CodeMirror`);
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(text);
  return page.$eval(`${editor} .CodeMirror`, (element) => element.CodeMirror.getValue());
}
