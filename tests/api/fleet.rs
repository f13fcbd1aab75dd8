//! Agent fleets: claiming the next plan, dependencies, priorities, leases
//! and fencing tokens — a fleet of agents draining a project, on both
//! databases (two instances on PostgreSQL).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    a_fleet_drains_a_dag_in_dependency_and_priority_order,
    an_expired_lease_is_taken_over_and_the_old_holder_is_fenced_out,
    a_dependency_that_closes_a_cycle_is_refused_naming_it,
    a_failed_blocker_keeps_its_dependents_blocked_until_the_dependency_goes,
    claim_next_takes_the_most_urgent_then_oldest_unblocked_plan,
    a_heartbeat_renews_the_lease_without_an_event,
);

const CLAIM_NEXT: &str = "mutation($project: ID!, $feature: ID, $lease: Int, $stalled: Boolean) {
    claimNextPlan(projectId: $project, featureId: $feature, leaseSeconds: $lease, includeStalled: $stalled) {
      id title status priority claimToken leaseExpiresAt spec feature { id } claimedBy { email } } }";
const SUBMIT_WITH_TOKEN: &str = "mutation($plan: ID!, $token: String, $status: SubmitStatus!) {
    submitWork(planId: $plan, artifactsMarkdown: \"done\", status: $status, claimToken: $token) {
      plan { id status } featureVersion { version } } }";
const ADD_DEPENDENCY: &str = "mutation($plan: ID!, $blocker: ID!) {
    addPlanDependency(planId: $plan, blockedByPlanId: $blocker) { id isBlocked blockedBy { id } } }";
const REMOVE_DEPENDENCY: &str = "mutation($plan: ID!, $blocker: ID!) {
    removePlanDependency(planId: $plan, blockedByPlanId: $blocker) { id isBlocked blockedBy { id } } }";
const CREATE_WITH_PRIORITY: &str = "mutation($feature: ID!, $title: String!, $priority: Int) {
    createPlan(featureId: $feature, title: $title, specContent: \"# spec\", status: READY, priority: $priority) { id priority } }";
const PLAN_STATE: &str = "query($id: ID!) { plan(id: $id) {
    id status priority claimToken leaseExpiresAt lastActivityAt isBlocked blockedBy { id status } blocks { id }
    events { cursor kind fromStatus } } }";

fn string(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a string: {value}"))
        .to_owned()
}

