//! Webhooks end to end: a real receiver on 127.0.0.1 in this process checks
//! what the real server sends — signatures, order and completeness — through
//! failing receivers, a crash, two instances, disabling and filters; and
//! that a project's dead receiver delays no other project's deliveries.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    every_event_arrives_signed_in_order_with_its_details,
    a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt,
    a_crash_mid_delivery_loses_nothing,
    a_disabled_webhook_sends_nothing_until_enabled_again,
    a_webhook_failing_for_long_is_disabled_with_a_reason,
    event_kind_filters_choose_what_is_sent,
    owners_manage_webhooks_and_bad_input_is_refused,
    a_dead_receiver_of_one_project_never_delays_another_projects_deliveries,
    webhooks_retrying_a_dead_receiver_leave_slots_to_working_ones,
);

mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_deliver_every_event_once_in_order() {
        if let Some(backend) = crate::helpers::Backend::postgres().await {
            super::two_instances_deliver_every_event_once_in_order(backend).await
        }
    }
}

mod sqlite_only {
    use crate::helpers::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_logged_delivery_can_be_redelivered_and_a_rotated_secret_signs_it() {
        super::a_logged_delivery_can_be_redelivered_and_a_rotated_secret_signs_it(Backend::Sqlite)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn private_targets_are_refused_when_saved_and_when_delivered() {
        super::private_targets_are_refused_when_saved_and_when_delivered(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_readme_verification_example_accepts_a_real_delivery() {
        super::the_readme_verification_example_accepts_a_real_delivery(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_ignore_a_proxy_named_by_the_environment() {
        super::deliveries_ignore_a_proxy_named_by_the_environment(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_webhook_proxy_carries_deliveries_and_resolves_their_names() {
        super::the_webhook_proxy_carries_deliveries_and_resolves_their_names(Backend::Sqlite).await
    }
}

/// Tests talk to a receiver on 127.0.0.1, which only this flag permits.
const ALLOW_PRIVATE: &str = "--webhook-allow-private";

const CREATE: &str = "mutation($projectId: ID!, $url: String!, $kinds: [PlanEventKind!]) {
    createWebhook(projectId: $projectId, url: $url, eventKinds: $kinds) {
      secret webhook { id url eventKinds enabled disabledReason deliveredCursor createdBy { email } } } }";
const UPDATE: &str =
    "mutation($id: ID!, $url: String, $kinds: [PlanEventKind!], $all: Boolean, $enabled: Boolean) {
    updateWebhook(id: $id, url: $url, eventKinds: $kinds, allEventKinds: $all, enabled: $enabled) {
      id url eventKinds enabled disabledReason consecutiveFailures } }";
const WEBHOOKS: &str = "query($id: ID!) { project(id: $id) { webhooks {
    id url eventKinds enabled disabledReason deliveredCursor consecutiveFailures failingSince nextAttemptAt createdAt
    deliveries(first: 20) { id eventCursor attempt redelivery status error durationMs at } } } }";

/// A registered webhook and its secret.
struct Hook {
    id: String,
    secret: String,
}

async fn register(team: &Team, url: &str, kinds: Option<&[&str]>) -> Hook {
    register_in(&team.owner, &team.project, url, kinds).await
}

/// A webhook of `project`, registered by its owner `owner`.
async fn register_in(owner: &Client, project: &str, url: &str, kinds: Option<&[&str]>) -> Hook {
    let created = owner
        .ok(
            CREATE,
            json!({ "projectId": project, "url": url, "kinds": kinds }),
        )
        .await;
    let created = &created["createWebhook"];
    Hook {
        id: created["webhook"]["id"].as_str().expect("id").to_owned(),
        secret: created["secret"].as_str().expect("secret").to_owned(),
    }
}

/// The project's webhook `id` as owners read it, delivery log included.
async fn read_hook(team: &Team, id: &str) -> Value {
    let data = team.owner.ok(WEBHOOKS, json!({ "id": team.project })).await;
    data["project"]["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .find(|hook| hook["id"] == id)
        .unwrap_or_else(|| panic!("no webhook {id} in {data}"))
        .clone()
}

/// Every event of these plans as (cursor, kind), in event order.
async fn events_of(client: &Client, plans: &[&str]) -> Vec<(i64, String)> {
    let mut events = Vec::new();
    for plan in plans {
        let data = client
            .ok(
                "query($id: ID!) { plan(id: $id) { events { cursor kind } } }",
                json!({ "id": plan }),
            )
            .await;
        for event in data["plan"]["events"].as_array().expect("events") {
            let cursor = event["cursor"].as_str().expect("cursor");
            let kind = event["kind"].as_str().expect("kind");
            events.push((cursor.parse().expect("numeric cursor"), kind.to_owned()));
        }
    }
    events.sort();
    events
}

fn cursors(events: &[(i64, String)]) -> Vec<i64> {
    events.iter().map(|(cursor, _)| *cursor).collect()
}

/// A plan taken from creation to completion: CREATED, CLAIMED, UPDATED,
/// SUBMITTED, COMPLETED.
async fn plan_through_review(team: &Team, title: &str) -> String {
    let plan = team.plan_in(title, "IN_PROGRESS").await;
    let vars = json!({ "planId": plan, "artifacts": "PR #7", "status": "REVIEW" });
    team.worker.ok(SUBMIT, vars).await;
    let vars = json!({ "planId": plan, "status": "COMPLETED" });
    team.owner.ok(SET_STATUS, vars).await;
    plan
}

async fn every_event_arrives_signed_in_order_with_its_details(backend: Backend) {
    let server = Server::start_with(backend, &[ALLOW_PRIVATE]).await;
    let team = Team::new(&server).await;
    let before = team.plan("made before the webhook", "DRAFT").await;
    let receiver = Receiver::start().await;
    let hook = register(&team, &receiver.url, None).await;
    assert!(hook.secret.starts_with("whsec_"), "{}", hook.secret);

    let plan = plan_through_review(&team, "Sign the deliveries").await;
    let vars = json!({ "planId": before, "status": "READY" });
    team.owner.ok(SET_STATUS, vars).await;
    // A new spec drifts the plan made before: SPEC_DRIFTED goes out too.
    let update =
        "mutation($id: ID!) { updateFeature(featureId: $id, specContent: \"# New\") { id } }";
    team.owner.ok(update, json!({ "id": team.feature })).await;
    let all = events_of(&team.owner, &[&plan, &before]).await;
    let expected: Vec<(i64, String)> = all.into_iter().skip(1).collect();
    assert_eq!(expected.len(), 7, "{expected:?}");
    assert!(
        expected.iter().any(|(_, kind)| kind == "SPEC_DRIFTED"),
        "{expected:?}"
    );
    receiver.wait_for_accepted(&cursors(&expected)).await;

    let requests = receiver.requests();
    assert_eq!(
        receiver.accepted_cursors(),
        cursors(&expected),
        "every event after the webhook's creation, once each, in event order"
    );
    assert_eq!(requests.len(), expected.len(), "and nothing else");
    let mut delivery_ids = HashSet::new();
    for (request, (cursor, kind)) in requests.iter().zip(&expected) {
        assert!(request.signed_with(&hook.secret), "{request:?}");
        assert!(!request.signed_with("whsec_someone_else"));
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("x-plangraph-event"), kind);
        assert!(delivery_ids.insert(request.header("x-plangraph-delivery").to_owned()));
        let body = &request.json;
        assert_eq!(body["cursor"], cursor.to_string());
        assert_eq!(body["kind"], kind.as_str());
        assert!(body["at"].as_str().is_some_and(|at| at.ends_with('Z')));
        assert_eq!(body["plan"]["featureId"], team.feature.as_str());
        assert_eq!(body["plan"]["projectId"], team.project.as_str());
        assert!(body["plan"]["title"].is_string() && body["plan"]["status"].is_string());
    }
    let claimed = requests
        .iter()
        .find(|request| request.json["kind"] == "CLAIMED")
        .expect("a CLAIMED delivery");
    assert_eq!(claimed.json["fromStatus"], "READY");
    assert_eq!(claimed.json["toStatus"], "CLAIMED");
    assert_eq!(claimed.json["actor"]["email"], "worker@example.com");
    assert_eq!(claimed.json["actor"]["id"], team.worker.user_id().await);
    assert_eq!(claimed.json["plan"]["id"], plan.as_str());
    let created = &requests[0].json;
    assert_eq!(created["kind"], "CREATED");
    assert_eq!(created["fromStatus"], Value::Null);
    assert_eq!(created["note"], Value::Null);
    let drifted = requests
        .iter()
        .find(|request| request.json["kind"] == "SPEC_DRIFTED")
        .expect("a SPEC_DRIFTED delivery");
    assert_eq!(drifted.json["actor"], Value::Null, "the server drifted it");
    assert_eq!(
        drifted.json["note"],
        "owner@example.com changed the feature's spec (now v2)"
    );

    let read = read_hook(&team, &hook.id).await;
    let last = expected.last().expect("events").0.to_string();
    assert_eq!(read["deliveredCursor"], last);
    assert_eq!(read["consecutiveFailures"], 0);
    let logged = read["deliveries"].as_array().expect("deliveries");
    assert_eq!(logged.len(), expected.len(), "one attempt per event");
    for entry in logged {
        assert_eq!(entry["status"], 200);
        assert_eq!(entry["attempt"], 1);
        assert_eq!(entry["error"], Value::Null);
        assert!(delivery_ids.contains(entry["id"].as_str().expect("id")));
    }
    assert_eq!(logged[0]["eventCursor"], last, "newest first");

    let everything = server
        .admin()
        .send(WEBHOOKS, json!({ "id": team.project }))
        .await;
    let reads = format!("{read} {everything:?}");
    assert!(
        !reads.contains(&hook.secret),
        "the secret is never read back"
    );
    let log = std::fs::read_to_string(server.database.data_dir.path().join("server.log"))
        .expect("server log");
    assert!(!log.contains(&hook.secret), "the secret is never logged");
    let metrics = server.metrics().await;
    let delivered = "plangraph_webhook_deliveries_total{result=\"delivered\"}";
    assert!(metrics.get(delivered) >= expected.len() as f64);
    assert!(
        metrics
            .names()
            .any(|name| name.starts_with("plangraph_webhook_delivery_duration_seconds"))
    );
}

async fn a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(backend: Backend) {
    let base = Duration::from_millis(100);
    let server =
        Server::start_with(backend, &[ALLOW_PRIVATE, "--webhook-retry-base", "100ms"]).await;
    let team = Team::new(&server).await;
    let receiver = Receiver::start().await;
    receiver.answer_next(&[500, 500, 500]);
    let hook = register(&team, &receiver.url, None).await;

    let plan = team.plan_in("Retried", "CLAIMED").await;
    let expected = cursors(&events_of(&team.owner, &[&plan]).await);
    receiver.wait_for_accepted(&expected).await;

    let requests = receiver.requests();
    let arrived: Vec<i64> = requests.iter().map(Received::cursor).collect();
    let first = expected[0];
    assert_eq!(
        arrived,
        [vec![first; 4], expected[1..].to_vec()].concat(),
        "the first event is retried until accepted, and nothing overtakes it"
    );
    let answers: Vec<Option<u16>> = requests.iter().map(|request| request.answered).collect();
    assert_eq!(
        answers,
        [Some(500), Some(500), Some(500), Some(200), Some(200)]
    );
    assert!(
        requests
            .iter()
            .all(|request| request.signed_with(&hook.secret))
    );
    let ids: HashSet<&str> = requests
        .iter()
        .map(|request| request.header("x-plangraph-delivery"))
        .collect();
    assert_eq!(
        ids.len(),
        requests.len(),
        "each attempt has its own delivery id"
    );

    let read = read_hook(&team, &hook.id).await;
    assert_eq!(read["consecutiveFailures"], 0);
    assert_eq!(read["nextAttemptAt"], Value::Null);
    let mut logged: Vec<Value> = read["deliveries"].as_array().expect("log").clone();
    logged.reverse();
    let attempts: Vec<(Value, Value, Value)> = logged
        .iter()
        .map(|entry| {
            (
                entry["eventCursor"].clone(),
                entry["attempt"].clone(),
                entry["status"].clone(),
            )
        })
        .collect();
    let first = json!(first.to_string());
    assert_eq!(
        attempts[..4],
        [
            (first.clone(), json!(1), json!(500)),
            (first.clone(), json!(2), json!(500)),
            (first.clone(), json!(3), json!(500)),
            (first, json!(4), json!(200)),
        ]
    );
    assert_eq!(
        logged[0]["error"],
        "the receiver answered 500 Internal Server Error"
    );
    // Retries back off: the n-th waits at least half of base × 2^(n-1).
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = logged[..4]
        .iter()
        .map(|entry| {
            chrono::DateTime::parse_from_rfc3339(entry["at"].as_str().expect("at")).expect("time")
        })
        .collect();
    for retry in 1..4 {
        let gap = (times[retry] - times[retry - 1]).to_std().expect("later");
        let least = base * (1 << (retry - 1)) / 2;
        assert!(
            gap >= least,
            "retry {retry} came after {gap:?}, before {least:?}"
        );
    }
    let metrics = server.metrics().await;
    assert_eq!(
        metrics.get("plangraph_webhook_deliveries_total{result=\"failed_status\"}"),
        3.0
    );
}

async fn a_crash_mid_delivery_loses_nothing(backend: Backend) {
    let server = Server::start_with(backend, &[ALLOW_PRIVATE]).await;
    let team = Team::new(&server).await;
    let receiver = Receiver::start().await;
    let held = receiver.hold_next();
    let hook = register(&team, &receiver.url, None).await;

    // The first delivery is in flight (the receiver has it and has not
    // answered) while more events commit; then the server is killed.
    let plan = team.plan("Survives a crash", "READY").await;
    held.arrived().await;
    team.worker.ok(CLAIM, json!({ "planId": plan })).await;
    let vars = json!({ "planId": plan, "spec": "# progress" });
    team.worker.ok(UPDATE_PLAN, vars).await;
    let database = server.kill().await;

    let server = Server::launch(database, vec![ALLOW_PRIVATE.to_owned()]).await;
    let team_after = team.on(&server);
    let vars = json!({ "planId": plan, "artifacts": "PR", "status": "REVIEW" });
    team_after.worker.ok(SUBMIT, vars).await;
    let expected = cursors(&events_of(&team_after.owner, &[&plan]).await);
    assert_eq!(expected.len(), 4);
    receiver.wait_for_accepted(&expected).await;

    assert_eq!(
        receiver.accepted_cursors(),
        expected,
        "every event, in order, each accepted once"
    );
    let arrived: Vec<i64> = receiver.requests().iter().map(Received::cursor).collect();
    assert_eq!(
        arrived
            .iter()
            .filter(|cursor| **cursor == expected[0])
            .count(),
        2,
        "the event in flight at the crash is sent again (at least once): {arrived:?}"
    );
    assert!(arrived.is_sorted(), "never out of order: {arrived:?}");
    assert!(
        receiver
            .requests()
            .iter()
            .all(|request| request.signed_with(&hook.secret))
    );
    held.release();
}

async fn two_instances_deliver_every_event_once_in_order(backend: Backend) {
    let servers = Server::instances(backend, &[ALLOW_PRIVATE, "--webhook-poll-every", "1s"]).await;
    let team = Team::new(&servers[0]).await;
    let receiver = Receiver::start().await;
    let hook = register(&team, &receiver.url, None).await;

    // Both instances write, concurrently; both run a delivery worker.
    let owners = [
        servers[0].as_client(&team.owner),
        servers[1].as_client(&team.owner),
    ];
    let workers = [
        servers[0].as_client(&team.worker),
        servers[1].as_client(&team.worker),
    ];
    let writes = (0..12).map(|index| {
        let owner = owners[index % 2].clone();
        let worker = workers[(index + 1) % 2].clone();
        let feature = team.feature.clone();
        async move {
            let vars = json!({ "featureId": feature, "title": format!("plan {index}"),
                               "spec": "# s", "status": "READY" });
            let created = owner.ok(CREATE_PLAN, vars).await;
            let plan = created["createPlan"]["id"].as_str().expect("id").to_owned();
            worker.ok(CLAIM, json!({ "planId": plan })).await;
            let vars = json!({ "planId": plan, "spec": "# done" });
            worker.ok(UPDATE_PLAN, vars).await;
            plan
        }
    });
    let plans = futures::future::join_all(writes).await;
    let plans: Vec<&str> = plans.iter().map(String::as_str).collect();
    let expected = cursors(&events_of(&team.owner, &plans).await);
    assert_eq!(expected.len(), 36);
    receiver.wait_for_accepted(&expected).await;

    let arrived: Vec<i64> = receiver.requests().iter().map(Received::cursor).collect();
    assert_eq!(
        arrived, expected,
        "each event delivered once, in event order, by whichever instance held the webhook"
    );
    assert!(
        receiver
            .requests()
            .iter()
            .all(|request| request.signed_with(&hook.secret))
    );
}

async fn a_disabled_webhook_sends_nothing_until_enabled_again(backend: Backend) {
    let server = Server::start_with(backend, &[ALLOW_PRIVATE]).await;
    let team = Team::new(&server).await;
    let paused = Receiver::start().await;
    let marker = Receiver::start().await;
    let hook = register(&team, &paused.url, None).await;
    register(&team, &marker.url, None).await;

    let disabled = team
        .owner
        .ok(UPDATE, json!({ "id": hook.id, "enabled": false }))
        .await;
    assert_eq!(disabled["updateWebhook"]["enabled"], false);
    assert_eq!(
        disabled["updateWebhook"]["disabledReason"],
        "Disabled by owner@example.com with updateWebhook"
    );
    let cursor_before = read_hook(&team, &hook.id).await["deliveredCursor"].clone();

    let plan = team.plan_in("While disabled", "CLAIMED").await;
    let expected = cursors(&events_of(&team.owner, &[&plan]).await);
    marker.wait_for_accepted(&expected).await;
    assert!(
        paused.requests().is_empty(),
        "a disabled webhook sends nothing"
    );
    let read = read_hook(&team, &hook.id).await;
    assert_eq!(read["deliveredCursor"], cursor_before);
    assert_eq!(read["deliveries"], json!([]));

    let enabled = team
        .owner
        .ok(UPDATE, json!({ "id": hook.id, "enabled": true }))
        .await;
    assert_eq!(enabled["updateWebhook"]["enabled"], true);
    assert_eq!(enabled["updateWebhook"]["disabledReason"], Value::Null);
    paused.wait_for_accepted(&expected).await;
    assert_eq!(
        paused.accepted_cursors(),
        expected,
        "enabled again, it receives what happened meanwhile, in order"
    );
}

async fn a_webhook_failing_for_long_is_disabled_with_a_reason(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            ALLOW_PRIVATE,
            "--webhook-retry-base",
            "20ms",
            "--webhook-disable-after-failures",
            "3",
            "--webhook-disable-after",
            "0s",
        ],
    )
    .await;
    let team = Team::new(&server).await;
    let receiver = Receiver::start().await;
    receiver.answer_otherwise(503);
    let hook = register(&team, &receiver.url, None).await;
    team.plan("Never accepted", "READY").await;

