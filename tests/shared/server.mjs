// The real plangraph binary for the node test suites (tests/board,
// tests/clients): started on an ephemeral port with its own data directory,
// set up with GraphQL over HTTP. No npm dependencies, so any suite can
// import it whatever it has installed.

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const BIN = process.env.PLANGRAPH_BIN ?? '/var/tmp/plangraph-target/debug/plangraph';
const execFileAsync = promisify(execFile);

/** A running plangraph process. */
export class Server {
  /** Starts the binary; `port` 0 picks a free port. */
  static async start({ dataDir, port = 0, args = [] } = {}) {
    dataDir ??= await mkdtemp(join(tmpdir(), 'plangraph-node-'));
    // Flags only: a PLANGRAPH_* variable of the caller's shell must not leak in.
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PLANGRAPH_')));
    const child = spawn(BIN, ['--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = [];
    createInterface({ input: child.stderr }).on('line', (line) => log.push(line));
    let adminKey = null;
    const address = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`plangraph did not start in time:\n${log.join('\n')}`)), 30_000);
      child.on('error', reject);
      child.on('exit', (code) => reject(new Error(`plangraph exited (${code}) at start:\n${log.join('\n')}`)));
      createInterface({ input: child.stdout }).on('line', (line) => {
        log.push(line);
        if (line.startsWith('pg_')) adminKey = line.trim();
        const listening = line.match(/listening on http:\/\/(\S+)\/graphql/);
        if (listening) {
          clearTimeout(timer);
          resolve(listening[1]);
        }
      });
    });
    const server = new Server();
    Object.assign(server, { child, dataDir, adminKey, log, url: `http://${address}`, port: Number(address.split(':').at(-1)) });
    server.exited = new Promise((resolve) => child.on('exit', resolve));
    return server;
  }

  /** SIGTERM, and wait for the process to end (SIGKILL if it hangs). */
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(killer);
  }

  /** Stops this process and starts a new one on the same data directory and port. */
  async restart() {
    await this.stop();
    return Server.start({ dataDir: this.dataDir, port: this.port });
  }

  /** Stops the process and deletes its data directory. */
  async destroy() {
    await this.stop();
    await rm(this.dataDir, { recursive: true, force: true });
  }

  /** A GraphQL request as the owner of `key`; throws on any error. */
  async gql(key, query, variables = {}) {
    const response = await fetch(`${this.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    if (body.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(body.errors)}`);
    return body.data;
  }
}

/**
 * A project with an owner and a worker (both members), one feature, and
 * helpers to put plans into any status the way a real team would.
 */
export async function createTeam(server, { projectName = 'Task Manager', featureTitle = 'User Authentication' } = {}) {
  const user = async (email, displayName) =>
    (
      await server.gql(
        server.adminKey,
        `mutation($email: String!, $displayName: String) {
          createUser(email: $email, displayName: $displayName) { secret apiKey { id } } }`,
        { email, displayName },
      )
    ).createUser;
  const owner = await user('owner@example.com', 'Olivia Owner');
  const worker = await user('worker@example.com', 'Walter Worker');
  const project = (
    await server.gql(owner.secret, `mutation($name: String!) { createProject(name: $name) { id } }`, { name: projectName })
  ).createProject.id;
  await server.gql(owner.secret, `mutation($p: ID!) { addProjectMember(projectId: $p, email: "worker@example.com") { role } }`, {
    p: project,
  });
  const team = {
    owner: owner.secret,
    ownerKeyId: owner.apiKey.id,
    worker: worker.secret,
    project,
    async feature(title) {
      return (
        await server.gql(
          owner.secret,
          `mutation($p: ID!, $t: String!) { createFeature(projectId: $p, title: $t, specContent: "# Feature") { id } }`,
          { p: project, t: title },
        )
      ).createFeature.id;
    },
    /** Creates a plan and walks it to `status`, as owner and worker. */
    async plan(title, status = 'READY', { feature = team.featureId, spec = `# ${title}\n\n1. Do it.` } = {}) {
      const initial = status === 'DRAFT' ? 'DRAFT' : 'READY';
      const id = (
        await server.gql(
          owner.secret,
          `mutation($f: ID!, $t: String!, $s: String!, $st: PlanStatus!) {
            createPlan(featureId: $f, title: $t, specContent: $s, status: $st) { id } }`,
          { f: feature, t: title, s: spec, st: initial },
        )
      ).createPlan.id;
      const as = (key, mutation, variables = {}) => server.gql(key, mutation, { id, ...variables });
      if (['CLAIMED', 'IN_PROGRESS', 'REVIEW', 'COMPLETED', 'FAILED'].includes(status)) {
        await as(worker.secret, `mutation($id: ID!) { claimPlan(planId: $id) { id } }`);
      }
      if (status === 'IN_PROGRESS') {
        await as(worker.secret, `mutation($id: ID!) { updatePlan(planId: $id, specContent: "# Progress") { id } }`);
      }
      if (status === 'REVIEW' || status === 'COMPLETED') {
        await as(
          worker.secret,
          `mutation($id: ID!, $st: SubmitStatus!) { submitWork(planId: $id, artifactsMarkdown: "PR #1", status: $st) { plan { id } } }`,
          { st: status },
        );
      }
      if (status === 'FAILED') {
        await as(owner.secret, `mutation($id: ID!) { setPlanStatus(planId: $id, status: FAILED) { id } }`);
      }
      return id;
    },
    claim: (id, key = worker.secret) => server.gql(key, `mutation($id: ID!) { claimPlan(planId: $id) { id } }`, { id }),
    counts: async () =>
      (
        await server.gql(
          owner.secret,
          `query($p: ID!) { project(id: $p) { planCounts { draft ready claimed inProgress stalled review completed failed } } }`,
          { p: project },
        )
      ).project.planCounts,
  };
  team.featureId = await team.feature(featureTitle);
  return team;
}