fn event_kinds(plan: &Value) -> Vec<String> {
    plan["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| string(&event["kind"]))
        .collect()
}

/// The plan, as the owner reads it.
async fn state(team: &Team, plan: &str) -> Value {
    team.owner.ok(PLAN_STATE, json!({ "id": plan })).await["plan"].clone()
}

async fn create(team: &Team, feature: &str, title: &str, priority: i32) -> String {
    let vars = json!({ "feature": feature, "title": title, "priority": priority });
    string(&team.owner.ok(CREATE_WITH_PRIORITY, vars).await["createPlan"]["id"])
}

/// The width of the fleet test's DAG: this many chains, each `DEPTH` deep.
const CHAINS: usize = 50;
const DEPTH: usize = 10;
const AGENTS: usize = 50;
/// Agents share keys, as fleets do: this many agents per user.
const AGENTS_PER_USER: usize = 5;

/// The blockers of plan (chain, depth): the plan before it in its chain and,
/// for every fifth chain, the two neighbouring chains' plans one level up
/// (fan-ins).
fn blockers_of(chain: usize, depth: usize) -> Vec<(usize, usize)> {
    if depth == 0 {
        return Vec::new();
    }
    let mut blockers = vec![(chain, depth - 1)];
    if chain.is_multiple_of(5) {
        blockers.push(((chain + 1) % CHAINS, depth - 1));
        blockers.push(((chain + 2) % CHAINS, depth - 1));
    }
    blockers
}

async fn a_fleet_drains_a_dag_in_dependency_and_priority_order(backend: Backend) {
    let servers = Server::instances(backend, &[]).await;
    let team = Team::new(&servers[0]).await;
    let second_feature = team
        .owner
        .create_feature(&team.project, "Second", "# second")
        .await;
    let features = [team.feature.clone(), second_feature];

    // 500 READY plans, (chain, depth) → id; created a few at a time.
    let mut ids: HashMap<(usize, usize), String> = HashMap::new();
    let coordinates: Vec<(usize, usize)> = (0..DEPTH)
        .flat_map(|depth| (0..CHAINS).map(move |chain| (chain, depth)))
        .collect();
    for batch in coordinates.chunks(10) {
        let created = futures::future::join_all(batch.iter().map(|&(chain, depth)| {
            let feature = &features[chain % 2];
            let title = format!("chain {chain} step {depth}");
            let priority = ((chain + depth) % 5) as i32;
            let team = &team;
            async move { create(team, feature, &title, priority).await }
        }))
        .await;
        ids.extend(batch.iter().copied().zip(created));
    }
    let mut edges = Vec::new();
    for &(chain, depth) in &coordinates {
        for blocker in blockers_of(chain, depth) {
            edges.push((ids[&(chain, depth)].clone(), ids[&blocker].clone()));
        }
    }
    for batch in edges.chunks(10) {
        futures::future::join_all(batch.iter().map(|(plan, blocker)| {
            team.owner
                .ok(ADD_DEPENDENCY, json!({ "plan": plan, "blocker": blocker }))
        }))
        .await;
    }

    // The fleet: 50 agents on 10 keys, spread over the instances.
    let mut clients = Vec::new();
    for user in 0..AGENTS / AGENTS_PER_USER {
        let member = team
            .new_member(&servers[0], &format!("agent{user}@example.com"))
            .await;
        for agent in 0..AGENTS_PER_USER {
            clients.push(servers[(user + agent) % servers.len()].as_client(&member));
        }
    }
    let total = ids.len();
    let completed = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let agents = clients.into_iter().map(|client| {
        let completed = completed.clone();
        let project = team.project.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while completed.load(Ordering::SeqCst) < total {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the fleet did not drain the project in time"
                );
                let reply = client.send(CLAIM_NEXT, json!({ "project": project })).await;
                if !reply.errors.is_empty() {
                    failures.push(format!("claimNextPlan: {:?}", reply.errors));
                    break;
                }
                let plan = &reply.data["claimNextPlan"];
                if plan.is_null() {
                    // Nothing claimable until some blocker completes: the
                    // agent's polling interval, not a timing assumption.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                let vars = json!({ "plan": plan["id"], "token": plan["claimToken"], "status": "COMPLETED" });
                let submitted = client.send(SUBMIT_WITH_TOKEN, vars).await;
                if !submitted.errors.is_empty() {
                    failures.push(format!("submitWork: {:?}", submitted.errors));
                    break;
                }
                completed.fetch_add(1, Ordering::SeqCst);
            }
            failures
        })
    });
    let failures: Vec<String> = futures::future::join_all(agents)
        .await
        .into_iter()
        .flat_map(|joined| joined.expect("agent task"))
        .collect();
    assert!(failures.is_empty(), "agents failed: {failures:?}");
    assert_eq!(completed.load(Ordering::SeqCst), total);

    // The event log, plan by plan.
    let mut plans: HashMap<String, Value> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = team
            .owner
            .ok(
                "query($project: ID!, $after: String) { plans(projectId: $project, first: 20, after: $after) {
                   pageInfo { hasNextPage endCursor }
                   nodes { id status feature { id } implementedFeatureVersion { version }
                           events(last: 100) { cursor kind } } } }",
                json!({ "project": team.project, "after": after }),
            )
            .await;
        for plan in page["plans"]["nodes"].as_array().expect("nodes") {
            plans.insert(string(&plan["id"]), plan.clone());
        }
        if page["plans"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = Some(string(&page["plans"]["pageInfo"]["endCursor"]));
    }
    assert_eq!(plans.len(), total);
    let cursor_of = |plan: &str, kind: &str| -> Vec<i64> {
        plans[plan]["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|event| event["kind"] == kind)
            .map(|event| string(&event["cursor"]).parse().expect("numeric cursor"))
            .collect()
    };
    for (&(chain, depth), id) in &ids {
        assert_eq!(plans[id]["status"], "COMPLETED", "{chain}/{depth}");
        let claims = cursor_of(id, "CLAIMED");
        let completions = cursor_of(id, "COMPLETED");
        assert_eq!(claims.len(), 1, "claimed exactly once: {chain}/{depth}");
        assert_eq!(
            completions.len(),
            1,
            "completed exactly once: {chain}/{depth}"
        );
        let blockers = blockers_of(chain, depth);
        let unblocked = cursor_of(id, "UNBLOCKED");
        assert_eq!(
            unblocked.len(),
            usize::from(!blockers.is_empty()),
            "one UNBLOCKED event when the last blocker completes: {chain}/{depth}"
        );
        for blocker in blockers {
            let blocker_done = cursor_of(&ids[&blocker], "COMPLETED")[0];
            assert!(
                claims[0] > blocker_done,
                "{chain}/{depth} was claimed before its blocker {blocker:?} completed"
            );
            assert!(unblocked[0] >= blocker_done);
        }
    }

    // Every completion cut its feature's next version: no gap, no repeat.
    for feature in &features {
        let current = team
            .owner
            .ok(
                "query($id: ID!) { feature(id: $id) { currentVersion } }",
                json!({ "id": feature }),
            )
            .await;
        let mut numbers: Vec<i64> = plans
            .values()
            .filter(|plan| plan["feature"]["id"] == feature.as_str())
            .map(|plan| {
                plan["implementedFeatureVersion"]["version"]
                    .as_i64()
                    .expect("a completed plan's version")
            })
            .collect();
        numbers.sort_unstable();
        let expected: Vec<i64> = (2..=numbers.len() as i64 + 1).collect();
        assert_eq!(numbers, expected, "contiguous versions after v1");
        assert_eq!(
            current["feature"]["currentVersion"],
            numbers.len() as i64 + 1
        );
    }
}