    let read = eventually(Duration::from_secs(30), async || {
        let read = read_hook(&team, &hook.id).await;
        (read["enabled"] == false).then_some(read)
    })
    .await;
    let reason = read["disabledReason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("Disabled after 3 failed deliveries in a row since "),
        "{reason}"
    );
    assert!(reason.contains("503 Service Unavailable"), "{reason}");
    assert!(reason.contains("updateWebhook(enabled: true)"), "{reason}");
    let statuses: Vec<&Value> = read["deliveries"]
        .as_array()
        .expect("log")
        .iter()
        .map(|entry| &entry["status"])
        .collect();
    assert_eq!(statuses, [&json!(503); 3]);
    assert_eq!(receiver.requests().len(), 3);
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("plangraph_webhooks_disabled_total"), 1.0);

    // Fixed and enabled again, it delivers the event it failed on.
    receiver.answer_otherwise(200);
    team.owner
        .ok(UPDATE, json!({ "id": hook.id, "enabled": true }))
        .await;
    let first = receiver.requests()[0].cursor();
    receiver.wait_for_accepted(&[first]).await;
    assert_eq!(read_hook(&team, &hook.id).await["consecutiveFailures"], 0);
}

async fn event_kind_filters_choose_what_is_sent(backend: Backend) {
    let server = Server::start_with(backend, &[ALLOW_PRIVATE]).await;
    let team = Team::new(&server).await;
    let receiver = Receiver::start().await;
    let hook = register(
        &team,
        &receiver.url,
        Some(&["COMPLETED", "CLAIMED", "CLAIMED"]),
    )
    .await;
    let read = read_hook(&team, &hook.id).await;
    assert_eq!(read["eventKinds"], json!(["CLAIMED", "COMPLETED"]));

    let plan = plan_through_review(&team, "Filtered").await;
    let stalled_later = team.plan("Only created", "DRAFT").await;
    let events = events_of(&team.owner, &[&plan, &stalled_later]).await;
    let wanted: Vec<i64> = events
        .iter()
        .filter(|(_, kind)| kind == "CLAIMED" || kind == "COMPLETED")
        .map(|(cursor, _)| *cursor)
        .collect();
    assert_eq!(wanted.len(), 2);
    receiver.wait_for_accepted(&wanted).await;
    // The events the filter leaves out are passed, not waited for.
    let last = events.last().expect("events").0.to_string();
    eventually(Duration::from_secs(30), async || {
        let read = read_hook(&team, &hook.id).await;
        (read["deliveredCursor"] == last.as_str()).then_some(())
    })
    .await;
    assert_eq!(receiver.accepted_cursors(), wanted);
    let kinds: Vec<String> = receiver
        .requests()
        .iter()
        .map(|request| request.header("x-plangraph-event").to_owned())
        .collect();
    assert_eq!(kinds, ["CLAIMED", "COMPLETED"]);

    // Every kind again, when asked for explicitly.
    let every = team
        .owner
        .ok(UPDATE, json!({ "id": hook.id, "all": true }))
        .await;
    assert_eq!(every["updateWebhook"]["eventKinds"], Value::Null);
    let vars = json!({ "planId": stalled_later, "status": "READY" });
    team.owner.ok(SET_STATUS, vars).await;
    let newest = events_of(&team.owner, &[&stalled_later]).await;
    let status_changed = newest.last().expect("event");
    assert_eq!(status_changed.1, "STATUS_CHANGED");
    receiver.wait_for_accepted(&[status_changed.0]).await;
}

