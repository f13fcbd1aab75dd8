// The live board: sign in with an API key, pick a project (and a feature),
// see its plans in one column per status, watch them move.
//
// Data flow, the part worth copying into your own dashboard:
//   1. read a resume point (the newest event cursor we can see) FIRST,
//   2. then load the plans over HTTP (page by page),
//   3. then subscribe to planEvents with `after: <that cursor>`.
// Anything that changes between 1 and 3 is replayed by the server, so the
// board cannot miss a change made while it was loading. Events carry the plan
// as it is when delivered, so applying one twice is harmless.

import { GraphQLError, gql, pageAll, request } from './graphql.js';
import { PlanEventStream } from './live.js';

const STATUSES = ['DRAFT', 'READY', 'CLAIMED', 'IN_PROGRESS', 'STALLED', 'REVIEW', 'COMPLETED', 'FAILED'];
const KEY_STORAGE = 'plangraph.board.apiKey';
/**
 * Cards a column loads at once, more on request: a board of ten thousand
 * plans opens with eight small pages. Each card's `blockedBy` is priced at
 * the most blockers a plan may have, so pages stay well under the server's
 * complexity limit.
 */
const COLUMN_PAGE = 20;

const CARD = `fragment Card on Plan {
  id title status priority updatedAt lastActivityAt leaseExpiresAt
  claimedBy { id email displayName }
  feature { id title }
  specDrift { fromVersion toVersion behind }
  blockedBy { id title status }
}`;
const VIEWER = `query BoardViewer { viewer { email displayName } projects { id name } }`;
// Any event cursor we have seen committed is a safe resume point (an older
// one only means a longer replay); the most recently changed plan's last
// event is the newest one visible to us.
const LATEST_CURSOR = `query BoardResumePoint {
  plans(orderBy: { field: UPDATED_AT, direction: DESC }, first: 1) { nodes { events { cursor } } }
}`;
const MEMBERS = `query BoardMembers($projectId: ID!) {
  project(id: $projectId) { members { user { id email displayName } } }
}`;
const FEATURES = `query BoardFeatures($projectId: ID!, $after: String) {
  project(id: $projectId) {
    features(first: 100, after: $after) { nodes { id title } pageInfo { hasNextPage endCursor } }
  }
}`;
// One column's page, most recently changed first (as columns show them),
// with the column's exact count.
const COLUMN = `query BoardColumn($projectId: ID, $featureId: ID, $status: [PlanStatus!], $first: Int, $after: String,
    $claimedBy: ID, $blocked: Boolean, $drifted: Boolean, $search: String) {
  plans(projectId: $projectId, featureId: $featureId, status: $status, first: $first, after: $after,
        orderBy: { field: UPDATED_AT, direction: DESC },
        claimedBy: $claimedBy, blocked: $blocked, drifted: $drifted, search: $search) {
    totalCount nodes { ...Card } pageInfo { hasNextPage endCursor }
  }
}
${CARD}`;
const PLAN_DETAIL = `query BoardPlanDetail($id: ID!) {
  plan(id: $id) {
    ...Card description spec specHtml workArtifacts implementedVersion
    submittedBy { email displayName }
    blocks { id }
    project { viewerRole }
    specDrift { fromVersion toVersion behind diff { unified added removed truncated } }
    events(last: 100) { cursor kind fromStatus toStatus at actor { email displayName } note }
    availableActions { toStatus operation allowed reason }
  }
}
${CARD}`;
// The moves a card's dialog offers, as the server lists them for the viewer
// (`Plan.availableActions`): the board keeps no copy of the workflow's rules.
const SET_STATUS = `mutation BoardSetStatus($id: ID!, $status: PlanStatus!, $note: String) {
  setPlanStatus(planId: $id, status: $status, note: $note) { id status implementedVersion }
}`;
const SET_PRIORITY = `mutation BoardSetPriority($id: ID!, $priority: Int!) {
  setPlanPriority(planId: $id, priority: $priority) { id priority }
}`;
const REBASE = `mutation BoardRebase($id: ID!) { rebasePlan(planId: $id) { id basedOnVersion } }`;
const ADD_DEPENDENCY = `mutation BoardAddDependency($id: ID!, $blocker: ID!) {
  addPlanDependency(planId: $id, blockedByPlanId: $blocker) { id }
}`;
const REMOVE_DEPENDENCY = `mutation BoardRemoveDependency($id: ID!, $blocker: ID!) {
  removePlanDependency(planId: $id, blockedByPlanId: $blocker) { id }
}`;
const FIND_PLANS = `query BoardFindPlans($projectId: ID!, $search: String!) {
  plans(projectId: $projectId, search: $search, first: 8) { nodes { id title status } }
}`;
const RELEASE = `mutation BoardRelease($id: ID!) { releasePlan(planId: $id) { id status } }`;
const CLAIM = `mutation BoardClaim($id: ID!) { claimPlan(planId: $id) { id status } }`;
const PLAN_EVENTS = `subscription BoardEvents($projectId: ID, $featureId: ID, $after: String) {
  planEvents(projectId: $projectId, featureId: $featureId, after: $after) {
    cursor kind fromStatus toStatus at actor { email displayName } note
    plan { ...Card }
  }
}
${CARD}`;

