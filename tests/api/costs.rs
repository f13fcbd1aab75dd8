//! What a field, a list argument, an introspection and an anonymous client
//! can cost: every field priced by its real bound, CPU-heavy work bounded
//! per operation and stopped when its client leaves, responses bounded in
//! bytes however they are made up, and another client served meanwhile.

use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    dependency_lists_are_bounded_and_priced_by_their_fan_out,
    histories_show_their_newest_items_and_are_priced_by_them,
    a_cycle_refusal_names_a_few_plans_however_long_the_cycle,
    list_arguments_are_bounded_with_a_clear_error,
    an_operation_computes_a_bounded_number_of_diffs,
    diffs_stop_when_their_client_leaves,
    introspection_is_priced_by_the_size_of_its_answer,
    responses_are_bounded_in_bytes_whatever_their_fields,
    anonymous_clients_have_a_bounded_share_per_address,
);

const ADD_DEPENDENCY: &str = "mutation($plan: ID!, $blocker: ID!) {
    addPlanDependency(planId: $plan, blockedByPlanId: $blocker) { id } }";

async fn dependency_lists_are_bounded_and_priced_by_their_fan_out(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let waiter = team.plan("waiter", "READY").await;
    let mut blockers = Vec::new();
    for n in 0..11 {
        blockers.push(team.plan(&format!("blocker {n}"), "READY").await);
    }
    for blocker in &blockers[..10] {
        team.owner
            .ok(
                ADD_DEPENDENCY,
                json!({ "plan": waiter, "blocker": blocker }),
            )
            .await;
    }
    let reply = team
        .owner
        .send(
            ADD_DEPENDENCY,
            json!({ "plan": waiter, "blocker": blockers[10] }),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT", "{reply:?}");
    assert!(
        reply.message().contains("already waits for 10 plans"),
        "{}",
        reply.message()
    );
    assert_eq!(reply.errors[0]["extensions"]["argument"], "planId");

    // One plan is waited on by at most 50: the 51st waiter is refused.
    let foundation = &blockers[0];
    for n in 0..49 {
        let other = team.plan(&format!("waiter {n}"), "READY").await;
        team.owner
            .ok(
                ADD_DEPENDENCY,
                json!({ "plan": other, "blocker": foundation }),
            )
            .await;
    }
    let last = team.plan("one too many", "READY").await;
    let reply = team
        .owner
        .send(
            ADD_DEPENDENCY,
            json!({ "plan": last, "blocker": foundation }),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT", "{reply:?}");
    assert!(
        reply.message().contains("50 plans already wait"),
        "{}",
        reply.message()
    );
    assert_eq!(reply.errors[0]["extensions"]["argument"], "blockedByPlanId");

    // Lists are priced at their bound: two levels of blockers are served,
    // four levels (10^4 plans) are refused before anything is loaded.
    let served = team
        .owner
        .ok(
            "query($id: ID!) { plan(id: $id) { blockedBy { title blockedBy { id } blocks { id } } } }",
            json!({ "id": waiter }),
        )
        .await;
    let listed = served["plan"]["blockedBy"].as_array().expect("blockers");
    assert_eq!(listed.len(), 10);
    let nested = "query($id: ID!) { plan(id: $id) { blockedBy { blockedBy { blockedBy { blockedBy { id } } } } } }";
    let reply = with_bystanders(&server, team.owner.send(nested, json!({ "id": waiter }))).await;
    assert_refused_naming(&reply, "--max-query-complexity");
    let reply = team
        .owner
        .send(
            "query($id: ID!) { plan(id: $id) { blocks { blocks { blocks { id } } } } }",
            json!({ "id": foundation }),
        )
        .await;
    assert_refused_naming(&reply, "--max-query-complexity");
}

/// Replaces `plan`'s spec once for each of `revisions`, with `spec(revision)`.
async fn rewrite(
    team: &Team,
    plan: &str,
    revisions: std::ops::Range<usize>,
    spec: impl Fn(usize) -> String,
) {
    for revision in revisions {
        team.owner
            .ok(
                UPDATE_PLAN,
                json!({ "planId": plan, "spec": spec(revision) }),
            )
            .await;
    }
}

/// One field of every item of a history list.
fn column(list: &Value, name: &str) -> Vec<Value> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| item[name].clone())
        .collect()
}