async fn owners_manage_webhooks_and_bad_input_is_refused(backend: Backend) {
    let server = Server::start_with(backend, &[ALLOW_PRIVATE]).await;
    let team = Team::new(&server).await;
    let receiver = Receiver::start().await;
    let created = team
        .owner
        .ok(
            CREATE,
            json!({ "projectId": team.project, "url": receiver.url, "kinds": ["CREATED"] }),
        )
        .await;
    let webhook = &created["createWebhook"]["webhook"];
    assert_eq!(webhook["url"], receiver.url.as_str());
    assert_eq!(webhook["enabled"], true);
    assert_eq!(webhook["createdBy"]["email"], "owner@example.com");
    let id = webhook["id"].as_str().expect("id").to_owned();

    let moved = format!("{}/moved", receiver.url);
    let updated = team
        .owner
        .ok(
            UPDATE,
            json!({ "id": id, "url": moved, "kinds": ["FAILED", "STALLED"] }),
        )
        .await;
    assert_eq!(updated["updateWebhook"]["url"], moved.as_str());
    assert_eq!(
        updated["updateWebhook"]["eventKinds"],
        json!(["STALLED", "FAILED"])
    );
    let unchanged = team
        .owner
        .ok(UPDATE, json!({ "id": id, "kinds": null }))
        .await;
    assert_eq!(
        unchanged["updateWebhook"]["eventKinds"],
        json!(["STALLED", "FAILED"]),
        "left out or null, the filter stays"
    );
    let both = json!({ "id": id, "kinds": ["FAILED"], "all": true });
    assert_eq!(team.owner.code(UPDATE, both).await, "BAD_USER_INPUT");

    let rotate = "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret webhook { id } } }";
    let first = team.owner.ok(rotate, json!({ "id": id })).await;
    let second = team.owner.ok(rotate, json!({ "id": id })).await;
    assert_ne!(
        first["rotateWebhookSecret"]["secret"],
        second["rotateWebhookSecret"]["secret"]
    );
    assert_eq!(first["rotateWebhookSecret"]["webhook"]["id"], id.as_str());

    // Refusals, each naming what to fix.
    let refused = [
        (
            json!({ "projectId": team.project, "url": "ftp://example.com/x" }),
            "BAD_USER_INPUT",
            "url must be an absolute http:// or https:// URL",
        ),
        (
            json!({ "projectId": team.project, "url": "not a url" }),
            "BAD_USER_INPUT",
            "url must be an absolute",
        ),
        (
            json!({ "projectId": team.project, "url": "http://me:pw@127.0.0.1/x" }),
            "BAD_USER_INPUT",
            "user name or password",
        ),
        (
            json!({ "projectId": team.project, "url": receiver.url, "kinds": [] }),
            "BAD_USER_INPUT",
            "eventKinds must name at least one kind",
        ),
        (
            json!({ "projectId": "nope", "url": receiver.url }),
            "BAD_USER_INPUT",
            "projectId \"nope\" is not a valid id",
        ),
    ];
    for (vars, code, message) in refused {
        let reply = team.owner.send(CREATE, vars.clone()).await;
        assert_eq!(reply.code(), code, "{vars}");
        assert!(
            reply.message().contains(message),
            "{vars}: {}",
            reply.message()
        );
    }
    let reply = team
        .owner
        .send(
            CREATE,
            json!({ "projectId": team.project, "url": "gopher://x" }),
        )
        .await;
    assert_eq!(reply.errors[0]["extensions"]["argument"], "url");
    let unknown = json!({ "id": uuid::Uuid::now_v7().to_string(), "enabled": false });
    assert_eq!(team.owner.code(UPDATE, unknown).await, "NOT_FOUND");
    let too_many = team
        .owner
        .send(
            "query($id: ID!) { project(id: $id) { webhooks { deliveries(first: 51) { id } } } }",
            json!({ "id": team.project }),
        )
        .await;
    assert_eq!(too_many.code(), "BAD_USER_INPUT");
    assert!(too_many.message().contains("between 0 and 50"));
    let redeliver = "mutation($id: ID!) { redeliverWebhookDelivery(deliveryId: $id) { id } }";
    let unknown = json!({ "id": uuid::Uuid::now_v7().to_string() });
    assert_eq!(team.owner.code(redeliver, unknown).await, "NOT_FOUND");

    // At most 20 per project.
    for _ in 1..20 {
        register(&team, &receiver.url, Some(&["FAILED"])).await;
    }
    let reply = team
        .owner
        .send(
            CREATE,
            json!({ "projectId": team.project, "url": receiver.url }),
        )
        .await;
    assert_eq!(reply.code(), "CONFLICT");
    assert!(reply.message().contains("delete one first"));

    let delete = "mutation($id: ID!) { deleteWebhook(id: $id) }";
    let deleted = team.owner.ok(delete, json!({ "id": id })).await;
    assert_eq!(deleted["deleteWebhook"], true);
    assert_eq!(
        team.owner.code(delete, json!({ "id": id })).await,
        "NOT_FOUND"
    );
    let listed = team.owner.ok(WEBHOOKS, json!({ "id": team.project })).await;
    let listed = listed["project"]["webhooks"].as_array().expect("webhooks");
    assert_eq!(listed.len(), 19);
    assert!(listed.iter().all(|hook| hook["id"] != id.as_str()));
}