async fn an_expired_lease_is_taken_over_and_the_old_holder_is_fenced_out(backend: Backend) {
    let server = Server::start_with(backend, &["--sweep-every", "100ms"]).await;
    let team = Team::new(&server).await;
    let plan = team.plan("abandoned", "READY").await;

    let claimed = team
        .worker
        .ok(
            "mutation($id: ID!) { claimPlan(planId: $id, leaseSeconds: 2) { claimToken leaseExpiresAt lastActivityAt } }",
            json!({ "id": plan }),
        )
        .await;
    let old_token = string(&claimed["claimPlan"]["claimToken"]);
    let expires =
        chrono::DateTime::parse_from_rfc3339(&string(&claimed["claimPlan"]["leaseExpiresAt"]))
            .expect("RFC 3339");
    let active =
        chrono::DateTime::parse_from_rfc3339(&string(&claimed["claimPlan"]["lastActivityAt"]))
            .expect("RFC 3339");
    assert_eq!(expires - active, chrono::Duration::seconds(2));

    // The agent crashed; the sweeper stalls the plan once its lease runs out.
    eventually(Duration::from_secs(30), async || {
        (state(&team, &plan).await["status"] == "STALLED").then_some(())
    })
    .await;
    let vars = json!({ "project": team.project });
    let next = team.worker.ok(CLAIM_NEXT, vars.clone()).await;
    assert_eq!(
        next["claimNextPlan"],
        Value::Null,
        "stalled plans only on request"
    );

    // Taken over — by the same user, as fleets share keys.
    let mut with_stalled = vars.clone();
    with_stalled["stalled"] = json!(true);
    let next = team.worker.ok(CLAIM_NEXT, with_stalled).await;
    let taken = &next["claimNextPlan"];
    assert_eq!(taken["id"], plan.as_str());
    assert_eq!(taken["status"], "CLAIMED");
    let new_token = string(&taken["claimToken"]);
    assert_ne!(new_token, old_token);
    let before = state(&team, &plan).await;
    assert_eq!(
        before["events"]
            .as_array()
            .expect("events")
            .last()
            .expect("event")["fromStatus"],
        "STALLED"
    );

    // The zombie wakes up: each of its requests is STALE_CLAIM and changes nothing.
    let stale = [
        (
            SUBMIT_WITH_TOKEN,
            json!({ "plan": plan, "token": old_token, "status": "COMPLETED" }),
        ),
        (
            "mutation($plan: ID!, $token: String) { updatePlan(planId: $plan, specContent: \"# mine\", claimToken: $token) { id } }",
            json!({ "plan": plan, "token": old_token }),
        ),
        (
            "mutation($plan: ID!, $token: String) { heartbeatPlan(planId: $plan, claimToken: $token) { id } }",
            json!({ "plan": plan, "token": old_token }),
        ),
        (
            "mutation($plan: ID!, $token: String) { releasePlan(planId: $plan, claimToken: $token) { id } }",
            json!({ "plan": plan, "token": old_token }),
        ),
    ];
    for (query, vars) in stale {
        let reply = team.worker.send(query, vars).await;
        assert_eq!(reply.code(), "CONFLICT", "{reply:?}");
        assert_eq!(reply.errors[0]["extensions"]["reason"], "STALE_CLAIM");
        assert!(reply.message().contains("claimToken is no longer current"));
    }
    assert_eq!(state(&team, &plan).await, before, "nothing changed");

    // A token that is not one, or of another plan: bad input.
    let other = team.plan("other", "READY").await;
    let other_token = string(
        &team
            .worker
            .ok(
                "mutation($id: ID!) { claimPlan(planId: $id) { claimToken } }",
                json!({ "id": other }),
            )
            .await["claimPlan"]["claimToken"],
    );
    for token in ["not-a-token", other_token.as_str()] {
        let vars = json!({ "plan": plan, "token": token, "status": "COMPLETED" });
        assert_eq!(
            team.worker.code(SUBMIT_WITH_TOKEN, vars).await,
            "BAD_USER_INPUT"
        );
    }

    // The new holder finishes the work.
    let done = team
        .worker
        .ok(
            SUBMIT_WITH_TOKEN,
            json!({ "plan": plan, "token": new_token, "status": "COMPLETED" }),
        )
        .await;
    assert_eq!(done["submitWork"]["plan"]["status"], "COMPLETED");

    // Leases outside the bounds are refused, naming them.
    for lease in [0, 604_801] {
        let reply = team
            .worker
            .send(
                "mutation($id: ID!, $lease: Int) { claimPlan(planId: $id, leaseSeconds: $lease) { id } }",
                json!({ "id": team.plan("bounded", "READY").await, "lease": lease }),
            )
            .await;
        assert_eq!(reply.code(), "BAD_USER_INPUT");
        assert_eq!(
            reply.message(),
            "leaseSeconds must be between 1 and 604800 seconds (7 days)"
        );
    }
}

