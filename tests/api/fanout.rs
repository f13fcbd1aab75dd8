//! Grouped `planEvents` subscriptions: identical subscriptions share one
//! resolution per event, yet each member keeps its own access, its own pace
//! and its own resume point.

use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    identical_subscriptions_get_the_same_frames_from_one_resolution,
    access_loss_ends_only_the_members_that_lost_it,
    a_slow_member_does_not_hold_up_its_group,
);

/// The payload of the next `next` message, or panics.
async fn next_data(subscriber: &mut Subscriber) -> Value {
    match subscriber.next_delivery(Duration::from_secs(15)).await {
        Some((_, Delivery::Data(data))) => data,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Three sockets of one key subscribe with the same document and variables,
/// one of them resuming from a cursor: every member gets the same frames
/// (the resuming one after its replay, without a duplicate at the seam), and
/// each live event is resolved once for all of them.
async fn identical_subscriptions_get_the_same_frames_from_one_resolution(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let plan = team.plan("watched", "DRAFT").await;
    let variables = json!({ "projectId": team.project });

    let mut first = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    first.subscribe(PLAN_EVENTS, variables.clone()).await;
    let mut second = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    second.subscribe(PLAN_EVENTS, variables.clone()).await;
    server.wait_for_subscriptions(2).await;

    team.owner
        .ok(SET_STATUS, json!({ "planId": plan, "status": "READY" }))
        .await;
    let ready = next_data(&mut first).await;
    assert_eq!(next_data(&mut second).await, ready, "the same frame");
    assert_eq!(ready["planEvents"]["toStatus"], "READY");
    // Counted from here: on PostgreSQL the plan's creation may reach the
    // group after it formed (notifications are asynchronous) and be resolved
    // once for nobody; events reach a group in order, so READY came after it.
    let resolved_before = server
        .metrics()
        .await
        .get("plangraph_subscription_group_results_total");

    // A third member joins from the start of the log: it replays the
    // project's events up to the newest, then goes on live with the others.
    let mut resuming = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    let mut resume_variables = variables.clone();
    resume_variables["after"] = json!("0");
    resuming.subscribe(PLAN_EVENTS, resume_variables).await;
    let mut replayed = Vec::new();
    while replayed.last() != Some(&ready["planEvents"]["cursor"]) {
        replayed.push(next_data(&mut resuming).await["planEvents"]["cursor"].clone());
    }
    assert_eq!(replayed.len(), 2, "the plan's creation, then READY");
    server.wait_for_subscriptions(3).await;

    team.owner
        .ok(SET_STATUS, json!({ "planId": plan, "status": "DRAFT" }))
        .await;
    let draft = next_data(&mut first).await;
    assert_eq!(draft["planEvents"]["toStatus"], "DRAFT");
    assert_eq!(next_data(&mut second).await, draft);
    assert_eq!(
        next_data(&mut resuming).await,
        draft,
        "the resuming member continues where it asked, with nothing twice"
    );

    let metrics = server.metrics().await;
    assert_eq!(
        metrics.get("plangraph_subscription_group_results_total") - resolved_before,
        1.0,
        "the live event was resolved once for the three members"
    );
    assert_eq!(metrics.get("plangraph_subscription_groups"), 1.0);
}

/// Access is per key: a removed member's filtered subscription ends with
/// FORBIDDEN and a revoked key's with UNAUTHENTICATED (and its socket closes),
/// while subscribers with the same document on other keys carry on.
async fn access_loss_ends_only_the_members_that_lost_it(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let variables = json!({ "projectId": team.project });
    let spare = team
        .owner
        .ok(
            "mutation { createApiKey(label: \"spare\") { secret apiKey { id } } }",
            json!({}),
        )
        .await;
    let spare_key = spare["createApiKey"]["secret"].as_str().expect("secret");
    let spare_id = spare["createApiKey"]["apiKey"]["id"].clone();

    let mut owner = Subscriber::connect(&server.base_url, team.owner.key()).await;
    owner.subscribe(PLAN_EVENTS, variables.clone()).await;
    let mut owner_spare = Subscriber::connect(&server.base_url, spare_key).await;
    let spare_subscription = owner_spare.subscribe(PLAN_EVENTS, variables.clone()).await;
    let mut viewer = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    let viewer_subscription = viewer.subscribe(PLAN_EVENTS, variables.clone()).await;
    let mut worker = Subscriber::connect(&server.base_url, team.worker.key()).await;
    worker.subscribe(PLAN_EVENTS, variables.clone()).await;
    server.wait_for_subscriptions(4).await;

    let viewer_id = team.viewer.user_id().await;
    team.owner
        .ok(
            REMOVE_MEMBER,
            json!({ "projectId": team.project, "userId": viewer_id }),
        )
        .await;
    match viewer.next_delivery(Duration::from_secs(15)).await {
        Some((id, Delivery::Errors(errors))) => {
            assert_eq!(id, viewer_subscription);
            assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN");
        }
        other => panic!("expected FORBIDDEN, got {other:?}"),
    }

    team.owner
        .ok(
            "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({ "id": spare_id }),
        )
        .await;
    match owner_spare.next_delivery(Duration::from_secs(15)).await {
        Some((id, Delivery::Errors(errors))) => {
            assert_eq!(id, spare_subscription);
            assert_eq!(errors[0]["extensions"]["code"], "UNAUTHENTICATED");
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
    assert_eq!(
        owner_spare.close_code(Duration::from_secs(15)).await,
        Some(4403)
    );

    let plan = team.plan("after both", "READY").await;
    assert_eq!(owner.next_event().await["plan"]["id"], plan.as_str());
    assert_eq!(worker.next_event().await["plan"]["id"], plan.as_str());
}

/// Two members of one group; one stops reading. The other gets every event
/// at once; the stalled one is told to resume from its own position, and
/// resuming loses nothing and repeats nothing.
async fn a_slow_member_does_not_hold_up_its_group(backend: Backend) {
    let server = Server::start_with(backend, &["--subscriber-buffer", "8"]).await;
    let team = Team::new(&server).await;
    let heavy = "subscription($projectId: ID, $after: String) { planEvents(projectId: $projectId, after: $after) {
        cursor kind plan { id spec } } }";
    let variables = json!({ "projectId": team.project });
    let mut stalled = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    stalled.subscribe(heavy, variables.clone()).await;
    let mut reader = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    reader.subscribe(heavy, variables.clone()).await;
    server.wait_for_subscriptions(2).await;

    let spec = "x".repeat(512 * 1024);
    let mut created = Vec::new();
    for index in 0..40 {
        let plan = team
            .owner
            .ok(
                CREATE_PLAN,
                json!({ "featureId": team.feature, "title": format!("p{index}"), "spec": spec }),
            )
            .await["createPlan"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        assert_eq!(
            next_data(&mut reader).await["planEvents"]["plan"]["id"],
            plan.as_str()
        );
        created.push(plan);
    }
    assert_eq!(
        server
            .metrics()
            .await
            .get("plangraph_subscription_group_results_total"),
        40.0,
        "one resolution per event for both members"
    );

    let mut seen = Vec::new();
    let resume_from = loop {
        match stalled.next_delivery(Duration::from_secs(30)).await {
            Some((_, Delivery::Data(data))) => seen.push(
                data["planEvents"]["plan"]["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            ),
            Some((_, Delivery::Errors(errors))) => {
                assert_eq!(errors[0]["extensions"]["code"], "RESUME_REQUIRED");
                assert_eq!(errors[0]["path"], json!(["planEvents"]));
                break errors[0]["extensions"]["lastCursor"].clone();
            }
            other => panic!("expected events then RESUME_REQUIRED, got {other:?}"),
        }
    };
    assert!(seen.len() < created.len(), "the stalled member fell behind");
    let mut resume_variables = variables.clone();
    resume_variables["after"] = resume_from;
    stalled.subscribe(heavy, resume_variables).await;
    while seen.len() < created.len() {
        match stalled.next_delivery(Duration::from_secs(30)).await {
            Some((_, Delivery::Data(data))) => seen.push(
                data["planEvents"]["plan"]["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            ),
            Some((_, Delivery::Complete)) => continue,
            other => panic!("expected the rest of the events, got {other:?}"),
        }
    }
    assert_eq!(seen, created, "every event exactly once, in order");
}