async fn a_logged_delivery_can_be_redelivered_and_a_rotated_secret_signs_it(backend: Backend) {
    let server = Server::start_with(backend, &[ALLOW_PRIVATE]).await;
    let team = Team::new(&server).await;
    let receiver = Receiver::start().await;
    let hook = register(&team, &receiver.url, None).await;
    let plan = team.plan("Redelivered", "READY").await;
    let expected = cursors(&events_of(&team.owner, &[&plan]).await);
    receiver.wait_for_accepted(&expected).await;
    let logged = read_hook(&team, &hook.id).await["deliveries"][0].clone();

    let rotated = team
        .owner
        .ok(
            "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret } }",
            json!({ "id": hook.id }),
        )
        .await;
    let new_secret = rotated["rotateWebhookSecret"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let redelivered = team
        .owner
        .ok(
            "mutation($id: ID!) { redeliverWebhookDelivery(deliveryId: $id) {
               id eventCursor attempt redelivery status error } }",
            json!({ "id": logged["id"] }),
        )
        .await;
    let redelivered = &redelivered["redeliverWebhookDelivery"];
    assert_eq!(redelivered["eventCursor"], logged["eventCursor"]);
    assert_eq!(redelivered["redelivery"], true);
    assert_eq!(redelivered["attempt"], 2);
    assert_eq!(redelivered["status"], 200);
    assert_eq!(redelivered["error"], Value::Null);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let again = &requests[1];
    assert_eq!(again.cursor(), expected[0]);
    assert_eq!(again.header("x-plangraph-delivery"), redelivered["id"]);
    assert!(again.signed_with(&new_secret), "signed with the new secret");
    assert!(!again.signed_with(&hook.secret), "not with the old one");
    let read = read_hook(&team, &hook.id).await;
    assert_eq!(read["deliveredCursor"], expected[0].to_string());
    assert_eq!(read["deliveries"][0]["id"], redelivered["id"]);
}

