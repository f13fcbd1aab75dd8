// An agent fleet against the real binary, through the official TypeScript
// MCP SDK: four agents, each an MCP client with its own member's API key,
// loop claim_next_plan → heartbeat_plan → update_plan → submit_work while
// a person approves over GraphQL. Each client lists the tools first, so the
// SDK checks every result against its tool's output schema. Besides the
// invariants (every plan completed once, never before its blockers, never
// held by two agents), this asserts the texts agents read: a drift notice,
// a take-over, a stale token, a failed blocker, work sent back, a review
// policy's refusal and "nothing ready" with its reason.
//
// The same scenario runs on both databases: on SQLite with one instance,
// and on PostgreSQL with two instances sharing one fresh database and one
// spec store, the agents spread over both (and GraphQL calls alternating
// between them), so claims race across instances.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { PostgresDatabase, Server, createTeam, postgresUnavailable, runningInCi } from '../shared/server.mjs';

/** The fleet feature's plans: key, title, priority, the keys it waits for. */
const FLEET = [
  ['schema', 'Schema', 0, []],
  ['migrations', 'Migrations', 1, ['schema']],
  ['models', 'API models', 1, ['schema']],
  ['resolvers', 'GraphQL resolvers', 2, ['migrations', 'models']],
  ['tools', 'MCP tools', 2, ['models']],
  ['metrics', 'Metrics', 3, []],
  ['docs', 'Docs', 4, []],
  ['board', 'Board', 2, ['resolvers']],
  ['release', 'Release notes', 4, ['board', 'tools', 'docs']],
];

/** What becomes claimable after each round of approvals, given FLEET's dependencies. */
const WAVES = [['schema', 'metrics', 'docs'], ['migrations', 'models'], ['resolvers', 'tools'], ['board'], ['release']];

const EVENTS = `query($id: ID!) { plan(id: $id) {
  events(last: 100) { cursor kind fromStatus toStatus actor { email } note } } }`;

const textOf = (result) =>
  result.content
    .filter((block) => block.type === 'text')
    .map((block) => block.text)
    .join('\n');

