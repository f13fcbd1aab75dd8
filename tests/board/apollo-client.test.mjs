// Apollo Client, the npm package as applications use it, against the real
// server: automatic persisted queries over POST and GET, the normalized cache
// keyed by __typename and id, relayStylePagination on Query.plans, node(id:)
// landing in the same cache entries, and BatchHttpLink.
// Run: PLANGRAPH_BIN=/path/to/plangraph node --test tests/board/

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { BatchHttpLink } from '@apollo/client/link/batch-http';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { relayStylePagination } from '@apollo/client/utilities';
import { Server, eventually } from './helpers.mjs';

const TIMEOUT = { timeout: 60_000 };

let server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server?.destroy();
});

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

/** Node's fetch, recording each request's method, URL and JSON body, and the JSON answered. */
function recordingFetch() {
  const requests = [];
  const recorded = async (input, init = {}) => {
    const request = {
      method: init.method ?? 'GET',
      url: new URL(String(input)),
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
    };
    requests.push(request);
    const response = await fetch(input, init);
    request.answer = await response.clone().json();
    return response;
  };
  return { fetch: recorded, requests };
}

/** What a request carried: its persisted-query hash and document, from the body or the URL. */
function carried(request) {
  if (request.method === 'GET') {
    const extensions = request.url.searchParams.get('extensions');
    return {
      hash: extensions ? JSON.parse(extensions).persistedQuery?.sha256Hash : undefined,
      query: request.url.searchParams.get('query') ?? undefined,
    };
  }
  return { hash: request.body.extensions?.persistedQuery?.sha256Hash, query: request.body.query };
}

/** An HttpLink to the server as the bootstrap admin. */
function httpLink(fetchFn) {
  return new HttpLink({ uri: `${server.url}/graphql`, headers: { authorization: `Bearer ${server.adminKey}` }, fetch: fetchFn });
}

function apollo(link, typePolicies = {}) {
  return new ApolloClient({ link, cache: new InMemoryCache({ typePolicies }) });
}

/** A fresh project with one feature and a DRAFT plan per title, created in that order. */
async function projectWithPlans(name, titles) {
  const run = (query, variables) => server.gql(server.adminKey, query, variables);
  const project = (await run(`mutation($n: String!) { createProject(name: $n) { id } }`, { n: name })).createProject.id;
  const feature = (
    await run(`mutation($p: ID!) { createFeature(projectId: $p, title: "Feature", specContent: "# Feature") { id } }`, {
      p: project,
    })
  ).createFeature.id;
  const plans = [];
  for (const title of titles) {
    const created = await run(
      `mutation($f: ID!, $t: String!) { createPlan(featureId: $f, title: $t, specContent: "# Spec", status: DRAFT) { id } }`,
      { f: feature, t: title },
    );
    plans.push(created.createPlan.id);
  }
  return { project, feature, plans };
}

/** Subscribes to a watched query; `results` grows with every result it delivers. */
function watch(client, options) {
  const observable = client.watchQuery(options);
  const results = [];
  const subscription = observable.subscribe({ next: (result) => results.push(result) });
  return { observable, results, stop: () => subscription.unsubscribe() };
}

const PROJECT = gql`
  query ProjectName($id: ID!) {
    project(id: $id) {
      id
      name
    }
  }
`;

const PLAN = gql`
  query PlanById($id: ID!) {
    plan(id: $id) {
      id
      title
      status
    }
  }
`;

test('persisted queries: the hash alone, then the document once; a second client needs one request', TIMEOUT, async () => {
  const { project } = await projectWithPlans('Persisted', []);
  const variables = { id: project };

  const first = recordingFetch();
  const one = apollo(new PersistedQueryLink({ sha256 }).concat(httpLink(first.fetch)));
  const { data } = await one.query({ query: PROJECT, variables });
  assert.deepEqual(data.project, { __typename: 'Project', id: project, name: 'Persisted' });
  assert.equal(first.requests.length, 2, 'the hash, then the document with its hash');
  const [hashOnly, withDocument] = first.requests.map(carried);
  assert.equal(hashOnly.query, undefined, 'the first request carries no document');
  assert.deepEqual(
    first.requests[0].answer.errors.map((error) => error.extensions.code),
    ['PERSISTED_QUERY_NOT_FOUND'],
  );
  assert.match(withDocument.query, /query ProjectName/);
  assert.equal(hashOnly.hash, sha256(withDocument.query), 'the hash is the sent document’s');
  assert.equal(withDocument.hash, hashOnly.hash);

  const second = recordingFetch();
  const two = apollo(new PersistedQueryLink({ sha256 }).concat(httpLink(second.fetch)));
  const again = await two.query({ query: PROJECT, variables });
  assert.deepEqual(again.data.project, data.project);
  assert.equal(second.requests.length, 1, 'the server knows the hash');
  assert.equal(second.requests[0].method, 'POST');
  assert.equal(carried(second.requests[0]).query, undefined);
  assert.equal(carried(second.requests[0]).hash, hashOnly.hash);
});