async fn private_targets_are_refused_when_saved_and_when_delivered(backend: Backend) {
    let strict = Server::start(backend).await;
    let team = Team::new(&strict).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://[::1]/x",
        "http://[::ffff:10.0.0.1]/x",
        "https://10.0.0.1/x",
        "http://192.168.1.20/x",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/x",
    ] {
        let reply = team
            .owner
            .send(CREATE, json!({ "projectId": team.project, "url": url }))
            .await;
        assert_eq!(reply.code(), "BAD_USER_INPUT", "{url}");
        assert!(
            reply.message().contains("--webhook-allow-private"),
            "{url}: {}",
            reply.message()
        );
    }
    // A public address is accepted (a literal: this machine has no DNS).
    let public = team
        .owner
        .ok(
            CREATE,
            json!({ "projectId": team.project, "url": "https://93.184.215.14/hooks" }),
        )
        .await;
    let public = public["createWebhook"]["webhook"]["id"].clone();
    team.owner
        .ok(
            "mutation($id: ID!) { deleteWebhook(id: $id) }",
            json!({ "id": public }),
        )
        .await;
    let database = strict.stop().await;

    // Saved while private targets were allowed, refused at delivery once
    // they are not: the address is checked again when connecting.
    let permissive = Server::launch(database, vec![ALLOW_PRIVATE.to_owned()]).await;
    let team = team.on(&permissive);
    let receiver = Receiver::start().await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let named = register(&team, &by_name, None).await;
    let literal = register(&team, &receiver.url, None).await;
    let database = permissive.stop().await;
    let strict = Server::launch(database, Vec::new()).await;
    let team = team.on(&strict);
    team.plan("Not for internal hosts", "READY").await;
    for hook in [&named, &literal] {
        let entry = eventually(Duration::from_secs(30), async || {
            let read = read_hook(&team, &hook.id).await;
            let entry = read["deliveries"][0].clone();
            (!entry.is_null()).then_some(entry)
        })
        .await;
        assert_eq!(entry["status"], Value::Null);
        let error = entry["error"].as_str().expect("error");
        assert!(error.contains("loopback, private or link-local"), "{error}");
    }
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the private address"
    );
    let metrics = strict.metrics().await;
    assert!(metrics.get("plangraph_webhook_deliveries_total{result=\"failed_blocked\"}") >= 2.0);
}