async fn a_dependency_that_closes_a_cycle_is_refused_naming_it(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let a = team.plan("A", "READY").await;
    let b = team.plan("B", "READY").await;
    let c = team.plan("C", "READY").await;
    team.worker
        .ok(ADD_DEPENDENCY, json!({ "plan": a, "blocker": b }))
        .await;
    team.worker
        .ok(ADD_DEPENDENCY, json!({ "plan": b, "blocker": c }))
        .await;

    let reply = team
        .worker
        .send(ADD_DEPENDENCY, json!({ "plan": c, "blocker": a }))
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT");
    assert_eq!(reply.errors[0]["extensions"]["argument"], "blockedByPlanId");
    assert_eq!(
        reply.message(),
        format!(
            "blockedByPlanId: this dependency would make a cycle: \"C\" ({c}) → \"A\" ({a}) → \"B\" ({b}) → \"C\" ({c}); remove one of its dependencies first"
        )
    );
    let itself = team
        .worker
        .send(ADD_DEPENDENCY, json!({ "plan": a, "blocker": a }))
        .await;
    assert_eq!(itself.code(), "BAD_USER_INPUT");
    let elsewhere = team.outsiders_own_feature().await;
    let foreign = string(
        &team
            .outsider
            .ok(
                CREATE_PLAN,
                json!({ "featureId": elsewhere, "title": "theirs", "spec": "# t" }),
            )
            .await["createPlan"]["id"],
    );
    let across = team
        .worker
        .send(ADD_DEPENDENCY, json!({ "plan": a, "blocker": foreign }))
        .await;
    assert_eq!(across.code(), "BAD_USER_INPUT");
    assert!(across.message().contains("another project"));

    // Nothing was added by the refusals; adding one twice changes nothing.
    let before = state(&team, &c).await;
    assert_eq!(before["blockedBy"], json!([]));
    assert_eq!(before["blocks"], json!([{ "id": b }]));
    team.worker
        .ok(ADD_DEPENDENCY, json!({ "plan": a, "blocker": b }))
        .await;
    let kinds = event_kinds(&state(&team, &a).await);
    assert_eq!(kinds, ["CREATED", "DEPENDENCY_ADDED"]);
    let viewer = team
        .viewer
        .send(ADD_DEPENDENCY, json!({ "plan": c, "blocker": b }))
        .await;
    assert_eq!(viewer.code(), "FORBIDDEN");
}

