// The real plangraph binary for the node test suites (tests/board,
// tests/clients): started on an ephemeral port with its own data directory,
// set up with GraphQL over HTTP. No npm dependencies, so any suite can
// import it whatever it has installed.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const BIN = process.env.PLANGRAPH_BIN ?? '/var/tmp/plangraph-target/debug/plangraph';

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