test('persisted queries over GET: a known hash is one GET without the document, an unknown one falls back to POST', TIMEOUT, async () => {
  const { plans } = await projectWithPlans('Persisted over GET', ['Fetched by GET']);
  const getLink = (fetchFn) => new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(httpLink(fetchFn));

  // PLAN is new to the server: Apollo asks by GET, then POSTs the document.
  const unknown = recordingFetch();
  const one = apollo(getLink(unknown.fetch));
  const { data } = await one.query({ query: PLAN, variables: { id: plans[0] } });
  assert.deepEqual(data.plan, { __typename: 'Plan', id: plans[0], title: 'Fetched by GET', status: 'DRAFT' });
  assert.deepEqual(
    unknown.requests.map((request) => request.method),
    ['GET', 'POST'],
  );
  assert.equal(carried(unknown.requests[0]).query, undefined);
  assert.equal(unknown.requests[0].answer.errors[0].extensions.code, 'PERSISTED_QUERY_NOT_FOUND');
  assert.match(carried(unknown.requests[1]).query, /query PlanById/);

  // Now known: a fresh client gets it with one GET carrying the hash only.
  const known = recordingFetch();
  const two = apollo(getLink(known.fetch));
  const again = await two.query({ query: PLAN, variables: { id: plans[0] } });
  assert.deepEqual(again.data.plan, data.plan);
  assert.equal(known.requests.length, 1);
  const [request] = known.requests;
  assert.equal(request.method, 'GET');
  assert.equal(request.url.searchParams.has('query'), false, String(request.url));
  assert.equal(carried(request).hash, carried(unknown.requests[0]).hash);
  assert.equal(carried(request).hash, sha256(carried(unknown.requests[1]).query));
});

test('a mutation’s answer updates the cached plan by __typename and id, without a refetch', TIMEOUT, async () => {
  const { plans } = await projectWithPlans('Normalized', ['Cached plan']);
  const [id] = plans;
  const recorder = recordingFetch();
  const client = apollo(httpLink(recorder.fetch));

  const { data } = await client.query({ query: PLAN, variables: { id } });
  assert.equal(data.plan.status, 'DRAFT');
  const watched = watch(client, { query: PLAN, variables: { id } });
  await eventually(() => assert.equal(watched.results.at(-1)?.data?.plan?.status, 'DRAFT'));

  const { data: changed } = await client.mutate({
    mutation: gql`
      mutation MakeReady($id: ID!) {
        setPlanStatus(planId: $id, status: READY) {
          id
          status
        }
      }
    `,
    variables: { id },
  });
  assert.equal(changed.setPlanStatus.status, 'READY');

  await eventually(() => assert.equal(watched.results.at(-1)?.data?.plan?.status, 'READY'));
  watched.stop();
  assert.deepEqual(client.readQuery({ query: PLAN, variables: { id } }).plan, {
    __typename: 'Plan',
    id,
    title: 'Cached plan',
    status: 'READY',
  });
  const entries = client.cache.extract();
  assert.deepEqual(entries[`Plan:${id}`], { __typename: 'Plan', id, title: 'Cached plan', status: 'READY' });
  assert.deepEqual(entries.ROOT_QUERY[`plan({"id":"${id}"})`], { __ref: `Plan:${id}` });
  assert.deepEqual(
    recorder.requests.map((request) => request.body.operationName),
    ['PlanById', 'MakeReady'],
    'the watched query was answered from the cache, before and after',
  );
});