async fn a_failed_blocker_keeps_its_dependents_blocked_until_the_dependency_goes(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let blocker = team.plan("groundwork", "READY").await;
    let waiter = team.plan("building on it", "READY").await;
    let added = team
        .worker
        .ok(
            ADD_DEPENDENCY,
            json!({ "plan": waiter, "blocker": blocker }),
        )
        .await;
    assert_eq!(added["addPlanDependency"]["isBlocked"], true);

    let refused = team.worker.send(CLAIM, json!({ "planId": waiter })).await;
    assert_eq!(refused.code(), "CONFLICT");
    assert_eq!(refused.errors[0]["extensions"]["reason"], "BLOCKED");
    assert_eq!(
        refused.errors[0]["extensions"]["blockedBy"],
        json!([blocker])
    );
    assert_eq!(
        refused.message(),
        format!(
            "This plan is blocked until these plans are COMPLETED: \"groundwork\" ({blocker}, READY)"
        )
    );

    // The blocker fails: its dependents stay blocked.
    team.worker.ok(CLAIM, json!({ "planId": blocker })).await;
    team.worker
        .ok(SET_STATUS, json!({ "planId": blocker, "status": "FAILED" }))
        .await;
    let still = team.worker.send(CLAIM, json!({ "planId": waiter })).await;
    assert_eq!(still.errors[0]["extensions"]["reason"], "BLOCKED");
    let next = team
        .worker
        .ok(CLAIM_NEXT, json!({ "project": team.project }))
        .await;
    assert_eq!(next["claimNextPlan"], Value::Null);
    let waiting = state(&team, &waiter).await;
    assert_eq!(waiting["isBlocked"], true);
    assert_eq!(
        waiting["blockedBy"],
        json!([{ "id": blocker, "status": "FAILED" }])
    );

    // Someone decides: the dependency goes, and the plan is free.
    let removed = team
        .owner
        .ok(
            REMOVE_DEPENDENCY,
            json!({ "plan": waiter, "blocker": blocker }),
        )
        .await;
    assert_eq!(removed["removePlanDependency"]["isBlocked"], false);
    let freed = state(&team, &waiter).await;
    assert_eq!(
        event_kinds(&freed),
        [
            "CREATED",
            "DEPENDENCY_ADDED",
            "DEPENDENCY_REMOVED",
            "UNBLOCKED"
        ]
    );
    let next = team
        .worker
        .ok(CLAIM_NEXT, json!({ "project": team.project }))
        .await;
    assert_eq!(next["claimNextPlan"]["id"], waiter.as_str());

    // A completion unblocks too, with the event in the same transaction.
    let first = team.plan("first", "READY").await;
    let then = team.plan("then", "READY").await;
    team.worker
        .ok(ADD_DEPENDENCY, json!({ "plan": then, "blocker": first }))
        .await;
    team.worker.ok(CLAIM, json!({ "planId": first })).await;
    team.worker
        .ok(
            SUBMIT,
            json!({ "planId": first, "artifacts": "PR", "status": "COMPLETED" }),
        )
        .await;
    let after = state(&team, &then).await;
    assert_eq!(after["isBlocked"], false);
    // The completion cut a feature version with the same spec: no drift.
    assert_eq!(
        event_kinds(&after),
        ["CREATED", "DEPENDENCY_ADDED", "UNBLOCKED"]
    );
    // Removing a dependency on a completed plan unblocks nothing new.
    team.worker
        .ok(REMOVE_DEPENDENCY, json!({ "plan": then, "blocker": first }))
        .await;
    assert_eq!(
        event_kinds(&state(&team, &then).await),
        [
            "CREATED",
            "DEPENDENCY_ADDED",
            "UNBLOCKED",
            "DEPENDENCY_REMOVED"
        ]
    );
}