const state = {
  key: null,
  projects: [],
  projectId: null,
  featureId: null,
  plans: new Map(), // id -> plan, the board's whole model
  stream: null,
  generation: 0, // bumped per board load; a slower, older load is ignored
  openPlanId: null, // the plan shown in the detail dialog
  seenInDialog: new Set(), // event cursors listed in the dialog
  columns: {}, // status -> { total, endCursor, hasNext }: each column's count and paging
  query: {}, // the variables the columns were loaded with
  detail: null, // the plan as the dialog last loaded it
  filters: {}, // claimer, blocked, drifted, search: applied by the server, kept in the URL
};

const $ = (id) => document.getElementById(id);

/** Builds an element; children are nodes or text (never parsed as HTML). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) element.setAttribute(name, value);
  }
  element.append(...children.filter((child) => child !== null && child !== undefined));
  return element;
}

const label = (status) => status.charAt(0) + status.slice(1).toLowerCase().replace('_', ' ');
/** A project's name, with the end of its id where another project has the same name. */
const projectLabel = (project, projects) =>
  projects.some((other) => other.id !== project.id && other.name === project.name) ? `${project.name} (${project.id.slice(-6)})` : project.name;
const person = (user) => (user ? user.displayName || user.email : 'the system');

// ---- Time ----------------------------------------------------------------

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

function time(iso) {
  return h('time', { datetime: iso, title: new Date(iso).toLocaleString(), 'data-relative': '' }, ago(iso));
}

/** `12 min left` until `iso`, `ran out 3 min ago` after it. */
function left(iso) {
  const seconds = (Date.parse(iso) - Date.now()) / 1000;
  if (seconds <= 0) return `ran out ${ago(iso)}`;
  if (seconds < 60) return `${Math.ceil(seconds)} s left`;
  if (seconds < 3600) return `${Math.ceil(seconds / 60)} min left`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min left`;
  return `${Math.floor(seconds / 86400)} d left`;
}

function until(iso) {
  return h('time', { datetime: iso, title: new Date(iso).toLocaleString(), 'data-until': '' }, left(iso));
}

function refreshTimes() {
  for (const element of document.querySelectorAll('time[data-relative]')) {
    element.textContent = ago(element.getAttribute('datetime'));
  }
  for (const element of document.querySelectorAll('time[data-until]')) {
    element.textContent = left(element.getAttribute('datetime'));
  }
}

// ---- Messages --------------------------------------------------------------

/** What a person should read for an error, by its code. */
function explain(error) {
  switch (error.code) {
    case 'UNAUTHENTICATED':
      return 'This API key was not accepted: it is unknown, mistyped or revoked. Paste a valid key (it starts with pg_).';
    case 'FORBIDDEN':
      return 'You are not a member of this project. Ask one of its owners to add you, or pick another project.';
    case 'NOT_FOUND':
      return 'This project does not exist. Pick another one.';
    case 'UNREACHABLE':
      return error.message;
    default:
      return `Something went wrong on the server: ${error.message}`;
  }
}

function showNotice(text, retry) {
  const notice = $('notice');
  notice.replaceChildren();
  notice.hidden = !text;
  if (!text) return;
  notice.append(h('p', {}, text));
  if (retry) {
    const button = h('button', { type: 'button' }, 'Try again');
    button.addEventListener('click', retry);
    notice.append(button);
  }
}

function handleError(error, retry) {
  if (!(error instanceof GraphQLError)) throw error;
  if (error.code === 'UNAUTHENTICATED') {
    signOut(explain(error));
  } else {
    // Columns without their plans would read as "no plans": hide them.
    $('board').hidden = true;
    showNotice(explain(error), error.code === 'UNREACHABLE' || error.code === 'INTERNAL' ? retry : null);
  }
}

// ---- Signing in and out ----------------------------------------------------------

function showSignIn(message) {
  document.body.dataset.view = 'signin';
  $('signin-error').textContent = message ?? '';
  $('key').value = '';
  $('key').focus();
}

async function signIn(key) {
  showNotice(null);
  let data;
  try {
    data = await gql(key, VIEWER);
  } catch (error) {
    if (error.code === 'UNAUTHENTICATED') {
      localStorage.removeItem(KEY_STORAGE);
      showSignIn(explain(error));
    } else if (document.body.dataset.view === 'signin') {
      $('signin-error').textContent = explain(error);
    } else {
      handleError(error, () => signIn(key));
    }
    return;
  }
  localStorage.setItem(KEY_STORAGE, key);
  state.key = key;
  state.projects = data.projects;
  document.body.dataset.view = 'board';
  $('who').textContent = `Signed in as ${person(data.viewer)}`;

  const wanted = new URLSearchParams(location.hash.slice(1));
  const select = $('project');
  select.replaceChildren(
    h('option', { value: '', disabled: '' }, 'Choose a project'),
    ...data.projects.map((project) => h('option', { value: project.id }, projectLabel(project, data.projects))),
  );
  state.projectId = wanted.get('project') || data.projects[0]?.id || null;
  state.featureId = wanted.get('feature') || null;
  state.filters = filtersFrom(wanted);
  select.value = state.projectId ?? '';
  if (!state.projectId) {
    $('board').hidden = true;
    showNotice('You are not a member of any project yet. Ask a project owner to add you.');
    return;
  }
  await openBoard();
}

function signOut(message) {
  state.generation += 1;
  state.stream?.stop();
  state.stream = null;
  state.key = null;
  state.plans.clear();
  localStorage.removeItem(KEY_STORAGE);
  $('detail').close();
  renderBoard();
  showNotice(null);
  showSignIn(message);
}

// ---- Loading a board ---------------------------------------------------------

async function openBoard() {
  const generation = ++state.generation;
  const { key, projectId, featureId } = state;
  state.stream?.stop();
  state.stream = null;
  state.plans.clear();
  state.columns = {};
  renderBoard();
  showNotice(null);
  $('board').hidden = false;
  history.replaceState(null, '', `#${boardHash()}`);
  showFilters();
  $('board').setAttribute('aria-busy', 'true');
  try {
    const latest = await gql(key, LATEST_CURSOR);
    // No plan visible means no event visible yet: replaying from the very
    // start then delivers exactly what is committed while the board loads.
    const cursor = latest.plans.nodes[0]?.events.at(-1)?.cursor ?? '0';
    const { claimer, blocked, drifted, search } = state.filters;
    const wanted = { projectId, featureId, claimedBy: claimer ?? null, blocked: blocked || null, drifted: drifted || null, search: search || null };
    const [features, members, ...columns] = await Promise.all([
      pageAll(key, FEATURES, { projectId }, (data) => data.project.features),
      gql(key, MEMBERS, { projectId }),
      ...STATUSES.map((status) => gql(key, COLUMN, { ...wanted, status: [status], first: COLUMN_PAGE, after: null })),
    ]);
    if (generation !== state.generation) return;
    fillFeatures(features);
    fillClaimers(members.project.members.map((member) => member.user));
    state.query = wanted;
    STATUSES.forEach((status, index) => addPage(status, columns[index].plans));
    renderBoard();
    startStream(cursor);
  } catch (error) {
    if (generation === state.generation) handleError(error, openBoard);
  } finally {
    if (generation === state.generation) $('board').removeAttribute('aria-busy');
  }
}