test('relayStylePagination on Query.plans grows one list with fetchMore until the last page', TIMEOUT, async () => {
  const titles = ['First', 'Second', 'Third', 'Fourth', 'Fifth'];
  const { project, plans } = await projectWithPlans('Paged', titles);
  const recorder = recordingFetch();
  const client = apollo(httpLink(recorder.fetch), { Query: { fields: { plans: relayStylePagination(['projectId']) } } });
  const PLANS = gql`
    query ProjectPlans($projectId: ID!, $first: Int, $after: String) {
      plans(projectId: $projectId, first: $first, after: $after) {
        totalCount
        edges {
          cursor
          node {
            id
            title
          }
        }
        pageInfo {
          hasNextPage
          endCursor
          hasPreviousPage
          startCursor
        }
      }
    }
  `;
  const watched = watch(client, { query: PLANS, variables: { projectId: project, first: 2 } });
  // fetchMore resolves with the new page alone; the merged list reaches the watcher after it.
  const current = () => watched.results.at(-1)?.data?.plans;

  await eventually(() => assert.equal(current()?.edges.length, 2));
  assert.equal(current().totalCount, 5);
  assert.equal(current().pageInfo.hasNextPage, true);

  const second = await watched.observable.fetchMore({ variables: { after: current().pageInfo.endCursor } });
  assert.equal(second.data.plans.edges.length, 2);
  await eventually(() => assert.equal(current().edges.length, 4));
  assert.deepEqual(
    current().edges.map((edge) => edge.node.title),
    titles.slice(0, 4),
  );
  assert.equal(current().pageInfo.hasNextPage, true);

  const last = await watched.observable.fetchMore({ variables: { after: current().pageInfo.endCursor } });
  assert.equal(last.data.plans.edges.length, 1);
  await eventually(() => assert.equal(current().edges.length, 5));
  watched.stop();
  const list = current();
  assert.deepEqual(
    list.edges.map((edge) => edge.node.title),
    titles,
  );
  assert.deepEqual(
    list.edges.map((edge) => edge.node.id),
    plans,
  );
  assert.equal(list.pageInfo.hasNextPage, false);
  assert.equal(list.pageInfo.endCursor, list.edges.at(-1).cursor);
  assert.equal(list.pageInfo.startCursor, list.edges[0].cursor);

  // Apollo keys root fields by the root type's name: the list lives on ROOT_QUERY, by project only.
  const root = client.cache.extract().ROOT_QUERY;
  assert.equal(root.__typename, 'Query');
  const stored = root[`plans:{"projectId":"${project}"}`];
  assert.equal(stored?.edges.length, 5, Object.keys(root).join(', '));
  assert.deepEqual(
    recorder.requests.map((request) => request.body.variables.after ?? null),
    [null, list.edges[1].cursor, list.edges[3].cursor],
  );
});

test('node(id:) refetches a plan into the same Plan:<id> entry that plan(id:) reads', TIMEOUT, async () => {
  const { plans } = await projectWithPlans('Refetched', ['Found by node']);
  const [id] = plans;
  const client = apollo(httpLink(fetch));
  const NODE = gql`
    query Refetch($id: ID!) {
      node(id: $id) {
        id
        ... on Plan {
          title
          status
        }
      }
    }
  `;

  await client.query({ query: PLAN, variables: { id } });
  // Changed behind the cache's back; a Relay-style refetch by id brings it in.
  await server.gql(server.adminKey, `mutation($id: ID!) { setPlanStatus(planId: $id, status: READY) { id } }`, { id });
  const { data } = await client.query({ query: NODE, variables: { id }, fetchPolicy: 'network-only' });
  assert.deepEqual(data.node, { __typename: 'Plan', id, title: 'Found by node', status: 'READY' });

  const fromCache = await client.query({ query: PLAN, variables: { id }, fetchPolicy: 'cache-only' });
  assert.equal(fromCache.data.plan.status, 'READY', 'plan(id:) sees what node(id:) wrote');
  const entries = client.cache.extract();
  assert.deepEqual(entries.ROOT_QUERY[`node({"id":"${id}"})`], { __ref: `Plan:${id}` });
  assert.deepEqual(entries.ROOT_QUERY[`plan({"id":"${id}"})`], { __ref: `Plan:${id}` });
  assert.deepEqual(
    Object.keys(entries).filter((key) => key.startsWith('Plan:')),
    [`Plan:${id}`],
  );
});

test('BatchHttpLink sends three queries in one request whose body is an array, and gets each answer', TIMEOUT, async () => {
  const { project, feature, plans } = await projectWithPlans('Batched', ['In a batch']);
  const recorder = recordingFetch();
  const client = apollo(
    new BatchHttpLink({
      uri: `${server.url}/graphql`,
      headers: { authorization: `Bearer ${server.adminKey}` },
      fetch: recorder.fetch,
      batchMax: 3,
      batchInterval: 20,
    }),
  );
  const FEATURE = gql`
    query FeatureTitle($id: ID!) {
      feature(id: $id) {
        id
        title
      }
    }
  `;

  const [named, plan, titled] = await Promise.all([
    client.query({ query: PROJECT, variables: { id: project } }),
    client.query({ query: PLAN, variables: { id: plans[0] } }),
    client.query({ query: FEATURE, variables: { id: feature } }),
  ]);

  assert.equal(named.data.project.name, 'Batched');
  assert.equal(plan.data.plan.title, 'In a batch');
  assert.equal(titled.data.feature.title, 'Feature');
  assert.equal(recorder.requests.length, 1);
  const [request] = recorder.requests;
  assert.ok(Array.isArray(request.body), 'the body is a JSON array');
  assert.equal(request.answer.length, 3, 'and so is the answer');
  assert.deepEqual(
    request.body.map((operation) => operation.operationName),
    ['ProjectName', 'PlanById', 'FeatureTitle'],
  );
});