async fn claim_next_takes_the_most_urgent_then_oldest_unblocked_plan(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let other_feature = team
        .owner
        .create_feature(&team.project, "Other", "# other")
        .await;
    let someday = create(&team, &team.feature, "someday", 4).await;
    let urgent_old = create(&team, &team.feature, "urgent, older", 0).await;
    let normal = create(&team, &team.feature, "normal", 2).await;
    let urgent_new = create(&team, &team.feature, "urgent, newer", 0).await;
    let elsewhere = create(&team, &other_feature, "urgent elsewhere", 0).await;
    let blocked_urgent = create(&team, &team.feature, "urgent but blocked", 0).await;
    team.owner
        .ok(
            ADD_DEPENDENCY,
            json!({ "plan": blocked_urgent, "blocker": someday }),
        )
        .await;
    team.plan("a draft", "DRAFT").await;

    // Ordering and filtering by priority.
    let listed = team
        .owner
        .ok(
            "query($project: ID!) {
               byPriority: plans(projectId: $project, orderBy: { field: PRIORITY }, first: 3) { nodes { id } pageInfo { endCursor } }
               urgent: plans(projectId: $project, priority: [0]) { totalCount } }",
            json!({ "project": team.project }),
        )
        .await;
    let ids: Vec<Value> = listed["byPriority"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| node["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!(urgent_old), json!(urgent_new), json!(elsewhere)]
    );
    assert_eq!(listed["urgent"]["totalCount"], 4);
    let cursor = listed["byPriority"]["pageInfo"]["endCursor"].clone();
    let more = team
        .owner
        .ok(
            "query($project: ID!, $after: String) { plans(projectId: $project, orderBy: { field: PRIORITY }, first: 1, after: $after) { nodes { id } } }",
            json!({ "project": team.project, "after": cursor }),
        )
        .await;
    assert_eq!(more["plans"]["nodes"][0]["id"], blocked_urgent.as_str());

    let claim_next = async |feature: Option<&str>| {
        let vars = json!({ "project": team.project, "feature": feature });
        let next = team.worker.ok(CLAIM_NEXT, vars).await;
        next["claimNextPlan"]["id"].as_str().map(str::to_owned)
    };
    assert_eq!(claim_next(Some(&team.feature)).await, Some(urgent_old));
    assert_eq!(claim_next(Some(&team.feature)).await, Some(urgent_new));
    assert_eq!(claim_next(None).await, Some(elsewhere));
    assert_eq!(claim_next(None).await, Some(normal.clone()));
    let reprioritized = team
        .owner
        .ok(
            "mutation($id: ID!) { setPlanPriority(planId: $id, priority: 1) { priority } }",
            json!({ "id": someday }),
        )
        .await;
    assert_eq!(reprioritized["setPlanPriority"]["priority"], 1);
    assert_eq!(
        event_kinds(&state(&team, &someday).await),
        ["CREATED", "PRIORITY_CHANGED"]
    );
    let next = team
        .worker
        .ok(CLAIM_NEXT, json!({ "project": team.project }))
        .await;
    let claimed = &next["claimNextPlan"];
    assert_eq!(claimed["id"], someday.as_str());
    assert_eq!(claimed["claimedBy"]["email"], "worker@example.com");
    assert_eq!(claimed["spec"], "# spec", "what an agent needs to start");
    assert_eq!(claimed["feature"]["id"], team.feature.as_str());
    assert!(claimed["claimToken"].is_string() && claimed["leaseExpiresAt"].is_string());
    assert_eq!(
        claim_next(None).await,
        None,
        "the urgent one is blocked; nothing else is ready"
    );

    // Bad arguments name themselves; viewers cannot claim.
    let bad_priority = team
        .owner
        .send(
            CREATE_WITH_PRIORITY,
            json!({ "feature": team.feature, "title": "x", "priority": 5 }),
        )
        .await;
    assert_eq!(bad_priority.code(), "BAD_USER_INPUT");
    assert_eq!(
        bad_priority.message(),
        "priority must be between 0 and 4 (0 = most urgent, 4 = someday)"
    );
    let viewer = team
        .viewer
        .send(CLAIM_NEXT, json!({ "project": team.project }))
        .await;
    assert_eq!(viewer.code(), "FORBIDDEN");
    let foreign_feature = team.outsiders_own_feature().await;
    let elsewhere = team
        .worker
        .send(
            CLAIM_NEXT,
            json!({ "project": team.project, "feature": foreign_feature }),
        )
        .await;
    assert_eq!(elsewhere.code(), "NOT_FOUND");
}