async fn histories_show_their_newest_items_and_are_priced_by_them(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let new_version =
        "mutation($id: ID!) { updateFeature(featureId: $id, newVersion: true) { id } }";
    for _ in 0..21 {
        team.owner
            .ok(new_version, json!({ "id": team.feature }))
            .await;
    }
    // Written against the newest version, so its history holds only its own
    // changes.
    let plan = team.plan("long history", "DRAFT").await;
    rewrite(&team, &plan, 0..24, |revision| format!("# Spec {revision}")).await;

    let histories = "query($id: ID!, $feature: ID!) {
        plan(id: $id) { all: events(last: 100) { cursor } newest: events { cursor } }
        feature(id: $feature) { currentVersion all: versions(last: 100) { version } newest: versions { version } }
        featureVersions(featureId: $feature, last: 3) { version } }";
    let read = team
        .owner
        .ok(histories, json!({ "id": plan, "feature": team.feature }))
        .await;
    let all = column(&read["plan"]["all"], "cursor");
    let newest = column(&read["plan"]["newest"], "cursor");
    assert_eq!(all.len(), 25, "the creation and 24 updates");
    assert_eq!(newest, all[5..], "by default the newest 20, oldest first");
    let versions = column(&read["feature"]["all"], "version");
    assert_eq!(read["feature"]["currentVersion"], 22);
    assert_eq!(versions, (1..=22).map(Value::from).collect::<Vec<_>>());
    assert_eq!(column(&read["feature"]["newest"], "version"), versions[2..]);
    assert_eq!(
        column(&read["featureVersions"], "version"),
        versions[19..],
        "the newest 3"
    );

    // A page asks once for each count its rows' histories want.
    let page = "query($project: ID!) { plans(projectId: $project, first: 100) { nodes {
        id few: events(last: 2) { cursor } more: events(last: 3) { cursor } } } }";
    let listed = team
        .owner
        .ok(page, json!({ "project": team.project }))
        .await;
    let row = listed["plans"]["nodes"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|row| row["id"] == plan)
        .expect("the plan is listed")
        .clone();
    assert_eq!(column(&row["few"], "cursor"), all[23..]);
    assert_eq!(column(&row["more"], "cursor"), all[22..]);

    let reply = team
        .owner
        .send(
            "query($id: ID!) { plan(id: $id) { events(last: 101) { cursor } } }",
            json!({ "id": plan }),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT", "{reply:?}");
    // Priced by the count asked for: a page of 100 plans' default
    // histories fits the limit, a page of their longest histories does not.
    let events_of_page = |last: &str| {
        format!("{{ plans(first: 100) {{ nodes {{ events{last} {{ kind at }} }} }} }}")
    };
    team.owner.ok(&events_of_page(""), json!({})).await;
    let reply = team
        .owner
        .send(&events_of_page("(last: 100)"), json!({}))
        .await;
    assert_refused_naming(&reply, "--max-query-complexity");
}