/** The filters a board URL names (`claimer`, `blocked=1`, `drifted=1`, `q`). */
function filtersFrom(params) {
  return {
    claimer: params.get('claimer') || null,
    blocked: params.get('blocked') === '1',
    drifted: params.get('drifted') === '1',
    search: params.get('q') || '',
  };
}

/** The URL of what the board shows, so a link reopens it as it is. */
function boardHash() {
  const params = new URLSearchParams({ project: state.projectId });
  if (state.featureId) params.set('feature', state.featureId);
  const { claimer, blocked, drifted, search } = state.filters;
  if (claimer) params.set('claimer', claimer);
  if (blocked) params.set('blocked', '1');
  if (drifted) params.set('drifted', '1');
  if (search) params.set('q', search);
  return params.toString();
}

function showFilters() {
  $('blocked').checked = Boolean(state.filters.blocked);
  $('drifted').checked = Boolean(state.filters.drifted);
  $('search').value = state.filters.search ?? '';
  $('claimer').value = state.filters.claimer ?? '';
}

function fillClaimers(users) {
  const select = $('claimer');
  select.replaceChildren(h('option', { value: '' }, 'Anyone'), ...users.map((user) => h('option', { value: user.id }, person(user))));
  select.value = state.filters.claimer ?? '';
}

/**
 * Whether a plan a live event brought belongs on this board: the filters
 * the server applied to the list, read off the card the same way (`blocked`:
 * a blocker not COMPLETED; `drifted`: a spec drift; `search`: any case).
 */
function matchesBoard(plan) {
  const { claimer, blocked, drifted, search } = state.filters;
  if (state.featureId && plan.feature.id !== state.featureId) return false;
  if (claimer && plan.claimedBy?.id !== claimer) return false;
  if (blocked && !plan.blockedBy.some((blocker) => blocker.status !== 'COMPLETED')) return false;
  if (drifted && !plan.specDrift) return false;
  if (search && !plan.title.toLowerCase().includes(search.toLowerCase())) return false;
  return true;
}