// PostgreSQL for the node suites: the machine's cluster at 127.0.0.1:5432,
// user postgres with trust auth, as scripts/test.sh and the Rust API tests
// (tests/api/helpers/server.rs) use it. With CI=true an unreachable
// PostgreSQL fails the suite that needs it; without, the suite is skipped
// with a notice.

export const POSTGRES_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** Whether this run is CI's, where nothing may be skipped (`CI=true`). */
export const runningInCi = () => process.env.CI === 'true';

/** `psql` on PATH, else the newest of /usr/lib/postgresql/<version>/bin; null if none. */
function psqlBinary() {
  for (const directory of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(directory, 'psql');
    if (isExecutable(candidate)) return candidate;
  }
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql') : [];
  for (const version of versions.toSorted((a, b) => Number(b) - Number(a))) {
    const candidate = join('/usr/lib/postgresql', version, 'bin', 'psql');
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function isExecutable(path) {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Runs one SQL command as postgres on the `postgres` database; its output. */
async function psql(sql) {
  const binary = psqlBinary();
  if (!binary) throw new Error('psql is neither on PATH nor in /usr/lib/postgresql/*/bin');
  // The caller's PG* variables (PGDATABASE, PGOPTIONS, …) must not leak in.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG')));
  const { stdout } = await execFileAsync(
    binary,
    ['-h', '127.0.0.1', '-p', '5432', '-U', 'postgres', '-d', 'postgres', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    { env: { ...env, PGCONNECT_TIMEOUT: '5' }, timeout: 20_000 },
  );
  return stdout.trim();
}

/**
 * Why PostgreSQL cannot be used (psql missing, nothing answering), or null
 * when it answers. The message says what CI=true does about it.
 */
export async function postgresUnavailable() {
  try {
    await psql('SELECT 1');
    return null;
  } catch (error) {
    const why = (error.stderr || error.message || String(error)).trim().replace(/\s+/g, ' ');
    return `PostgreSQL at ${POSTGRES_ADMIN_URL} is unreachable (${why})`;
  }
}

/** A fresh, uniquely named PostgreSQL database; `drop()` removes it. */
export class PostgresDatabase {
  static async create(prefix = 'plangraph_node') {
    const name = `${prefix}_${randomBytes(8).toString('hex')}`;
    await psql(`CREATE DATABASE ${name}`);
    const database = new PostgresDatabase();
    Object.assign(database, { name, url: `postgres://postgres@127.0.0.1:5432/${name}` });
    return database;
  }

  /** Drops the database, closing what still uses it. */
  async drop() {
    await psql(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`);
  }
}