/// The Python example in docs/operations.md, run against a delivery the server signed.
async fn the_readme_verification_example_accepts_a_real_delivery(backend: Backend) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
            .expect("docs/operations.md");
    let example = readme
        .split("<!-- webhook-verification:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- webhook-verification:end -->").next())
        .expect("docs/operations.md marks its verification example");
    let code = example
        .split("```python")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a python block");
    let server = Server::start_with(backend, &[ALLOW_PRIVATE]).await;
    let team = Team::new(&server).await;
    let receiver = Receiver::start().await;
    let hook = register(&team, &receiver.url, None).await;
    let plan = team.plan("Checked in Python", "READY").await;
    receiver
        .wait_for_accepted(&cursors(&events_of(&team.owner, &[&plan]).await))
        .await;
    let request = &receiver.requests()[0];

    let directory = tempfile::tempdir().expect("temp dir");
    let body = directory.path().join("body.json");
    std::fs::write(&body, &request.body).expect("write body");
    let script = format!(
        "{code}\nimport sys\nbody = open(sys.argv[3], 'rb').read()\nprint(verify(sys.argv[1], sys.argv[2], body))\nprint(verify(sys.argv[1], sys.argv[2], body + b' '))\n"
    );
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(&hook.secret)
        .arg(request.header("x-plangraph-signature"))
        .arg(&body)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "True\nFalse\n");
}