async fn a_heartbeat_renews_the_lease_without_an_event(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    team.plan("long work", "READY").await;
    let next = team
        .worker
        .ok(CLAIM_NEXT, json!({ "project": team.project, "lease": 600 }))
        .await;
    let plan = string(&next["claimNextPlan"]["id"]);
    let token = string(&next["claimNextPlan"]["claimToken"]);
    let before = state(&team, &plan).await;
    clock_moves_past(&string(&before["lastActivityAt"])).await;

    let heartbeat =
        "mutation($plan: ID!, $token: String) { heartbeatPlan(planId: $plan, claimToken: $token) {
        status claimToken leaseExpiresAt lastActivityAt updatedAt } }";
    let beat = team
        .worker
        .ok(heartbeat, json!({ "plan": plan, "token": token }))
        .await;
    let beat = &beat["heartbeatPlan"];
    assert_eq!(beat["status"], "CLAIMED");
    assert_eq!(
        beat["claimToken"],
        Value::Null,
        "a token is in the claim's answer only"
    );
    assert!(string(&beat["lastActivityAt"]) > string(&before["lastActivityAt"]));
    assert!(string(&beat["leaseExpiresAt"]) > string(&before["leaseExpiresAt"]));
    let again = team
        .worker
        .ok(heartbeat, json!({ "plan": plan, "token": token }))
        .await;
    assert_eq!(
        again["heartbeatPlan"]["status"], "CLAIMED",
        "the same claim"
    );
    let after = state(&team, &plan).await;
    assert_eq!(
        after["events"], before["events"],
        "no event for a heartbeat"
    );

    // Only the holder renews; nobody renews an unclaimed plan.
    let owner = team
        .owner
        .send(heartbeat, json!({ "plan": plan, "token": null }))
        .await;
    assert_eq!(owner.code(), "FORBIDDEN");
    let unclaimed = team.plan("nobody's", "READY").await;
    let nobody = team
        .worker
        .send(heartbeat, json!({ "plan": unclaimed, "token": null }))
        .await;
    assert_eq!(nobody.code(), "CONFLICT");
}
