// Every MCP tool through the official TypeScript SDK's client against the
// real binary, as an assistant built on it would call them: tools/list
// first (the SDK then checks every result's structured content against the
// tool's output schema, with Ajv), then each tool once accepted and once
// refused. A refusal must come back as a tool error (`isError: true`, text
// starting with its code), never as an exception the SDK throws.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '../shared/server.mjs';

/** A UUID no row has. */
const MISSING = '0192f0c1-7c1e-7a4e-9c1a-1b2c3d4e5f60';

// Ajv reports what it cannot read in a schema (an unknown format, say) on
// console.warn while the SDK compiles the output schemas; kept to assert on.
const warnings = [];
const warn = console.warn;
console.warn = (...parts) => {
  warnings.push(parts.map(String).join(' '));
  warn(...parts);
};

describe('every tool through the TypeScript SDK', () => {
  let server;
  let client;
  let tools = [];
  const accepted = new Set();
  const refusedTools = new Set();
  /** What earlier steps created: ids and claim tokens. */
  const state = {};

  before(async () => {
    server = await Server.start();
    state.project = (await server.gql(server.adminKey, 'mutation { createProject(name: "Task Manager") { id } }')).createProject.id;
    client = new Client({ name: 'plangraph-tests', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${server.adminKey}` } },
    });
    await client.connect(transport);
  });

  after(async () => {
    console.warn = warn;
    await client?.close();
    await server?.destroy();
  });

  const textOf = (result) =>
    result.content
      .filter((block) => block.type === 'text')
      .map((block) => block.text)
      .join('\n');

  /** A call that must succeed; its structured content, which the SDK has validated. */
  async function ok(tool, args) {
    const result = await client.callTool({ name: tool, arguments: args });
    assert.notEqual(result.isError, true, `${tool} failed: ${textOf(result)}`);
    assert.ok(result.structuredContent, `${tool} returned no structured content`);
    accepted.add(tool);
    return result.structuredContent;
  }

  /** A call that must be refused with `code`, as a result and not a throw; its `error` facts. */
  async function refused(tool, args, code) {
    const result = await client.callTool({ name: tool, arguments: args });
    const text = textOf(result);
    assert.equal(result.isError, true, `${tool} should be refused: ${text}`);
    const { error } = result.structuredContent;
    assert.equal(error.code, code);
    // `CODE: message`, or `CODE (REASON): message` when a reason tells
    // refusals of one code apart.
    const headline = error.reason ? `${code} (${error.reason})` : code;
    assert.equal(text, `${headline}: ${error.message}`, 'the text and the structured error say the same');
    refusedTools.add(tool);
    return error;
  }

  test('tools/list gives every tool an output schema that allows its refusal', async () => {
    ({ tools } = await client.listTools());

    assert.ok(tools.length > 20, `${tools.length} tools`);
    for (const tool of tools) {
      assert.equal(tool.outputSchema?.type, 'object', tool.name);
      // The validator the SDK compiled from it, and checks results with.
      const validate = client.getToolOutputValidator(tool.name);
      assert.ok(validate, `${tool.name} has a validator`);
      assert.equal(validate({ error: { code: 'NOT_FOUND', message: 'No plan with id x' } }).valid, true, tool.name);
      assert.equal(validate({}).valid, false, `${tool.name} accepts anything`);
    }
  });

  test('list_projects', async () => {
    const { projects } = await ok('list_projects', {});
    assert.deepEqual(
      projects.map((project) => [project.id, project.role]),
      [[state.project, 'owner']],
    );

    const error = await refused('list_projects', { unexpected: true }, 'BAD_USER_INPUT');
    assert.match(error.message, /unknown field `unexpected`/);
  });

  test('create_feature', async () => {
    const { feature } = await ok('create_feature', {
      project_id: state.project,
      title: 'User Authentication',
      spec_content: '# Sign in\n\nWith Google and with email.',
    });
    assert.equal(feature.current_version, 1);
    assert.equal(feature.project.id, state.project);
    state.feature = feature.id;

    await refused('create_feature', { project_id: MISSING, title: 'Ghost', spec_content: '# Ghost' }, 'NOT_FOUND');
  });

  test('list_features', async () => {
    const { features, total, truncated } = await ok('list_features', { project_id: state.project });
    assert.deepEqual([features.map((feature) => feature.title), total, truncated], [['User Authentication'], 1, false]);

    const error = await refused('list_features', { project_id: 'proj_abc123' }, 'BAD_USER_INPUT');
    assert.equal(error.argument, 'project_id');
  });

  test('get_feature', async () => {
    const { feature } = await ok('get_feature', { feature_id: state.feature });
    assert.equal(feature.spec_content, '# Sign in\n\nWith Google and with email.');

    await refused('get_feature', { feature_id: MISSING }, 'NOT_FOUND');
  });

  test('create_plan', async () => {
    const create = async (title, status) =>
      (await ok('create_plan', { feature_id: state.feature, title, spec_content: `# ${title}\n\n1. Do it.`, status })).plan;
    const oauth = await create('OAuth', 'ready');
    assert.deepEqual([oauth.status, oauth.claimed_by, oauth.spec_content], ['ready', null, '# OAuth\n\n1. Do it.']);
    state.oauth = oauth.id;
    state.twoFactor = (await create('2FA', 'draft')).id;
    state.schema = (await create('Schema', 'ready')).id;

    await refused('create_plan', { feature_id: MISSING, title: 'Ghost', spec_content: '# Ghost' }, 'NOT_FOUND');
  });

  test('list_plans, and a malformed call is a tool error', async () => {
    const { plans, total } = await ok('list_plans', { project_id: state.project, status_filter: 'ready' });
    assert.deepEqual([plans.map((plan) => plan.title), total], [['OAuth', 'Schema'], 2]);

    const error = await refused('list_plans', { status_filter: 'done' }, 'BAD_USER_INPUT');
    assert.match(error.message, /^Invalid arguments for list_plans: unknown variant `done`/);
  });

  test('get_plan', async () => {
    const { plan } = await ok('get_plan', { plan_id: state.oauth });
    assert.deepEqual([plan.title, plan.spec_content, plan.spec_drift], ['OAuth', '# OAuth\n\n1. Do it.', null]);

    const error = await refused('get_plan', { plan_id: MISSING }, 'NOT_FOUND');
    assert.equal(error.message, `No plan with id ${MISSING}`);
  });

  test('set_plan_status', async () => {
    const error = await refused('set_plan_status', { plan_id: state.twoFactor, status: 'completed' }, 'INVALID_TRANSITION');
    assert.equal(error.current_status, 'draft');
    assert.deepEqual(error.allowed_transitions, [{ status: 'ready', operation: 'set_plan_status' }]);

    const change = await ok('set_plan_status', { plan_id: state.twoFactor, status: 'ready' });
    assert.deepEqual([change.plan.status, change.previous_status, change.feature_version], ['ready', 'draft', null]);
  });

  test('claim_plan', async () => {
    const { plan } = await ok('claim_plan', { plan_id: state.oauth });
    assert.equal(plan.status, 'claimed');
    assert.equal(typeof plan.claim_token, 'string');
    assert.equal(typeof plan.lease_expires_at, 'string');
    state.firstToken = plan.claim_token;

    const error = await refused('claim_plan', { plan_id: state.oauth }, 'CONFLICT');
    assert.equal(error.message, 'You have already claimed this plan');
    assert.equal(error.current_status, 'claimed');
    assert.equal(error.claimed_by, plan.claimed_by.id);
  });

  test('update_plan', async () => {
    const { plan } = await ok('update_plan', { plan_id: state.oauth, spec_content: '# OAuth\n\nRoutes done.', claim_token: state.firstToken });
    assert.deepEqual([plan.status, plan.spec_content], ['in_progress', '# OAuth\n\nRoutes done.']);

    const error = await refused('update_plan', { plan_id: state.oauth, spec_content: ' ' }, 'BAD_USER_INPUT');
    assert.equal(error.argument, 'spec_content');
  });

  test('release_plan', async () => {
    const change = await ok('release_plan', { plan_id: state.oauth, claim_token: state.firstToken });
    assert.deepEqual([change.plan.status, change.previous_status, change.plan.claimed_by], ['ready', 'in_progress', null]);

    const error = await refused('release_plan', { plan_id: state.oauth }, 'INVALID_TRANSITION');
    assert.equal(error.current_status, 'ready');
  });

  test('heartbeat_plan, and a stale claim token is refused', async () => {
    const claimed = (await ok('claim_plan', { plan_id: state.oauth })).plan;
    state.token = claimed.claim_token;
    const { plan } = await ok('heartbeat_plan', { plan_id: state.oauth, claim_token: state.token });
    assert.equal(plan.claim_token, null, "a token is in the claim's answer only");

    const error = await refused('heartbeat_plan', { plan_id: state.oauth, claim_token: state.firstToken }, 'CONFLICT');
    assert.equal(error.reason, 'STALE_CLAIM');
  });

  test('submit_work', async () => {
    const change = await ok('submit_work', {
      plan_id: state.oauth,
      artifacts_markdown: 'PR #1',
      status: 'review',
      claim_token: state.token,
    });
    assert.deepEqual([change.plan.status, change.previous_status, change.plan.work_artifacts], ['review', 'claimed', 'PR #1']);

    const error = await refused('submit_work', { plan_id: state.twoFactor, artifacts_markdown: 'PR #2', status: 'review' }, 'INVALID_TRANSITION');
    assert.equal(error.current_status, 'ready');

    const completed = await ok('set_plan_status', { plan_id: state.oauth, status: 'completed' });
    assert.equal(completed.feature_version.version, 2);
    assert.equal(completed.feature_version.implemented_by_plan.id, state.oauth);
  });

  test('add_plan_dependency', async () => {
    const { plan } = await ok('add_plan_dependency', { plan_id: state.twoFactor, blocked_by_plan_id: state.schema });
    assert.equal(plan.id, state.twoFactor);

    const error = await refused('add_plan_dependency', { plan_id: state.schema, blocked_by_plan_id: state.twoFactor }, 'BAD_USER_INPUT');
    assert.match(error.message, /would make a cycle/);
  });

  test('claim_next_plan, also when no plan is ready', async () => {
    const { plan } = await ok('claim_next_plan', { project_id: state.project });
    assert.equal(plan.title, 'Schema', '2FA waits for Schema');
    assert.equal(plan.spec_content, '# Schema\n\n1. Do it.');
    const none = await ok('claim_next_plan', { project_id: state.project });
    assert.equal(none.plan, null);

    // A project that does not exist and one the caller is not in read alike.
    await refused('claim_next_plan', { project_id: MISSING }, 'FORBIDDEN');
  });

  test('remove_plan_dependency', async () => {
    const { plan } = await ok('remove_plan_dependency', { plan_id: state.twoFactor, blocked_by_plan_id: state.schema });
    assert.equal(plan.id, state.twoFactor);

    await refused('remove_plan_dependency', { plan_id: MISSING, blocked_by_plan_id: state.schema }, 'NOT_FOUND');
  });

  test('set_plan_priority', async () => {
    const { plan } = await ok('set_plan_priority', { plan_id: state.twoFactor, priority: 0 });
    assert.equal(plan.priority, 0);

    const error = await refused('set_plan_priority', { plan_id: state.twoFactor, priority: 9 }, 'BAD_USER_INPUT');
    assert.equal(error.argument, 'priority');
  });

  test('update_feature', async () => {
    const { feature } = await ok('update_feature', {
      feature_id: state.feature,
      spec_content: '# Sign in\n\nWith Google, with email, and with a second factor.',
      new_version: true,
    });
    assert.equal(feature.current_version, 3);

    await refused('update_feature', { feature_id: MISSING, spec_content: '# Ghost' }, 'NOT_FOUND');
  });

  test('list_feature_versions', async () => {
    const { versions } = await ok('list_feature_versions', { feature_id: state.feature });
    assert.deepEqual(
      versions.map((version) => [version.version, version.implemented_by_plan?.title ?? null]),
      [
        [1, null],
        [2, 'OAuth'],
        [3, null],
      ],
    );

    await refused('list_feature_versions', { feature_id: MISSING }, 'NOT_FOUND');
  });

  test('get_spec_diff', async () => {
    const diff = await ok('get_spec_diff', { plan_id: state.twoFactor });
    assert.deepEqual([diff.from_version, diff.to_version], [1, 3]);
    assert.ok(diff.diff.added > 0, diff.diff.unified);

    const error = await refused('get_spec_diff', {}, 'BAD_USER_INPUT');
    assert.match(error.message, /^Give either plan_id/);
  });

  test('rebase_plan', async () => {
    const { plan } = await ok('rebase_plan', { plan_id: state.twoFactor });
    assert.deepEqual([plan.based_on_version, plan.spec_drift], [3, null]);

    const error = await refused('rebase_plan', { plan_id: state.oauth }, 'CONFLICT');
    assert.match(error.message, /cannot be rebased/);
  });

  test('every listed tool was called, accepted and refused', () => {
    const names = tools.map((tool) => tool.name).sort();
    assert.deepEqual([...accepted].sort(), names);
    assert.deepEqual([...refusedTools].sort(), names);
  });

  test('Ajv read every schema without a warning', () => {
    assert.deepEqual(warnings, []);
  });
});