/// Deliveries one project's webhooks may have in flight at once on one
/// instance, by default (`--webhook-project-concurrency`).
const PROJECT_SLOTS: usize = 4;

/// Another tenant: a project of the team's outsider, with `hooks` webhooks
/// all calling `url`, and a plan created in it, whose CREATED event they
/// all have to deliver.
async fn other_project_sending_to(team: &Team, url: &str, hooks: usize) {
    let project = team.outsider.create_project("Another tenant").await;
    let feature = team
        .outsider
        .create_feature(&project, "Hooks", "# Hooks")
        .await;
    for _ in 0..hooks {
        register_in(&team.outsider, &project, url, None).await;
    }
    let vars = json!({ "featureId": feature, "title": "Sent to a dead receiver",
                       "spec": "# s", "status": "DRAFT" });
    team.outsider.ok(CREATE_PLAN, vars).await;
}

async fn a_dead_receiver_of_one_project_never_delays_another_projects_deliveries(backend: Backend) {
    // Attempts at the dead receiver would hang for two minutes: whatever
    // waits behind them would not arrive while they hang.
    let server = Server::start_with(backend, &[ALLOW_PRIVATE, "--webhook-timeout", "120s"]).await;
    let team = Team::new(&server).await;
    let dead = Receiver::start().await;
    dead.never_answer();
    other_project_sending_to(&team, &dead.url, 8).await;
    eventually(Duration::from_secs(30), async || {
        (dead.open() == PROJECT_SLOTS).then_some(())
    })
    .await;

    let alive = Receiver::start().await;
    register(&team, &alive.url, None).await;
    let plan = team.plan("Delivered meanwhile", "DRAFT").await;
    alive
        .wait_for_accepted(&cursors(&events_of(&team.owner, &[&plan]).await))
        .await;

    assert_eq!(
        dead.open(),
        PROJECT_SLOTS,
        "the other project's deliveries still hang on its receiver"
    );
    assert_eq!(
        dead.most_open(),
        PROJECT_SLOTS,
        "never more at once than a project's share"
    );
    assert_eq!(
        dead.requests().len(),
        PROJECT_SLOTS,
        "its other webhooks wait for its own slots"
    );
    let typename = team.viewer.ok("{ __typename }", json!({})).await;
    assert_eq!(typename["__typename"], "Query");
    let project = team
        .viewer
        .ok(
            "query($id: ID!) { project(id: $id) { id } }",
            json!({ "id": team.project }),
        )
        .await;
    assert_eq!(project["project"]["id"], team.project.as_str());
}