/** One page of a column: its cards, and where the next page starts. */
function addPage(status, page) {
  for (const plan of page.nodes) state.plans.set(plan.id, plan);
  state.columns[status] = { total: page.totalCount, endCursor: page.pageInfo.endCursor, hasNext: page.pageInfo.hasNextPage };
}

async function loadMore(status) {
  const column = state.columns[status];
  const generation = state.generation;
  try {
    const data = await gql(state.key, COLUMN, { ...state.query, status: [status], first: COLUMN_PAGE, after: column.endCursor });
    if (generation !== state.generation) return;
    const total = column.total; // kept current by live events since the first page
    addPage(status, data.plans);
    state.columns[status].total = total;
    renderBoard();
  } catch (error) {
    handleError(error, () => loadMore(status));
  }
}

function fillFeatures(features) {
  const select = $('feature');
  select.replaceChildren(
    h('option', { value: '' }, 'All features'),
    ...features.map((feature) => h('option', { value: feature.id }, feature.title)),
  );
  select.value = state.featureId ?? '';
}

function startStream(cursor) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  state.stream = new PlanEventStream({
    url: `${scheme}://${location.host}/graphql/ws`,
    key: state.key,
    query: PLAN_EVENTS,
    variables: { projectId: state.projectId, featureId: state.featureId },
    cursor,
    onEvent: applyEvent,
    onStatus: showLive,
    onFatal: (code, message) => handleError(new GraphQLError(message, code)),
  });
  state.stream.start();
}

function applyEvent(event) {
  const plan = event.plan;
  const known = state.plans.get(plan.id);
  // An event delivered while the HTTP load was under way may carry an older
  // copy of the plan than the one loaded: keep whichever changed last.
  if (!known || Date.parse(plan.updatedAt) >= Date.parse(known.updatedAt)) {
    countMove(event, known);
    if (matchesBoard(plan)) {
      state.plans.set(plan.id, plan);
    } else {
      state.plans.delete(plan.id);
    }
    renderBoard(plan.id);
  }
  if (state.openPlanId === plan.id) {
    const current = state.plans.get(plan.id);
    showFacts(current);
    // The dialog's own facts, with what the event brought (status, claim, lease).
    if (state.detail?.id === plan.id) showWork({ ...state.detail, ...current });
    addHistory([event]);
  }
}

/**
 * Keeps the columns' counts exact as plans move: the one it left loses it,
 * the one it joins gains it. A plan not loaded was counted where the event
 * says it came from, unless that column is fully loaded (it would be) or
 * it is new.
 */
function countMove(event, known) {
  const plan = event.plan;
  const from = known?.status ?? event.fromStatus;
  const filtered = Object.values(state.filters).some(Boolean);
  const counted = known ? true : from && state.columns[from]?.hasNext ? !filtered || matchesBoard(plan) : false;
  if (counted && state.columns[from]) state.columns[from].total -= 1;
  if (matchesBoard(plan) && state.columns[plan.status]) state.columns[plan.status].total += 1;
}

// ---- Rendering -------------------------------------------------------------

function showLive({ state: connection, reachable = true, retryMs }) {
  const live = $('live');
  live.dataset.state = connection;
  const text = {
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: reachable ? 'Reconnecting…' : 'Server unreachable, retrying…',
    stopped: 'Not live',
  }[connection];
  live.querySelector('.live-text').textContent = text;
  live.title = retryMs ? `Next attempt in ${Math.ceil(retryMs / 1000)} s` : '';
}

function renderBoard(changedId) {
  // Keep keyboard focus on the card it was on, even if the card moved.
  const focusedId = document.activeElement?.dataset?.planId;
  const byStatus = Object.fromEntries(STATUSES.map((status) => [status, []]));
  for (const plan of state.plans.values()) byStatus[plan.status]?.push(plan);
  for (const status of STATUSES) {
    // Most recently changed first, so a card that just moved is on top.
    const plans = byStatus[status].sort((a, b) => Date.parse(b.updatedAt) - Date.parse(a.updatedAt));
    const column = document.querySelector(`.column[data-status="${status}"]`);
    const paging = state.columns[status];
    column.querySelector('.count').textContent = paging ? paging.total : plans.length;
    const more = paging?.hasNext ? Math.max(paging.total - plans.length, 1) : 0;
    column.querySelector('.cards').replaceChildren(
      ...plans.map((plan) => card(plan, plan.id === changedId)),
      more > 0 ? showMore(status, more) : null,
    );
  }
  if (focusedId) document.querySelector(`.card[data-plan-id="${focusedId}"]`)?.focus({ preventScroll: true });
}

/** The button under a column that loads its next page of cards. */
function showMore(status, more) {
  const button = h('button', { type: 'button', class: 'show-more' }, `Show ${Math.min(more, COLUMN_PAGE)} more of ${more}`);
  button.addEventListener('click', () => loadMore(status));
  return h('li', {}, button);
}

