// A minimal graphql-transport-ws client for one resumable `planEvents`
// subscription, written directly on the browser's WebSocket.
//
// The protocol (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md):
//   client: connection_init {payload}   server: connection_ack
//   client: subscribe {id, payload: {query, variables}}
//   server: next {id, payload: {data | errors}} ... error {id, payload: [errors]} | complete {id}
//   either side: ping -> the other answers pong
// plangraph authenticates in the connection_init payload and closes the socket
// with 4403 when the key is refused.
//
// Resuming: every event has a `cursor`. We remember the last one and, after any
// break (dropped socket, server restart, RESUME_REQUIRED because we fell behind),
// subscribe again with `after: <cursor>`: the server replays what we missed and
// then continues live, so nothing is lost or duplicated.

const PROTOCOL = 'graphql-transport-ws';
const CLOSE_BAD_KEY = 4403;
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;
// The server pings every 15 s by default; this much silence means a dead link
// that the browser has not noticed (e.g. a laptop that slept).
const SILENCE_MS = 60_000;
// How long opening the socket and getting connection_ack may take.
const CONNECT_MS = 15_000;

export class PlanEventStream {
  /**
   * @param {object} options
   * @param {string} options.url       ws(s)://host/graphql/ws
   * @param {string} options.key       API key, sent in connection_init
   * @param {string} options.query     a `subscription` selecting `planEvents { cursor ... }`
   * @param {object} options.variables its variables, without `after`
   * @param {string|null} options.cursor resume point: replay everything after it (null: only new events)
   * @param {(event: object) => void} options.onEvent  one `planEvents` result
   * @param {(status: {state: string, reachable?: boolean, retryMs?: number}) => void} options.onStatus
   * @param {(code: string, message: string) => void} options.onFatal  retrying cannot help
   */
  constructor({ url, key, query, variables, cursor, onEvent, onStatus, onFatal }) {
    Object.assign(this, { url, key, query, variables, cursor, onEvent, onStatus, onFatal });
    this.socket = null;
    this.subscriptionId = null;
    this.nextId = 0;
    this.failures = 0; // consecutive failed attempts, for the backoff
    this.stopped = false;
    this.timer = null; // either the retry delay or the silence watchdog
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, 'Board closed');
    this.onStatus({ state: 'stopped' });
  }

  /** Skips the remaining backoff, e.g. when the browser is back online. */
  retryNow() {
    if (!this.stopped && !this.socket) {
      clearTimeout(this.timer);
      this.connect();
    }
  }

  connect() {
    this.onStatus({ state: this.failures === 0 ? 'connecting' : 'reconnecting', reachable: true });
    const socket = new WebSocket(this.url, PROTOCOL);
    this.socket = socket;
    socket.opened = false;
    this.watch(socket, CONNECT_MS);
    socket.onopen = () => {
      socket.opened = true;
      this.send(socket, { type: 'connection_init', payload: { Authorization: `Bearer ${this.key}` } });
    };
    socket.onmessage = (message) => {
      if (socket !== this.socket) return; // a socket we already gave up on
      this.watch(socket, SILENCE_MS);
      this.receive(socket, JSON.parse(message.data));
    };
    // `error` is always followed by `close`, which carries the code.
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      if (event.code === CLOSE_BAD_KEY) {
        this.fail('UNAUTHENTICATED', 'The server refused this API key (unknown, malformed or revoked).');
      } else {
        this.drop(socket);
      }
    };
  }

  receive(socket, message) {
    switch (message.type) {
      case 'connection_ack':
        this.failures = 0;
        this.subscribe(socket);
        this.onStatus({ state: 'live' });
        break;
      case 'ping':
        this.send(socket, { type: 'pong' });
        break;
      case 'next':
        if (message.id !== this.subscriptionId) break;
        if (message.payload.errors?.length) {
          this.refused(socket, message.payload.errors);
        } else {
          const event = message.payload.data.planEvents;
          this.cursor = event.cursor;
          this.onEvent(event);
        }
        break;
      case 'error':
        if (message.id === this.subscriptionId) this.refused(socket, message.payload);
        break;
      case 'complete':
        // The server ended the subscription (it is shutting down): start over.
        if (message.id === this.subscriptionId) this.drop(socket);
        break;
      default: // pong, or something newer than this client: nothing to do
    }
  }

  subscribe(socket) {
    this.subscriptionId = String(++this.nextId);
    const variables = { ...this.variables };
    if (this.cursor) variables.after = this.cursor;
    this.send(socket, { id: this.subscriptionId, type: 'subscribe', payload: { query: this.query, variables } });
  }

  /** The subscription ended with GraphQL errors. */
  refused(socket, errors) {
    const error = errors[0] ?? {};
    const code = error.extensions?.code;
    if (code === 'RESUME_REQUIRED') {
      // We fell too far behind; the server names where to resume from.
      this.cursor = error.extensions.lastCursor ?? this.cursor;
      this.subscribe(socket);
    } else if (['UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'BAD_USER_INPUT'].includes(code)) {
      this.fail(code, error.message);
    } else {
      this.drop(socket); // e.g. INTERNAL while the database is down: try again later
    }
  }

  /** Gives up on this socket and schedules the next attempt, with backoff. */
  drop(socket) {
    if (socket !== this.socket || this.stopped) return;
    this.socket = null;
    socket.close();
    this.failures += 1;
    // Exponential backoff with jitter, so a restarted server is not hit by
    // every board at the same instant.
    const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (this.failures - 1));
    const retryMs = Math.round(base * (0.75 + Math.random() * 0.5));
    this.onStatus({ state: 'reconnecting', reachable: socket.opened, retryMs });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), retryMs);
  }

  fail(code, message) {
    this.stop();
    this.onFatal(code, message);
  }

  /** (Re)arms the watchdog: a socket silent for `ms` is given up on. */
  watch(socket, ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.drop(socket), ms);
  }

  send(socket, message) {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }
}