async fn webhooks_retrying_a_dead_receiver_leave_slots_to_working_ones(backend: Backend) {
    // Two slots, so failing webhooks may hold one; hung attempts outlast
    // the test.
    let server = Server::start_with(
        backend,
        &[
            ALLOW_PRIVATE,
            "--webhook-concurrency",
            "2",
            "--webhook-timeout",
            "120s",
            "--webhook-retry-base",
            "50ms",
        ],
    )
    .await;
    let team = Team::new(&server).await;
    let dying = Receiver::start().await;
    dying.answer_next(&[503, 503]);
    dying.never_answer();
    other_project_sending_to(&team, &dying.url, 2).await;
    // Both webhooks failed once; of their retries, one hangs, the other
    // waits for the failing webhooks' slot.
    eventually(Duration::from_secs(30), async || {
        (dying.requests().len() == 3 && dying.open() == 1).then_some(())
    })
    .await;

    let alive = Receiver::start().await;
    register(&team, &alive.url, None).await;
    let plan = team.plan("Delivered beside the retries", "DRAFT").await;
    alive
        .wait_for_accepted(&cursors(&events_of(&team.owner, &[&plan]).await))
        .await;

    assert_eq!(dying.open(), 1, "the retry still hangs");
    assert_eq!(
        dying.requests().len(),
        3,
        "the other retry still waits for the failing webhooks' slot"
    );
    let answers: Vec<Option<u16>> = dying.requests().iter().map(|r| r.answered).collect();
    assert_eq!(answers, [Some(503), Some(503), None]);
}

/// Every proxy variable the HTTP clients of this world read, naming `proxy`.
fn proxy_environment(proxy: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]
        .iter()
        .flat_map(|name| [name.to_string(), name.to_lowercase()])
        .map(|name| (name, proxy.to_owned()))
        .collect();
    // Nothing exempt, loopback included.
    env.extend(["NO_PROXY", "no_proxy"].map(|name| (name.to_owned(), String::new())));
    env
}

async fn deliveries_ignore_a_proxy_named_by_the_environment(backend: Backend) {
    let proxy = Receiver::start().await;
    let proxy_url = proxy.url.trim_end_matches("/hooks").to_owned();
    let database = Database::create(backend).await;
    let server = Server::launch_with_env(
        database,
        vec![ALLOW_PRIVATE.to_owned()],
        proxy_environment(&proxy_url),
    )
    .await;
    let team = Team::new(&server).await;
    let receiver = Receiver::start().await;
    let hook = register(&team, &receiver.url, None).await;

    let plan = team.plan("Sent directly", "DRAFT").await;
    receiver
        .wait_for_accepted(&cursors(&events_of(&team.owner, &[&plan]).await))
        .await;

    assert!(
        proxy.requests().is_empty(),
        "the proxy would resolve names past the public-only check: {:?}",
        proxy.requests()
    );
    assert!(receiver.requests()[0].signed_with(&hook.secret));
}

async fn the_webhook_proxy_carries_deliveries_and_resolves_their_names(backend: Backend) {
    let proxy = Receiver::start().await;
    let proxy_url = proxy.url.trim_end_matches("/hooks").to_owned();
    // No --webhook-allow-private: the proxy, on loopback, is the operator's.
    let server = Server::start_with(backend, &["--webhook-proxy", &proxy_url]).await;
    let team = Team::new(&server).await;
    // A name this machine cannot resolve: behind a proxy, names are the
    // proxy's to resolve.
    let target = "http://receiver.invalid/hooks";
    let hook = register(&team, target, None).await;

    let plan = team.plan("Sent through the proxy", "DRAFT").await;
    let expected = cursors(&events_of(&team.owner, &[&plan]).await);
    proxy.wait_for_accepted(&expected).await;

    let request = &proxy.requests()[0];
    assert_eq!(
        request.uri.to_string(),
        target,
        "the proxy is asked for the target"
    );
    assert!(request.signed_with(&hook.secret));
    // An address written in the URL is still checked here.
    let reply = team
        .owner
        .send(
            CREATE,
            json!({ "projectId": team.project, "url": "http://10.0.0.1/hooks" }),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT");
    assert!(
        reply.message().contains("--webhook-allow-private"),
        "{}",
        reply.message()
    );
}