async fn a_cycle_refusal_names_a_few_plans_however_long_the_cycle(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let long_title = "a title as long as titles get ".repeat(8);
    let mut chain = Vec::new();
    for n in 0..30 {
        chain.push(team.plan(&format!("{n} {long_title}"), "READY").await);
    }
    // Each waits for the one before: 0 ← 1 ← … ← 29.
    for pair in chain.windows(2) {
        team.owner
            .ok(
                ADD_DEPENDENCY,
                json!({ "plan": pair[1], "blocker": pair[0] }),
            )
            .await;
    }
    let reply = team
        .owner
        .send(
            ADD_DEPENDENCY,
            json!({ "plan": chain[0], "blocker": chain[29] }),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT", "{reply:?}");
    let message = reply.message();
    assert!(message.contains("would make a cycle"), "{message}");
    assert!(
        message.contains("more …"),
        "the rest of the cycle is counted: {message}"
    );
    assert!(message.len() < 1500, "{} bytes: {message}", message.len());
    assert!(
        message.contains(&chain[0]),
        "the plan itself is named: {message}"
    );
}

async fn list_arguments_are_bounded_with_a_clear_error(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    team.plan("ready one", "READY").await;
    let query =
        "query($p: [Int!], $s: [PlanStatus!]) { plans(priority: $p, status: $s) { totalCount } }";

    let priorities: Vec<i32> = (0..200_000).map(|n| n % 5).collect();
    let reply = team.owner.send(query, json!({ "p": priorities })).await;
    assert_refused_naming(&reply, "at most 100");
    let statuses: Vec<&str> = (0..100_000).map(|_| "READY").collect();
    let reply = team.owner.send(query, json!({ "s": statuses })).await;
    assert_refused_naming(&reply, "at most 100");
    let inline: String = (0..150).map(|_| "READY ").collect();
    let reply = team
        .owner
        .send(
            &format!("{{ plans(status: [{inline}]) {{ totalCount }} }}"),
            json!({}),
        )
        .await;
    assert_refused_naming(&reply, "at most 100");

    // Within the bound, repeats mean the value once; a priority plans cannot
    // have is refused, not matched by nothing.
    let statuses: Vec<&str> = (0..100).map(|_| "READY").collect();
    let served = team.owner.ok(query, json!({ "s": statuses })).await;
    assert_eq!(served["plans"]["totalCount"], 1);
    let reply = team.owner.send(query, json!({ "p": [2, 9] })).await;
    assert_eq!(reply.code(), "BAD_USER_INPUT", "{reply:?}");
    assert!(
        reply.message().contains("between 0 and 4"),
        "{}",
        reply.message()
    );

    let kinds: Vec<&str> = (0..100_000).map(|_| "CLAIMED").collect();
    let reply = team
        .owner
        .send(
            "mutation($p: ID!, $k: [PlanEventKind!]) { createWebhook(projectId: $p, url: \"https://example.com/hook\", eventKinds: $k) { secret } }",
            json!({ "p": team.project, "k": kinds }),
        )
        .await;
    assert_refused_naming(&reply, "at most 100");
    let stored = team
        .owner
        .ok(
            "query($p: ID!) { project(id: $p) { webhooks { id } } }",
            json!({ "p": team.project }),
        )
        .await;
    assert_eq!(
        stored["project"]["webhooks"],
        json!([]),
        "nothing was stored"
    );
}

/// A spec of `lines` lines, every one different from the same spec with
/// another `seed`: the diff algorithm's worst case.
fn unlike_spec(seed: usize, lines: usize) -> String {
    (0..lines)
        .map(|line| {
            format!(
                "line {line} of revision {seed}: {}\n",
                (line * 7919 + seed * 104_729) % 1_000_003
            )
        })
        .collect()
}

async fn an_operation_computes_a_bounded_number_of_diffs(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan("rewritten often", "DRAFT").await;
    rewrite(&team, &plan, 1..21, |revision| unlike_spec(revision, 20)).await;
    let before = server.metrics().await.count("plangraph_spec_diffs_total");
    let reply = team
        .owner
        .send(
            "query($id: ID!) { plan(id: $id) { specRevisions { number diff(from: 1) { added } } } }",
            json!({ "id": plan }),
        )
        .await;
    let revisions = reply.data["plan"]["specRevisions"]
        .as_array()
        .expect("revisions");
    assert_eq!(revisions.len(), 20, "the newest 20 of 21 by default");
    assert_eq!(revisions[0]["number"], 2);
    let diffs = revisions
        .iter()
        .filter(|revision| revision["diff"].is_object())
        .count();
    assert_eq!(diffs, 16, "16 diffs computed, the rest refused");
    assert_eq!(reply.errors.len(), 4, "{:?}", reply.errors);
    for error in &reply.errors {
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|message| message.contains("more than 16 diffs")),
            "{error}"
        );
    }
    let after = server.metrics().await.count("plangraph_spec_diffs_total");
    assert_eq!(after - before, 16.0, "no diff was computed past the bound");

    let reply = team
        .owner
        .send(
            "query($id: ID!) { plan(id: $id) { specRevisions(last: 101) { number } } }",
            json!({ "id": plan }),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT", "{reply:?}");
    let all = team
        .owner
        .ok(
            "query($id: ID!) { plan(id: $id) { specRevisions(last: 100) { number } } }",
            json!({ "id": plan }),
        )
        .await;
    assert_eq!(
        all["plan"]["specRevisions"].as_array().map(Vec::len),
        Some(21)
    );
}

/// A request of many slow diffs whose client gives up: the diffs not yet
/// started never start, and another client's diff is computed at once.
async fn diffs_stop_when_their_client_leaves(backend: Backend) {
    let server = Server::start_with(backend, &["--max-concurrent-diffs", "1"]).await;
    let team = Team::new(&server).await;
    let plan = team.plan("large and rewritten", "DRAFT").await;
    rewrite(&team, &plan, 1..17, |revision| {
        unlike_spec(revision, 20_000)
    })
    .await;
    let before = server.metrics().await.count("plangraph_spec_diffs_total");
    let gave_up = team
        .owner
        .give_up_after(
            Duration::from_millis(300),
            "query($id: ID!) { plan(id: $id) { specRevisions { diff(from: 1) { added } } } }",
            json!({ "id": plan }),
        )
        .await;
    assert!(gave_up, "the client gave up before the diffs were done");
    // The diff that was running finishes; then nothing more starts.
    let settled = server
        .settled_count("plangraph_spec_diffs_total", Duration::from_millis(800))
        .await;
    assert!(
        settled - before < 16.0,
        "{} of 16 diffs ran after the client left",
        settled - before
    );
    let reply = team
        .owner
        .ok(
            "query($id: ID!) { plan(id: $id) { specRevisions(last: 1) { diff { added removed } } } }",
            json!({ "id": plan }),
        )
        .await;
    assert!(reply["plan"]["specRevisions"][0]["diff"]["added"].as_i64() > Some(0));
}

/// `count` aliased `__schema` introspections with descriptions.
fn introspection_aliases(count: usize) -> String {
    let one = "__schema { types { name description fields { name description } } }";
    (0..count).map(|n| format!("s{n}: {one} ")).collect()
}