function card(plan, changed) {
  const button = h(
    'button',
    { type: 'button', class: changed ? 'card changed' : 'card', 'data-plan-id': plan.id, 'aria-haspopup': 'dialog' },
    h('span', { class: 'card-title' }, plan.title),
    h('span', { class: `card-priority priority-${plan.priority}`, title: 'Priority: 0 = most urgent … 4 = someday' }, `P${plan.priority}`),
    h('span', { class: 'card-feature' }, plan.feature.title),
    blockedBadge(plan),
    plan.claimedBy ? h('span', { class: 'card-claimer' }, `Claimed by ${person(plan.claimedBy)}`) : null,
    leaseBadge(plan),
    plan.specDrift ? h('span', { class: 'card-drift', title: 'The feature spec changed since this plan was written' }, driftText(plan.specDrift)) : null,
    h('span', { class: 'card-activity' }, 'Last activity ', time(plan.lastActivityAt)),
  );
  button.addEventListener('click', () => openDetail(plan.id));
  button.draggable = true;
  button.addEventListener('dragstart', (event) => {
    event.dataTransfer.setData('application/x-plangraph-plan', plan.id);
    event.dataTransfer.effectAllowed = 'move';
  });
  return h('li', {}, button);
}

/**
 * `Spec changed since v1`. Only the plan's own version: a plan is told once
 * when it drifts, so the feature's version on a card could go stale; the
 * dialog reads the current one.
 */
function driftText(drift) {
  return `Spec changed since v${drift.fromVersion}`;
}

/** `v1 → v3`, or `v2, amended` when the version was edited in place. */
function driftDetail(drift) {
  return drift.behind > 0 ? `v${drift.fromVersion} → v${drift.toVersion}` : `v${drift.toVersion}, amended`;
}

/** How long the holder's lease runs, or since when a stalled plan waits for a take-over. */
function leaseBadge(plan) {
  if (!plan.leaseExpiresAt) return null;
  if (plan.status === 'STALLED') return h('span', { class: 'card-lease stalled' }, 'Stalled since ', time(plan.leaseExpiresAt));
  if (plan.status === 'CLAIMED' || plan.status === 'IN_PROGRESS') return h('span', { class: 'card-lease' }, 'Lease: ', until(plan.leaseExpiresAt));
  return null;
}