/** Waits until `check` returns something truthy, polling; fails after `ms`. */
async function eventually(what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A 1 s lease must stall soon after it runs out: sweep often. */
const SWEEP = ['--sweep-every', '200ms'];

/**
 * Where the scenario runs: `start()` brings up the instances (the first
 * one's admin key is the database's first admin) and `destroy()` removes
 * everything it made. `serializedWrites`: every write waits for the one
 * before it, so event order is claim order is priority order.
 */
const SQLITE = {
  name: 'on SQLite, one instance',
  serializedWrites: true,
  async start() {
    const server = await Server.start({ args: SWEEP });
    return { servers: [server], adminKey: server.adminKey, destroy: () => server.destroy() };
  },
};

const POSTGRES = {
  name: 'on PostgreSQL, two instances sharing one database and one spec store',
  // Claims run concurrently (FOR NO KEY UPDATE SKIP LOCKED): event ids
  // follow commit order, which need not be the order the candidates were picked in.
  serializedWrites: false,
  async start() {
    const database = await PostgresDatabase.create('plangraph_fleet');
    const servers = [];
    let specs;
    const destroy = async () => {
      await Promise.all(servers.map((server) => server.destroy()));
      await database.drop();
      if (specs) await rm(specs, { recursive: true, force: true });
    };
    try {
      // Both instances run on this machine: one directory is one shared store.
      specs = await mkdtemp(join(tmpdir(), 'plangraph-fleet-specs-'));
      const args = ['--database-url', database.url, '--spec-store', `fs:${specs}`, ...SWEEP];
      // One after the other: the first creates the schema and the first admin.
      servers.push(await Server.start({ args }));
      servers.push(await Server.start({ args }));
    } catch (error) {
      await destroy();
      throw error;
    }
    return { servers, adminKey: servers[0].adminKey, destroy };
  },
};

/** Why PostgreSQL cannot be used, or null; fatal under CI=true, a skip otherwise. */
const postgresProblem = await postgresUnavailable();
const postgresSkip = postgresProblem && !runningInCi() ? `SKIPPED: ${postgresProblem} (set CI=true to make this fatal)` : false;
if (postgresSkip) console.error(postgresSkip);

describe(`an agent fleet through the TypeScript SDK ${SQLITE.name}`, () => fleetScenario(SQLITE));

describe(
  `an agent fleet through the TypeScript SDK ${POSTGRES.name}`,
  { skip: postgresSkip },
  () => fleetScenario(POSTGRES, postgresProblem),
);

/** The scenario's tests, for one setup; with a `problem` (CI=true), one failing test instead. */
function fleetScenario(setup, problem = null) {
  if (problem) {
    test('PostgreSQL is reachable, as CI=true requires', () => assert.fail(`${problem}; CI=true requires it`));
    return;
  }
  /** The running instances: one on SQLite, two on PostgreSQL. */
  let instances;
  let team;
  /** The owner, as an MCP client. */
  let owner;
  /** Four members, each its own MCP client, spread over the instances. */
  let agents = [];
  const clients = [];
  /** Round robin over the instances, for GraphQL calls. */
  let turn = 0;
  const anyInstance = () => instances.servers[turn++ % instances.servers.length];
  const label = (server) => (instances.servers.length > 1 ? `@${'AB'[instances.servers.indexOf(server)]}` : '');

  /** An MCP client for `key` on `server`, and calls that fail the test on a thrown error. */
  async function mcp(email, key, server) {
    const client = new Client({ name: `fleet-${email}`, version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    });
    await client.connect(transport);
    clients.push(client);
    const who = `${email}${label(server)}`;
    return {
      email,
      /** The email and, with several instances, which one (@A, @B). */
      who,
      client,
      server,
      /** Any call: a refusal must come back as a result, never as an exception. */
      async call(tool, args) {
        const result = await client.callTool({ name: tool, arguments: args });
        return { result, text: textOf(result), data: result.structuredContent };
      },
      async ok(tool, args) {
        const answer = await this.call(tool, args);
        assert.notEqual(answer.result.isError, true, `${who} ${tool} failed: ${answer.text}`);
        assert.ok(answer.data, `${tool} returned no structured content`);
        return answer;
      },
      /** A refusal with `code`; its text and its structured `error`. */
      async refused(tool, args, code) {
        const answer = await this.call(tool, args);
        assert.equal(answer.result.isError, true, `${who} ${tool} should be refused: ${answer.text}`);
        const { error } = answer.data;
        assert.equal(error.code, code, answer.text);
        const headline = error.reason ? `${code} (${error.reason})` : code;
        assert.equal(answer.text, `${headline}: ${error.message}`);
        return { text: answer.text, error };
      },
    };
  }

  /** GraphQL as the owner, through each instance in turn. */
  const gql = (query, variables) => anyInstance().gql(team.owner, query, variables);
  const eventsOf = async (plan) => (await gql(EVENTS, { id: plan })).plan.events;
  const statusOf = async (plan) => (await gql(`query($id: ID!) { plan(id: $id) { status } }`, { id: plan })).plan.status;
  const approve = (plan) =>
    gql(`mutation($id: ID!) { setPlanStatus(planId: $id, status: COMPLETED) { status implementedVersion } }`, { id: plan });
  const feature = (title, spec = `# ${title}\n\nThe feature's spec.`) =>
    gql(`mutation($p: ID!, $t: String!, $s: String!) { createFeature(projectId: $p, title: $t, specContent: $s) { id } }`, {
      p: team.project,
      t: title,
      s: spec,
    }).then((data) => data.createFeature.id);
  /** A READY plan, created by the owner through MCP. */
  const plan = async (featureId, title, priority = 2) =>
    (
      await owner.ok('create_plan', {
        feature_id: featureId,
        title,
        spec_content: `# ${title}\n\n1. Do it.`,
        status: 'ready',
        priority,
      })
    ).data.plan.id;

  before(async () => {
    instances = await setup.start();
    const { servers } = instances;
    // Its own feature stays without plans: each test below makes its own.
    team = await createTeam(servers[0], { featureTitle: 'Unused' });
    const keys = [['worker@example.com', team.worker]];
    for (const email of ['ada@example.com', 'grace@example.com', 'linus@example.com']) {
      // The first instance's admin key, on whichever instance.
      const created = await anyInstance().gql(
        instances.adminKey,
        `mutation($email: String!) { createUser(email: $email) { secret } }`,
        { email },
      );
      await gql(`mutation($p: ID!, $e: String!) { addProjectMember(projectId: $p, email: $e) { role } }`, {
        p: team.project,
        e: email,
      });
      keys.push([email, created.createUser.secret]);
    }
    owner = await mcp('owner@example.com', team.owner, servers[0]);
    // Half the agents on each instance: worker and grace on the first, ada and linus on the second.
    agents = await Promise.all(keys.map(([email, key], index) => mcp(email, key, servers[index % servers.length])));
  });

  after(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await instances?.destroy();
  });

  test('every instance is ready on the shared database and store, with the first admin key', async () => {
    const [first, ...others] = instances.servers;
    assert.match(first.adminKey ?? '', /^pg_/, 'the first start on a fresh database prints the first admin key');
    for (const server of others) {
      assert.equal(server.adminKey, null, `${server.url}: an instance on a database with users prints no admin key`);
    }
    for (const server of instances.servers) {
      const { viewer } = await server.gql(instances.adminKey, `{ viewer { email isAdmin } }`);
      assert.equal(viewer.isAdmin, true, `${server.url}: the first admin key works here`);
      const ready = await fetch(`${server.url}/readyz`);
      assert.equal(ready.status, 200, `${server.url}/readyz: ${await ready.text()}`);
    }
  });

  test('every client lists the tools first, so the SDK validates each result', async () => {
    for (const { client, email } of [owner, ...agents]) {
      const { tools } = await client.listTools();
      for (const name of ['claim_next_plan', 'heartbeat_plan', 'update_plan', 'submit_work', 'get_plan', 'list_plans']) {
        assert.ok(client.getToolOutputValidator(name), `${email}: ${name} has a validator`);
        assert.equal(tools.find((tool) => tool.name === name)?.outputSchema?.type, 'object');
      }
    }
  });

  test('four agents complete every plan exactly once, never before its blockers, one holder at a time', async () => {
    const featureId = await feature('Fleet');
    const ids = {};
    const priority = {};
    for (const [key, title, urgency] of FLEET) {
      ids[key] = await plan(featureId, title, urgency);
      priority[ids[key]] = urgency;
    }
    for (const [key, , , blockers] of FLEET) {
      for (const blocker of blockers) {
        await owner.ok('add_plan_dependency', { plan_id: ids[key], blocked_by_plan_id: ids[blocker] });
      }
    }
    const keyOf = Object.fromEntries(Object.entries(ids).map(([key, id]) => [id, key]));
    /** Every claim an agent was told it made: [agent, plan]. */
    const claims = [];
    /** When each plan's claim_next_plan call was sent and answered, in ms on this clock. */
    const span = {};
    const tokens = new Set();

    /** One agent's loop until claim_next_plan finds nothing; what it last read. */
    async function work(agent) {
      for (;;) {
        const sent = performance.now();
        const next = await agent.ok('claim_next_plan', { project_id: team.project, feature_id: featureId });
        const answered = performance.now();
        if (!next.data.plan) return next;
        const { plan: claimed, took_over, sent_back } = next.data;
        const token = claimed.claim_token;
        claims.push([agent.email, claimed.id]);
        span[claimed.id] = { sent, answered };
        assert.deepEqual([took_over, sent_back, next.data.nothing_ready], [null, null, null]);
        assert.match(token, /^ct_[0-9a-f]{32}_\d+$/);
        assert.ok(!tokens.has(token), 'every claim has its own token');
        tokens.add(token);
        assert.equal(claimed.claimed_by.email, agent.email);
        assert.ok(next.text.startsWith('✓ Plan claimed successfully!\n'), next.text);
        assert.ok(next.text.includes(`Claimed by: you (${agent.email})`), next.text);
        assert.ok(next.text.includes(`Claim token: ${token}`), next.text);
        assert.ok(next.text.includes(`Priority: ${priority[claimed.id]}`), next.text);

        // Reads never carry the token, not even to its holder.
        const read = await agent.ok('get_plan', { plan_id: claimed.id });
        assert.equal(read.data.plan.claim_token, null);
        assert.equal(read.data.plan.claimed_by.email, agent.email);
        assert.ok(!read.text.includes(token), 'get_plan text has no token');
        const list = await agent.ok('list_plans', { feature_id: featureId });
        assert.deepEqual(
          list.data.plans.map((row) => row.claim_token),
          list.data.plans.map(() => null),
        );
        assert.ok(!list.text.includes(token), 'list_plans text has no token');

        // Versions cut by completions keep the spec's text: no drift to read.
        const beat = await agent.ok('heartbeat_plan', { plan_id: claimed.id, claim_token: token });
        assert.ok(beat.text.startsWith('✓ Lease renewed\n'), beat.text);
        const updated = await agent.ok('update_plan', {
          plan_id: claimed.id,
          spec_content: `# ${claimed.title}\n\n1. Do it.\n\nDone by ${agent.email}.`,
          claim_token: token,
        });
        assert.equal(updated.data.plan.status, 'in_progress');
        const submitted = await agent.ok('submit_work', {
          plan_id: claimed.id,
          artifacts_markdown: `PR for ${claimed.title}`,
          status: 'review',
          claim_token: token,
        });
        assert.ok(submitted.text.startsWith('✓ Work submitted for review!\n'), submitted.text);
        assert.ok(
          submitted.text.includes('Who approves: any member or owner of the project (review policy ANY_MEMBER).'),
          submitted.text,
        );
        for (const answer of [beat, updated, submitted]) {
          assert.equal(answer.data.plan.spec_drift, null, answer.text);
          assert.equal(answer.data.plan.claim_token, null, 'only claims answer with the token');
          assert.ok(!answer.text.includes('Written against'), answer.text);
        }
      }
    }

    for (const [round, wave] of WAVES.entries()) {
      const before = claims.length;
      const last = await Promise.all(agents.map(work));
      const handed = claims.slice(before).map(([, id]) => keyOf[id]);
      assert.deepEqual(handed.toSorted(), wave.toSorted(), `round ${round + 1} hands out what is unblocked`);
      // Each agent stopped on "nothing ready": the rest waits for review or blockers.
      // (An agent that lost the race for the round's last plan must hear WAIT
      // too, not DONE: that plan is being claimed, not completed.)
      for (const [index, answer] of last.entries()) {
        const context = `round ${round + 1}, ${agents[index].who}: ${JSON.stringify(answer.data.nothing_ready)}\n${answer.text}`;
        assert.equal(answer.data.nothing_ready.reason, 'WAIT', context);
        assert.ok(
          answer.text.startsWith(
            'No plan is ready\n\nEvery open plan is taken, in review or waiting for unfinished plans; try again later.',
          ),
          context,
        );
      }
      for (const key of wave) assert.equal((await approve(ids[key])).setPlanStatus.status, 'COMPLETED');
    }
    const done = await agents[0].ok('claim_next_plan', { project_id: team.project, feature_id: featureId });
    assert.equal(done.data.nothing_ready.reason, 'DONE', done.text);

    // No plan was handed to two agents, and each claim is the one its agent was told of.
    const plans = Object.values(ids);
    assert.deepEqual(claims.map(([, id]) => id).toSorted(), plans.toSorted(), 'each plan claimed once');
    const events = Object.fromEntries(await Promise.all(plans.map(async (id) => [id, await eventsOf(id)])));
    const cursor = (id, kind) => {
      const found = events[id].filter((event) => event.kind === kind);
      assert.equal(found.length, 1, `${keyOf[id]}: one ${kind} in ${JSON.stringify(events[id])}`);
      return BigInt(found[0].cursor);
    };
    for (const [agent, id] of claims) {
      assert.equal(events[id].find((event) => event.kind === 'CLAIMED').actor.email, agent);
      for (const kind of ['SUBMITTED', 'COMPLETED']) cursor(id, kind);
      for (const kind of ['SPEC_DRIFTED', 'STALLED', 'RELEASED', 'FAILED']) {
        assert.equal(events[id].filter((event) => event.kind === kind).length, 0, `${keyOf[id]} has no ${kind}`);
      }
    }
    // Never claimed before every blocker completed; unblocked once, by the last of them.
    for (const [key, , , blockers] of FLEET) {
      const claimedAt = cursor(ids[key], 'CLAIMED');
      for (const blocker of blockers) {
        assert.ok(cursor(ids[blocker], 'COMPLETED') < claimedAt, `${key} claimed after ${blocker} completed`);
      }
      const unblocked = events[ids[key]].filter((event) => event.kind === 'UNBLOCKED');
      if (blockers.length === 0) {
        assert.equal(unblocked.length, 0, key);
        continue;
      }
      const lastBlocker = blockers.map((blocker) => cursor(ids[blocker], 'COMPLETED')).reduce((a, b) => (a > b ? a : b));
      assert.equal(unblocked.length, 1, key);
      assert.equal(unblocked[0].actor, null);
      assert.ok(BigInt(unblocked[0].cursor) > lastBlocker && BigInt(unblocked[0].cursor) < claimedAt, key);
    }
    // Within a round, no claim passed over a more urgent plan that was free:
    // any more urgent plan of the round was claimed by a call sent before
    // this claim was answered (it was taken already, or being taken). This
    // holds however claims interleave, on one instance or several.
    for (const wave of WAVES) {
      for (const key of wave) {
        for (const other of wave.filter((candidate) => priority[ids[candidate]] < priority[ids[key]])) {
          assert.ok(
            span[ids[other]].sent < span[ids[key]].answered,
            `${key} (priority ${priority[ids[key]]}) was claimed while the more urgent ${other} ` +
              `(priority ${priority[ids[other]]}) was still free: its claim was sent only after`,
          );
        }
      }
    }
    // With serialized writes the claims' events also follow priority order.
    // Not on PostgreSQL: a claim that picked a less urgent plan (skipping a
    // row another claim had locked) may commit, and draw its event id, first.
    if (setup.serializedWrites) {
      for (const wave of WAVES) {
        const urgencies = wave
          .map((key) => ids[key])
          .toSorted((a, b) => (cursor(a, 'CLAIMED') < cursor(b, 'CLAIMED') ? -1 : 1))
          .map((id) => priority[id]);
        assert.deepEqual(urgencies, urgencies.toSorted(), `claimed in priority order: ${wave}`);
      }
    }
    // Each completion cut one version, implemented by the agent that did the work.
    const { featureVersions } = await gql(
      `query($f: ID!) { featureVersions(featureId: $f, last: 100) { version implementedByPlan { id } implementedBy { email } } }`,
      { f: featureId },
    );
    assert.deepEqual(
      featureVersions.map((version) => version.version),
      Array.from({ length: plans.length + 1 }, (_, index) => index + 1),
    );
    const implemented = featureVersions.slice(1).map((version) => [version.implementedBy.email, version.implementedByPlan.id]);
    assert.deepEqual(implemented.toSorted(), claims.toSorted());
  });

  test('a changed spec drifts the held plan, and its claimer reads it in every answer', async () => {
    const featureId = await feature('Drift', '# Drift\n\nSign in with email.');
    const held = await plan(featureId, 'Held', 1);
    const sibling = await plan(featureId, 'Sibling', 2);
    const waiting = await plan(featureId, 'Waiting', 3);
    const [holder, finisher, skipper] = agents;
    const claim = await holder.ok('claim_next_plan', { project_id: team.project, feature_id: featureId });
    assert.equal(claim.data.plan.id, held);
    const token = claim.data.plan.claim_token;

    // A completion cuts v2 with the same text: nothing drifts.
    const other = await finisher.ok('claim_next_plan', { project_id: team.project, feature_id: featureId });
    assert.equal(other.data.plan.id, sibling);
    const completed = await finisher.ok('submit_work', {
      plan_id: sibling,
      artifacts_markdown: 'PR #7',
      status: 'completed',
      claim_token: other.data.plan.claim_token,
    });
    assert.equal(completed.data.feature_version.version, 2);
    for (const id of [held, waiting]) {
      assert.deepEqual(
        (await eventsOf(id)).filter((event) => event.kind === 'SPEC_DRIFTED'),
        [],
        'a version with the same text drifts nothing',
      );
    }
    const quiet = await holder.ok('heartbeat_plan', { plan_id: held, claim_token: token });
    assert.equal(quiet.data.plan.spec_drift, null);
    assert.equal(quiet.data.plan.feature.current_version, 2);
    assert.ok(!quiet.text.includes('Written against'), quiet.text);

    // The owner changes the text in a new version while the plan is held.
    const { updateFeature } = await gql(
      `mutation($f: ID!, $s: String!) { updateFeature(featureId: $f, specContent: $s, newVersion: true) { currentVersion } }`,
      { f: featureId, s: '# Drift\n\nSign in with email or with a passkey.' },
    );
    assert.equal(updateFeature.currentVersion, 3);
    for (const id of [held, waiting]) {
      const drifted = (await eventsOf(id)).filter((event) => event.kind === 'SPEC_DRIFTED');
      assert.deepEqual(
        drifted.map(({ actor, note }) => ({ actor, note })),
        [{ actor: null, note: "owner@example.com changed the feature's spec (now v3)" }],
      );
    }
    assert.deepEqual((await eventsOf(sibling)).filter((event) => event.kind === 'SPEC_DRIFTED'), []);

    const warning = '⚠ Written against v1; feature is at v3';
    const howTo = `read what changed with get_spec_diff (plan_id: ${held}), then rebase_plan`;
    const beat = await holder.ok('heartbeat_plan', { plan_id: held, claim_token: token });
    assert.deepEqual(beat.data.plan.spec_drift, { from_version: 1, to_version: 3, behind: 2 });
    assert.ok(beat.text.includes(warning) && beat.text.includes(howTo), beat.text);
    const updated = await holder.ok('update_plan', { plan_id: held, spec_content: '# Held\n\nHalf done.', claim_token: token });
    assert.ok(updated.text.includes(warning) && updated.text.includes(howTo), updated.text);

    // The drifted ready plan is left out when an agent asks to skip drifted plans.
    const skipped = await skipper.ok('claim_next_plan', { project_id: team.project, feature_id: featureId, skip_drifted: true });
    assert.equal(skipped.data.plan, null);
    assert.equal(skipped.data.nothing_ready.reason, 'SKIPPED_AS_DRIFTED', skipped.text);
    assert.equal(skipped.data.nothing_ready.ready_skipped_as_drifted, 1);
    assert.ok(skipped.text.startsWith('No plan is ready\n\nReady plans were skipped as drifted (skip_drifted: true)'), skipped.text);
    assert.ok(skipped.text.includes('- 1 ready but skipped as drifted: get_spec_diff, then rebase_plan'), skipped.text);

    const submitted = await holder.ok('submit_work', {
      plan_id: held,
      artifacts_markdown: 'PR #8',
      status: 'review',
      claim_token: token,
    });
    assert.ok(
      submitted.text.includes(`${warning} — the work was done against an older spec; the reviewer should compare it with get_spec_diff.`),
      submitted.text,
    );
    await approve(held);

    // Without skip_drifted the drifted plan is handed out, with the notice; a rebase clears it.
    const next = await skipper.ok('claim_next_plan', { project_id: team.project, feature_id: featureId });
    assert.equal(next.data.plan.id, waiting);
    assert.ok(next.text.includes('⚠ Written against v1; feature is at v4'), next.text);
    const rebased = await skipper.ok('rebase_plan', { plan_id: waiting });
    assert.deepEqual([rebased.data.plan.based_on_version, rebased.data.plan.spec_drift], [4, null]);
    const clean = await skipper.ok('heartbeat_plan', { plan_id: waiting, claim_token: next.data.plan.claim_token });
    assert.ok(!clean.text.includes('Written against'), clean.text);
    await skipper.ok('submit_work', {
      plan_id: waiting,
      artifacts_markdown: 'PR #9',
      status: 'completed',
      claim_token: next.data.plan.claim_token,
    });
  });

  test('four agents racing for one plan: one claim wins, the others are told who holds it', async () => {
    const featureId = await feature('Race');
    const id = await plan(featureId, 'Contended');
    const answers = await Promise.all(agents.map((agent) => agent.call('claim_plan', { plan_id: id })));
    const winners = answers.filter((answer) => answer.result.isError !== true);
    assert.equal(winners.length, 1, answers.map((answer) => answer.text).join('\n---\n'));
    const winner = winners[0].data.plan.claimed_by.email;
    for (const answer of answers.filter((answer) => answer.result.isError === true)) {
      assert.equal(answer.data.error.code, 'CONFLICT');
      assert.match(
        answer.text,
        new RegExp(`^CONFLICT: Plan already claimed by another user \\(${winner}, lease until \\S+Z\\); use claim_next_plan to get other work$`),
      );
    }
    assert.equal((await eventsOf(id)).filter((event) => event.kind === 'CLAIMED').length, 1);
    const agent = agents.find((candidate) => candidate.email === winner);
    await agent.ok('submit_work', {
      plan_id: id,
      artifacts_markdown: 'PR #10',
      status: 'completed',
      claim_token: winners[0].data.plan.claim_token,
    });
  });

  test('a lease that runs out is taken over, and the old token is refused as STALE_CLAIM', async () => {
    const featureId = await feature('Takeover');
    const id = await plan(featureId, 'Flaky');
    const [gone, rescuer] = agents;
    const first = await gone.ok('claim_next_plan', { project_id: team.project, feature_id: featureId, lease_seconds: 1 });
    assert.equal(first.data.plan.id, id);
    const oldToken = first.data.plan.claim_token;
    // The agent stops; the sweeper stalls the plan once its lease ran out.
    await eventually('the sweeper to stall the plan', async () => (await statusOf(id)) === 'STALLED');
    const stalled = (await eventsOf(id)).filter((event) => event.kind === 'STALLED');
    assert.deepEqual(
      stalled.map(({ actor, note }) => ({ actor, note })),
      [{ actor: null, note: "the claim's lease ran out with no activity from its claimer" }],
    );

    const hint = await rescuer.ok('claim_next_plan', { project_id: team.project, feature_id: featureId });
    assert.equal(hint.data.plan, null);
    assert.equal(hint.data.nothing_ready.reason, 'STALLED', hint.text);
    assert.ok(
      hint.text.startsWith(
        'No plan is ready\n\nStalled plans whose lease ran out can be taken over: call claim_next_plan with include_stalled: true.',
      ),
      hint.text,
    );
    assert.ok(hint.text.includes('- 1 stalled with the lease run out: include_stalled: true takes one over'), hint.text);

    const taken = await rescuer.ok('claim_next_plan', { project_id: team.project, feature_id: featureId, include_stalled: true });
    assert.equal(taken.data.plan.id, id);
    assert.equal(taken.data.plan.claimed_by.email, rescuer.email);
    assert.equal(taken.data.plan.status, 'claimed');
    assert.equal(taken.data.took_over.previous_holder, gone.email);
    assert.equal(taken.data.took_over.last_activity_at, first.data.plan.last_activity_at.replace(/\.\d+Z$/, 'Z'));
    assert.equal(taken.data.sent_back, null);
    assert.ok(taken.text.startsWith('✓ Plan claimed successfully (taken over)!\n'), taken.text);
    assert.ok(
      taken.text.includes(
        `This plan was STALLED: you took it over from ${gone.email}, whose last activity was ${taken.data.took_over.last_activity_at}.`,
      ),
      taken.text,
    );
    const newToken = taken.data.plan.claim_token;
    assert.notEqual(newToken, oldToken);

    // The agent that stopped comes back with its old token: nothing it sends changes the plan.
    for (const [tool, args] of [
      ['heartbeat_plan', {}],
      ['update_plan', { spec_content: '# Flaky\n\nMy late notes.' }],
      ['submit_work', { artifacts_markdown: 'PR #11', status: 'review' }],
      ['release_plan', {}],
    ]) {
      const { text, error } = await gone.refused(tool, { plan_id: id, claim_token: oldToken, ...args }, 'CONFLICT');
      assert.equal(error.reason, 'STALE_CLAIM');
      assert.ok(text.startsWith('CONFLICT (STALE_CLAIM): '), text);
      assert.ok(text.includes('stop working on this plan and claim another one with claim_next_plan'), text);
    }
    const read = await rescuer.ok('get_plan', { plan_id: id });
    assert.deepEqual(
      [read.data.plan.status, read.data.plan.claimed_by.email, read.data.plan.spec_content],
      ['claimed', rescuer.email, '# Flaky\n\n1. Do it.'],
    );

    await rescuer.ok('heartbeat_plan', { plan_id: id, claim_token: newToken });
    await rescuer.ok('update_plan', { plan_id: id, spec_content: '# Flaky\n\nFixed.', claim_token: newToken });
    await rescuer.ok('submit_work', { plan_id: id, artifacts_markdown: 'PR #12', status: 'review', claim_token: newToken });
    await approve(id);
  });

  test('a plan blocked by a FAILED plan is refused with the way out, and only a person frees it', async () => {
    const featureId = await feature('Blocked');
    const base = await plan(featureId, 'Foundation');
    const top = await plan(featureId, 'Roof');
    await owner.ok('add_plan_dependency', { plan_id: top, blocked_by_plan_id: base });
    const [builder, roofer] = agents;
    await builder.ok('claim_plan', { plan_id: base });
    const failed = await owner.ok('set_plan_status', { plan_id: base, status: 'failed', note: 'The ground is too soft.' });
    assert.equal(failed.data.plan.status, 'failed');

    const { text, error } = await roofer.refused('claim_plan', { plan_id: top }, 'CONFLICT');
    assert.deepEqual([error.reason, error.blocked_by, error.blocker_statuses], ['BLOCKED', [base], ['failed']]);
    assert.equal(
      text,
      `CONFLICT (BLOCKED): This plan is blocked until these plans are completed: "Foundation" (${base}, failed). ` +
        'A failed plan never completes: a project member must remove that dependency (remove_plan_dependency) or replace the failed plan; until then, use claim_next_plan to get other work',
    );

    const stuck = await roofer.ok('claim_next_plan', { project_id: team.project, feature_id: featureId });
    assert.equal(stuck.data.plan, null);
    assert.equal(stuck.data.nothing_ready.reason, 'NEEDS_PERSON', stuck.text);
    assert.equal(stuck.data.nothing_ready.ready_blocked_by_failed, 1);
    assert.ok(
      stuck.text.startsWith(
        'No plan is ready\n\nOnly a person can move the rest on (see below): ask a project member or owner instead of polling.',
      ),
      stuck.text,
    );
    assert.ok(
      stuck.text.includes(
        '- 1 ready but waiting for a FAILED plan, which never completes: a member removes the dependency (remove_plan_dependency) or replaces the failed plan',
      ),
      stuck.text,
    );

    await owner.ok('remove_plan_dependency', { plan_id: top, blocked_by_plan_id: base });
    const claimed = await roofer.ok('claim_plan', { plan_id: top });
    await roofer.ok('submit_work', {
      plan_id: top,
      artifacts_markdown: 'PR #13',
      status: 'completed',
      claim_token: claimed.data.plan.claim_token,
    });
  });

  /** The Review feature's plans, shared by the send-back and review-policy tests. */
  const review = {};

  test('work sent back from review comes back to its submitter first, with the reviewer note', async () => {
    review.feature = await feature('Review');
    review.returned = await plan(review.feature, 'Token refresh', 2);
    const worker = agents[2];
    review.worker = worker;
    const first = await worker.ok('claim_next_plan', { project_id: team.project, feature_id: review.feature });
    const firstToken = first.data.plan.claim_token;
    await worker.ok('submit_work', { plan_id: review.returned, artifacts_markdown: 'PR #14', status: 'review', claim_token: firstToken });
    // More urgent work arrives while it is in review.
    review.urgent = await plan(review.feature, 'Hotfix', 0);
    const note = 'Please cover the expired-token path with a test.';
    const { setPlanStatus } = await gql(
      `mutation($id: ID!, $note: String) { setPlanStatus(planId: $id, status: IN_PROGRESS, note: $note) { status claimedBy { email } } }`,
      { id: review.returned, note },
    );
    assert.deepEqual(setPlanStatus, { status: 'IN_PROGRESS', claimedBy: { email: worker.email } });

    const back = await worker.ok('claim_next_plan', { project_id: team.project, feature_id: review.feature });
    assert.equal(back.data.plan.id, review.returned, 'sent-back work comes before more urgent new work');
    assert.equal(back.data.plan.status, 'in_progress');
    assert.equal(back.data.took_over, null);
    assert.equal(back.data.sent_back.by, 'owner@example.com');
    assert.equal(back.data.sent_back.note, note);
    assert.ok(back.text.startsWith('↩ Work sent back to you from review\n'), back.text);
    assert.ok(
      back.text.includes(`owner@example.com sent your submitted work back at ${back.data.sent_back.at}; you hold the plan again (in_progress)`),
      back.text,
    );
    assert.ok(back.text.includes(`Reviewer's note:\n${note}`), back.text);
    const token = back.data.plan.claim_token;
    assert.match(token, /^ct_[0-9a-f]{32}_\d+$/);
    assert.equal(await statusOf(review.urgent), 'READY', 'the urgent plan was not claimed meanwhile');

    await worker.ok('update_plan', { plan_id: review.returned, spec_content: '# Token refresh\n\nWith the test.', claim_token: token });
    await worker.ok('submit_work', { plan_id: review.returned, artifacts_markdown: 'PR #14, with the test', status: 'review', claim_token: token });
  });

  test('OTHER_THAN_SUBMITTER: the submitter cannot approve its own work, another member can', async () => {
    const { setProjectReviewPolicy } = await gql(
      `mutation($p: ID!) { setProjectReviewPolicy(projectId: $p, policy: OTHER_THAN_SUBMITTER) { reviewPolicy } }`,
      { p: team.project },
    );
    assert.equal(setProjectReviewPolicy.reviewPolicy, 'OTHER_THAN_SUBMITTER');
    const { worker } = review;
    const reviewer = agents[3];

    const self = await worker.refused('set_plan_status', { plan_id: review.returned, status: 'completed' }, 'FORBIDDEN');
    assert.equal(
      self.text,
      "FORBIDDEN: This project's review policy (OTHER_THAN_SUBMITTER) does not let you approve this work: any member or owner of the project other than the submitter can approve it",
    );
    assert.equal(await statusOf(review.returned), 'REVIEW');

    // Completing one's own claim straight away would approve it too.
    const next = await worker.ok('claim_next_plan', { project_id: team.project, feature_id: review.feature });
    assert.equal(next.data.plan.id, review.urgent);
    const token = next.data.plan.claim_token;
    const direct = await worker.refused(
      'submit_work',
      { plan_id: review.urgent, artifacts_markdown: 'PR #15', status: 'completed', claim_token: token },
      'FORBIDDEN',
    );
    assert.equal(
      direct.text,
      'FORBIDDEN: This project reviews work before it is completed: submit it with status REVIEW; any member or owner of the project other than the submitter can then approve it',
    );
    const submitted = await worker.ok('submit_work', {
      plan_id: review.urgent,
      artifacts_markdown: 'PR #15',
      status: 'review',
      claim_token: token,
    });
    assert.ok(
      submitted.text.includes(
        'Who approves: any member or owner of the project other than the submitter (review policy OTHER_THAN_SUBMITTER).',
      ),
      submitted.text,
    );

    const approved = await reviewer.ok('set_plan_status', { plan_id: review.returned, status: 'completed' });
    assert.ok(approved.text.startsWith('✓ Plan completed!\n'), approved.text);
    assert.equal(approved.data.plan.status, 'completed');
    assert.equal(approved.data.feature_version.implemented_by.email, worker.email, 'the submitter did the work');
    assert.equal(approved.data.feature_version.implemented_by_plan.id, review.returned);
    await reviewer.ok('set_plan_status', { plan_id: review.urgent, status: 'completed' });
  });

  test('when everything is done, claim_next_plan says so and why', async () => {
    const done = await agents[0].ok('claim_next_plan', { project_id: team.project });
    assert.equal(done.data.plan, null);
    assert.deepEqual(done.data.nothing_ready, {
      reason: 'DONE',
      drafts: 0,
      ready_blocked: 0,
      ready_blocked_by_failed: 0,
      ready_skipped_as_drifted: 0,
      being_worked_on: 0,
      in_review: 0,
      stalled_expired: 0,
      stalled_waiting: 0,
    });
    assert.equal(
      done.text,
      'No plan is ready\n\nNothing left to do: every plan here is completed or failed. Stop polling; new work starts as plans marked ready.',
    );
    // 9 fleet plans, 3 drift, 1 race, 1 take-over, 1 roof, 2 review; the foundation failed.
    assert.deepEqual(await team.counts(), {
      draft: 0,
      ready: 0,
      claimed: 0,
      inProgress: 0,
      stalled: 0,
      review: 0,
      completed: 17,
      failed: 1,
    });
  });
}