fn introspections(count: usize) -> String {
    format!("{{ {} }}", introspection_aliases(count))
}

async fn introspection_is_priced_by_the_size_of_its_answer(backend: Backend) {
    let server = Server::start(backend).await;
    let anonymous = server.anonymous();
    let reply = with_bystanders(&server, anonymous.send(&introspections(285), json!({}))).await;
    assert_refused_naming(&reply, "--max-query-complexity");
    assert!(
        reply.message().contains("introspection"),
        "{}",
        reply.message()
    );
    // One introspection, as GraphiQL makes, is served to anyone.
    let reply = anonymous.send(&introspections(1), json!({})).await;
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    assert!(
        reply.data["s0"]["types"]
            .as_array()
            .is_some_and(|types| types.len() > 20)
    );
    // A fragment does not hide it.
    let hidden = format!(
        "{{ ...I }} fragment I on Query {{ {} }}",
        introspection_aliases(285)
    );
    let reply = anonymous.send(&hidden, json!({})).await;
    assert_refused_naming(&reply, "--max-query-complexity");

    let locked = Server::start_with(backend, &["--introspection", "authenticated"]).await;
    let reply = locked.anonymous().send(&introspections(1), json!({})).await;
    assert_eq!(reply.code(), "UNAUTHENTICATED", "{reply:?}");
    assert!(
        reply.message().contains("--introspection"),
        "{}",
        reply.message()
    );
    let typename = locked.anonymous().ok("{ __typename }", json!({})).await;
    assert_eq!(typename["__typename"], "Query");
    let with_key = locked.admin().ok(&introspections(1), json!({})).await;
    assert!(with_key["s0"]["types"].is_array());

    let off = Server::start_with(backend, &["--introspection", "off"]).await;
    let reply = off.admin().send(&introspections(1), json!({})).await;
    assert_refused_naming(&reply, "--introspection off");
}

async fn responses_are_bounded_in_bytes_whatever_their_fields(backend: Backend) {
    let server = Server::start_with(backend, &["--max-response-bytes", "50000"]).await;
    let team = Team::new(&server).await;
    for n in 0..20 {
        team.plan(&format!("{n} {}", "long title ".repeat(20)), "READY")
            .await;
    }
    let pages = |count: usize| {
        let aliases: String = (0..count)
            .map(|n| format!("p{n}: plans(first: 20) {{ nodes {{ title }} }} "))
            .collect();
        format!("{{ {aliases} }}")
    };
    let served = team.owner.ok(&pages(2), json!({})).await;
    assert_eq!(served["p1"]["nodes"].as_array().map(Vec::len), Some(20));
    // 20 pages of 20 titles of ~230 bytes: about 100 KB, over 50 KB.
    let reply = with_bystanders(&server, team.owner.send(&pages(20), json!({}))).await;
    assert_refused_naming(&reply, "--max-response-bytes");
    // Introspection is bounded the same way.
    let reply = server.anonymous().send(&introspections(3), json!({})).await;
    assert_refused_naming(&reply, "--max-response-bytes");
}

async fn anonymous_clients_have_a_bounded_share_per_address(backend: Backend) {
    // A share of one: the server's two worker threads each run one of
    // these CPU-bound introspections at a time, so the sixteen overlap in
    // pairs at least, and every second one of a pair is over the share.
    let server = Server::start_with(
        backend,
        &[
            "--max-anonymous-requests-per-address",
            "1",
            "--max-query-complexity",
            "100000",
        ],
    )
    .await;
    let anonymous = server.anonymous();
    let heavy = introspections(20);
    let replies = with_bystanders(&server, async {
        let all =
            futures::future::join_all((0..16).map(|_| anonymous.send(&heavy, json!({})))).await;
        let refused: Vec<&Reply> = all.iter().filter(|reply| reply.status == 429).collect();
        for reply in &refused {
            assert_eq!(reply.code(), "RATE_LIMITED", "{reply:?}");
            assert!(
                reply
                    .message()
                    .contains("--max-anonymous-requests-per-address"),
                "{}",
                reply.message()
            );
        }
        let served = all
            .iter()
            .filter(|reply| reply.data["s0"].is_object())
            .count();
        assert!(served >= 1, "the address's share is served: {served}");
        assert!(!refused.is_empty(), "16 at once exceed a share of 1");
        assert_eq!(served + refused.len(), 16);
        Reply {
            status: reqwest::StatusCode::OK,
            data: Value::Null,
            errors: Vec::new(),
        }
    })
    .await;
    assert!(replies.errors.is_empty());
    // The share comes back once those requests are done.
    let typename = anonymous.ok("{ __typename }", json!({})).await;
    assert_eq!(typename["__typename"], "Query");
}