/** `text` with its http(s) links as links (text nodes only: nothing is parsed as HTML). */
function linked(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/https?:\/\/[^\s<>"')\]]+/g)) {
    parts.push(text.slice(last, match.index));
    parts.push(h('a', { href: match[0], target: '_blank', rel: 'noopener noreferrer' }, match[0]));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

/** "Blocked by …" while some blocker is not COMPLETED (a FAILED one keeps blocking). */
function blockedBadge(plan) {
  const waitingFor = (plan.blockedBy ?? []).filter((blocker) => blocker.status !== 'COMPLETED');
  if (waitingFor.length === 0) return null;
  return h('span', { class: 'card-blocked' }, `Blocked by ${waitingFor.map((blocker) => blocker.title).join(', ')}`);
}

// ---- The detail dialog -----------------------------------------------------------

async function openDetail(planId) {
  const plan = state.plans.get(planId);
  state.openPlanId = planId;
  state.seenInDialog = new Set();
  showFacts(plan);
  $('detail-description').textContent = '';
  $('detail-spec').textContent = 'Loading…';
  $('detail-spec-source').textContent = '';
  $('detail-drift-section').hidden = true;
  $('detail-drift').textContent = '';
  $('detail-history').replaceChildren();
  $('detail-actions-section').hidden = true;
  $('detail-shape-section').hidden = true;
  $('detail-dependency-search').value = '';
  $('detail-dependency-results').replaceChildren();
  $('detail-actions').replaceChildren();
  $('detail-action-result').textContent = '';
  $('detail').showModal();
  try {
    // The spec is only fetched now: lists never ask for it.
    const { data, errors } = await request(state.key, PLAN_DETAIL, { id: planId });
    if (state.openPlanId !== planId) return;
    $('detail-description').textContent = data.plan.description ?? '';
    if (data.plan.specHtml !== null) {
      // Made safe by the server (raw HTML as text, safe links only); the
      // page's policy runs no script in it either way.
      $('detail-spec').innerHTML = data.plan.specHtml;
    } else {
      $('detail-spec').textContent = `The spec could not be loaded: ${errors[0]?.message ?? 'unknown error'}`;
    }
    $('detail-spec-source').textContent = data.plan.spec ?? '';
    showDrift(data.plan.specDrift);
    showWork(data.plan);
    addHistory(data.plan.events);
    showActions(data.plan);
    showShape(data.plan);
  } catch (error) {
    if (state.openPlanId === planId) $('detail-spec').textContent = explain(error);
  }
}

/** Who works on it and what they handed in: facts the list does not load. */
function showWork(plan) {
  const facts = $('detail-facts');
  const fact = (term, ...value) => facts.append(h('dt', {}, term), h('dd', {}, ...value));
  if (plan.leaseExpiresAt && (plan.status === 'CLAIMED' || plan.status === 'IN_PROGRESS')) fact('Lease', until(plan.leaseExpiresAt));
  const waitingFor = plan.blockedBy.filter((blocker) => blocker.status !== 'COMPLETED');
  if (waitingFor.length > 0) {
    fact(
      'Waits for',
      ...waitingFor.map((blocker) => {
        const link = h('button', { type: 'button', class: 'link', 'data-plan-id': blocker.id }, `${blocker.title} (${label(blocker.status)})`);
        link.addEventListener('click', () => state.plans.has(blocker.id) && openDetail(blocker.id));
        if (!mayShape(plan)) return link;
        const remove = h('button', { type: 'button', class: 'remove', 'aria-label': `Remove the dependency on ${blocker.title}` }, '×');
        remove.addEventListener('click', () => shape(plan.id, REMOVE_DEPENDENCY, { id: plan.id, blocker: blocker.id }));
        return h('span', { class: 'blocker' }, link, remove);
      }),
    );
  }
  if (plan.blocks.length > 0) fact('Blocks', `${plan.blocks.length} ${plan.blocks.length === 1 ? 'plan' : 'plans'}`);
  if (plan.submittedBy) fact('Submitted by', person(plan.submittedBy));
  if (plan.workArtifacts) fact('Work', h('span', { class: 'artifacts' }, ...linked(plan.workArtifacts)));
  if (plan.implementedVersion) fact('Feature version', `v${plan.implementedVersion} (cut by this plan)`);
}

/** Members and owners shape open plans; viewers only look. */
function mayShape(plan) {
  return ['OWNER', 'MEMBER'].includes(plan.project?.viewerRole) && !['COMPLETED', 'FAILED'].includes(plan.status);
}

function showShape(plan) {
  state.detail = plan;
  $('detail-shape-section').hidden = !mayShape(plan);
  $('detail-priority').value = String(plan.priority);
  $('detail-rebase').hidden = !plan.specDrift;
}

/** One change of a plan's shape, then the dialog again; a refusal in the server's words. */
async function shape(planId, mutation, variables) {
  const result = $('detail-action-result');
  try {
    const { errors } = await request(state.key, mutation, variables);
    if (errors.length > 0) throw new Error(errors[0].message);
    result.textContent = 'Saved.';
    if (state.openPlanId === planId) await refreshDetail(planId, result.textContent);
  } catch (error) {
    result.textContent = error.message;
  }
}

/** Plans of the project whose title holds the search text, to wait for. */
async function findBlockers(text) {
  const plan = state.detail;
  const results = $('detail-dependency-results');
  if (!plan || text.trim() === '') {
    results.replaceChildren();
    return;
  }
  const { data } = await request(state.key, FIND_PLANS, { projectId: state.projectId, search: text.trim() });
  if (state.detail !== plan || $('detail-dependency-search').value !== text) return;
  const taken = new Set([plan.id, ...plan.blockedBy.map((blocker) => blocker.id)]);
  results.replaceChildren(
    ...data.plans.nodes
      .filter((found) => !taken.has(found.id))
      .map((found) => {
        const button = h('button', { type: 'button', class: 'link' }, `${found.title} (${label(found.status)})`);
        button.addEventListener('click', () => {
          $('detail-dependency-search').value = '';
          results.replaceChildren();
          shape(plan.id, ADD_DEPENDENCY, { id: plan.id, blocker: found.id });
        });
        return h('li', {}, button);
      }),
  );
}

const PLAN_ACTIONS = `query BoardPlanActions($id: ID!) {
  plan(id: $id) { id title status availableActions { toStatus operation allowed reason } }
}`;

/**
 * A card dropped on another column asks for the move to it, if the server
 * offers one this viewer may make; otherwise the card stays where it is
 * and the notice says why, in the server's words.
 */
async function dropOn(planId, status) {
  const known = state.plans.get(planId);
  if (!known || known.status === status) return;
  try {
    const { data } = await request(state.key, PLAN_ACTIONS, { id: planId });
    const plan = data.plan;
    const moves = plan.availableActions.filter((action) => action.toStatus === status);
    const move = moves.find(madeHere);
    if (!move) {
      const refused = moves.find((action) => !action.allowed)?.reason;
      const reason = refused
        ?? (moves.length > 0
          ? `${label(status)} is reached with ${moves[0].operation}, which needs the worker's text: open the card.`
          : `No move leads from ${label(plan.status)} to ${label(status)}.`);
      showNotice(`"${plan.title}" stays in ${label(plan.status)}: ${reason}`);
      return;
    }
    if (await makeMove(plan, move)) showNotice(null);
  } catch (error) {
    // Someone else moved it first, or the server refused: it says which.
    showNotice(`"${known.title}" stays in ${label(known.status)}: ${error.message}`);
  }
}

/** The moves the board makes itself: submitting and updating carry the worker's text. */
const madeHere = (action) => action.allowed && ['setPlanStatus', 'releasePlan', 'claimPlan'].includes(action.operation);

/**
 * Makes `action` on `plan`, a failure only once confirmed: the plan as it
 * changed, or null when the person thought better of it. A refusal throws,
 * in the server's words.
 */
async function makeMove(plan, action, note = null) {
  if (action.toStatus === 'FAILED' && !confirm(`Fail "${plan.title}"? A failed plan is finished: it never completes.`)) return null;
  const [mutation, variables] =
    action.operation === 'setPlanStatus'
      ? [SET_STATUS, { id: plan.id, status: action.toStatus, note }]
      : [action.operation === 'releasePlan' ? RELEASE : CLAIM, { id: plan.id }];
  const { data, errors } = await request(state.key, mutation, variables);
  if (errors.length > 0) throw new Error(errors[0].message);
  return data.setPlanStatus ?? data.releasePlan ?? data.claimPlan;
}

/** A button's words for a move, by the mutation that makes it and where it leads. */
function actionLabel(plan, action) {
  if (action.operation === 'claimPlan') return 'Claim';
  if (action.operation === 'releasePlan') return 'Release';
  if (action.toStatus === 'FAILED') return 'Fail…';
  if (plan.status === 'REVIEW' && action.toStatus === 'COMPLETED') return 'Approve';
  if (plan.status === 'REVIEW' && action.toStatus === 'IN_PROGRESS') return 'Send back';
  if (action.toStatus === 'DRAFT') return 'Back to draft';
  return `Mark ${label(action.toStatus).toLowerCase()}`;
}

/**
 * The moves the viewer may make now, as buttons. Submitting and updating
 * carry the worker's text, so they stay with the worker's tools.
 */
function showActions(plan) {
  const offered = plan.availableActions.filter(madeHere);
  $('detail-actions-section').hidden = offered.length === 0;
  $('detail-actions').replaceChildren(
    ...offered.map((action) => {
      const button = h('button', { type: 'button', 'data-to': action.toStatus }, actionLabel(plan, action));
      button.addEventListener('click', () => act(plan, action));
      return button;
    }),
  );
}

async function act(plan, action) {
  const result = $('detail-action-result');
  const note = $('detail-note').value.trim() || null;
  result.textContent = 'Working…';
  try {
    const changed = await makeMove(plan, action, note);
    if (!changed) {
      result.textContent = '';
      return;
    }
    const version = changed.implementedVersion ? `; it cut feature version v${changed.implementedVersion}` : '';
    result.textContent = `Now ${label(changed.status)}${version}.`;
    $('detail-note').value = '';
    if (state.openPlanId === plan.id) await refreshDetail(plan.id, result.textContent);
  } catch (error) {
    // The server's own words: a refusal says why and what to do instead.
    result.textContent = error instanceof Error ? error.message : explain(error);
  }
}

/** The dialog again after a move, keeping what the move answered. */
async function refreshDetail(planId, said) {
  const { data } = await request(state.key, PLAN_DETAIL, { id: planId });
  if (state.openPlanId !== planId) return;
  showFacts(data.plan);
  showWork(data.plan);
  showDrift(data.plan.specDrift);
  addHistory(data.plan.events);
  showActions(data.plan);
  showShape(data.plan);
  $('detail-action-result').textContent = said;
}

/** What changed in the feature spec since the plan was written, as a diff. */
function showDrift(drift) {
  $('detail-drift-section').hidden = !drift;
  if (!drift) return;
  const diff = drift.diff;
  $('detail-drift-summary').textContent = diff
    ? `${driftDetail(drift)}: +${diff.added} −${diff.removed} lines${diff.truncated ? ' (cut: the diff is too long to show whole)' : ''}`
    : `${driftDetail(drift)}: the diff could not be loaded.`;
  $('detail-drift').replaceChildren(
    ...(diff?.unified ?? '').replace(/\n$/, '').split('\n').map((line) =>
      h('span', { class: diffClass(line) }, `${line}\n`),
    ),
  );
}

function diffClass(line) {
  if (line.startsWith('+++') || line.startsWith('---') || line.startsWith('@@')) return 'diff-head';
  if (line.startsWith('+')) return 'diff-add';
  if (line.startsWith('-')) return 'diff-del';
  return 'diff-ctx';
}

function showFacts(plan) {
  $('detail-title').textContent = plan.title;
  $('detail-facts').replaceChildren(
    h('dt', {}, 'Status'),
    h('dd', {}, h('span', { class: 'badge', 'data-status': plan.status }, label(plan.status))),
    h('dt', {}, 'Feature'),
    h('dd', {}, plan.feature.title),
    h('dt', {}, 'Claimed by'),
    h('dd', {}, plan.claimedBy ? person(plan.claimedBy) : 'nobody'),
    h('dt', {}, 'Last activity'),
    h('dd', {}, time(plan.lastActivityAt)),
    h('dt', {}, 'Spec'),
    h('dd', {}, plan.specDrift ? driftText(plan.specDrift) : 'up to date'),
  );
}

function addHistory(events) {
  const list = $('detail-history');
  for (const event of events) {
    if (state.seenInDialog.has(event.cursor)) continue; // loaded and also delivered live
    state.seenInDialog.add(event.cursor);
    const move = event.fromStatus ? `${label(event.fromStatus)} → ${label(event.toStatus)}` : label(event.toStatus);
    // A change the server made names its cause; a person's note is their reason.
    const why = event.note ? (event.actor ? `: “${event.note}”` : `: ${event.note}`) : '';
    list.append(h('li', {}, h('span', { class: 'event-kind' }, label(event.kind)), ` ${move}, by ${person(event.actor)}${why} `, time(event.at)));
  }
}

// ---- Wiring ----------------------------------------------------------------

function buildColumns() {
  $('columns').replaceChildren(
    ...STATUSES.map((status) =>
      h(
        'section',
        { class: 'column', 'data-status': status, 'aria-labelledby': `column-${status}` },
        h('h2', { id: `column-${status}` }, label(status), ' ', h('span', { class: 'count' }, '0')),
        h('ol', { class: 'cards' }),
      ),
    ),
  );
  for (const column of document.querySelectorAll('.column')) {
    column.addEventListener('dragover', (event) => {
      if (event.dataTransfer.types.includes('application/x-plangraph-plan')) event.preventDefault();
    });
    column.addEventListener('drop', (event) => {
      event.preventDefault();
      dropOn(event.dataTransfer.getData('application/x-plangraph-plan'), column.dataset.status);
    });
  }
}

function start() {
  buildColumns();
  $('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('key').value.trim();
    if (key) signIn(key);
  });
  $('signout').addEventListener('click', () => signOut());
  $('project').addEventListener('change', (event) => {
    state.projectId = event.target.value;
    state.featureId = null;
    state.filters.claimer = null;
    openBoard();
  });
  $('feature').addEventListener('change', (event) => {
    state.featureId = event.target.value || null;
    openBoard();
  });
  const filter = (change) => {
    Object.assign(state.filters, change);
    openBoard();
  };
  $('claimer').addEventListener('change', (event) => filter({ claimer: event.target.value || null }));
  $('blocked').addEventListener('change', (event) => filter({ blocked: event.target.checked }));
  $('drifted').addEventListener('change', (event) => filter({ drifted: event.target.checked }));
  let typing;
  $('search').addEventListener('input', (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => filter({ search: event.target.value.trim() }), 250);
  });
  const dialog = $('detail');
  dialog.addEventListener('close', () => {
    const planId = state.openPlanId;
    state.openPlanId = null;
    document.querySelector(`.card[data-plan-id="${planId}"]`)?.focus();
  });
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener('click', (event) => {
    if (event.target === dialog) dialog.close();
  });
  window.addEventListener('online', () => state.stream?.retryNow());
  $('detail-priority').addEventListener('change', (event) => {
    const plan = state.detail;
    if (plan) shape(plan.id, SET_PRIORITY, { id: plan.id, priority: Number(event.target.value) });
  });
  $('detail-rebase').addEventListener('click', () => {
    const plan = state.detail;
    if (plan) shape(plan.id, REBASE, { id: plan.id });
  });
  let searching;
  $('detail-dependency-search').addEventListener('input', (event) => {
    clearTimeout(searching);
    searching = setTimeout(() => findBlockers(event.target.value).catch((error) => ($('detail-action-result').textContent = error.message)), 200);
  });
  // A link to another board (`#project=…&feature=…`) opens it in place.
  window.addEventListener('hashchange', () => {
    if (!state.key) return;
    const wanted = new URLSearchParams(location.hash.slice(1));
    const projectId = wanted.get('project') || state.projectId;
    const featureId = wanted.get('feature') || null;
    if (location.hash.slice(1) === boardHash()) return;
    state.filters = filtersFrom(wanted);
    // A project made since sign-in: the picker learns it first.
    if (!state.projects.some((project) => project.id === projectId)) {
      signIn(state.key);
      return;
    }
    state.projectId = projectId;
    state.featureId = featureId;
    $('project').value = projectId ?? '';
    openBoard();
  });
  setInterval(refreshTimes, 1_000);

  const key = localStorage.getItem(KEY_STORAGE);
  if (key) {
    document.body.dataset.view = 'board';
    signIn(key);
  } else {
    showSignIn();
  }
}

start();
