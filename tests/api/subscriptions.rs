//! Live boards: `planEvents` over a real WebSocket against the real server.

use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    every_transition_is_delivered_in_order,
    filters_by_project_feature_and_plan,
    members_see_only_their_projects,
    bad_keys_are_refused_with_protocol_close_codes,
    resume_after_a_dropped_connection_has_no_gap_and_no_duplicate,
    resume_after_a_server_restart,
    sweeper_stalls_are_delivered,
    a_stalled_client_delays_nobody_and_can_resume,
    the_legacy_protocol_works,
    shutdown_completes_subscriptions,
    a_change_on_one_instance_reaches_subscribers_on_another,
    live_subscriptions_follow_membership_and_key_changes,
);

fn summary(event: &Value) -> (String, Value, String, Value) {
    (
        event["kind"].as_str().expect("kind").to_owned(),
        event["fromStatus"].clone(),
        event["toStatus"].as_str().expect("to").to_owned(),
        event["actor"]["email"].clone(),
    )
}

async fn every_transition_is_delivered_in_order(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let mut board = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    board
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(1).await;

    let plan = team.plan("watched", "DRAFT").await;
    let vars = |extra: Value| {
        let mut vars = json!({ "planId": plan });
        vars.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        vars
    };
    team.owner
        .ok(SET_STATUS, vars(json!({ "status": "READY" })))
        .await;
    team.worker.ok(CLAIM, vars(json!({}))).await;
    team.worker
        .ok(UPDATE_PLAN, vars(json!({ "spec": "progress" })))
        .await;
    team.worker
        .ok(
            SUBMIT,
            vars(json!({ "artifacts": "PR", "status": "REVIEW" })),
        )
        .await;
    team.owner
        .ok(SET_STATUS, vars(json!({ "status": "IN_PROGRESS" })))
        .await;
    team.worker.ok(RELEASE, vars(json!({}))).await;
    team.worker.ok(CLAIM, vars(json!({}))).await;
    team.worker
        .ok(
            SUBMIT,
            vars(json!({ "artifacts": "PR", "status": "COMPLETED" })),
        )
        .await;
    let failing = team.plan_in("to fail", "CLAIMED").await;
    team.owner
        .ok(SET_STATUS, json!({ "planId": failing, "status": "FAILED" }))
        .await;

    let owner = json!("owner@example.com");
    let worker = json!("worker@example.com");
    let expected = vec![
        (
            "CREATED".to_owned(),
            json!(null),
            "DRAFT".to_owned(),
            owner.clone(),
        ),
        (
            "STATUS_CHANGED".to_owned(),
            json!("DRAFT"),
            "READY".to_owned(),
            owner.clone(),
        ),
        (
            "CLAIMED".to_owned(),
            json!("READY"),
            "CLAIMED".to_owned(),
            worker.clone(),
        ),
        (
            "UPDATED".to_owned(),
            json!("CLAIMED"),
            "IN_PROGRESS".to_owned(),
            worker.clone(),
        ),
        (
            "SUBMITTED".to_owned(),
            json!("IN_PROGRESS"),
            "REVIEW".to_owned(),
            worker.clone(),
        ),
        (
            "STATUS_CHANGED".to_owned(),
            json!("REVIEW"),
            "IN_PROGRESS".to_owned(),
            owner.clone(),
        ),
        (
            "RELEASED".to_owned(),
            json!("IN_PROGRESS"),
            "READY".to_owned(),
            worker.clone(),
        ),
        (
            "CLAIMED".to_owned(),
            json!("READY"),
            "CLAIMED".to_owned(),
            worker.clone(),
        ),
        (
            "COMPLETED".to_owned(),
            json!("CLAIMED"),
            "COMPLETED".to_owned(),
            worker.clone(),
        ),
        (
            "CREATED".to_owned(),
            json!(null),
            "READY".to_owned(),
            owner.clone(),
        ),
        (
            "CLAIMED".to_owned(),
            json!("READY"),
            "CLAIMED".to_owned(),
            worker.clone(),
        ),
        (
            "FAILED".to_owned(),
            json!("CLAIMED"),
            "FAILED".to_owned(),
            owner.clone(),
        ),
    ];
    let mut received = Vec::new();
    let mut cursors = Vec::new();
    for _ in 0..expected.len() {
        let event = board.next_event().await;
        assert!(
            event["plan"]["id"].is_string(),
            "each event carries its plan"
        );
        cursors.push(
            event["cursor"]
                .as_str()
                .expect("cursor")
                .parse::<i64>()
                .expect("numeric cursor"),
        );
        received.push(summary(&event));
    }
    assert_eq!(received, expected);
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "cursors increase: {cursors:?}"
    );
    board.expect_nothing(Duration::from_millis(500)).await;
}

async fn filters_by_project_feature_and_plan(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let other_feature = team
        .owner
        .create_feature(&team.project, "Other", "# o")
        .await;
    let other_project = team.owner.create_project("Elsewhere").await;
    let elsewhere_feature = team
        .owner
        .create_feature(&other_project, "Far", "# f")
        .await;
    let target = team.plan("target", "READY").await;

    let mut by_project = Subscriber::connect(&server.base_url, team.owner.key()).await;
    by_project
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    let mut by_feature = Subscriber::connect(&server.base_url, team.owner.key()).await;
    by_feature
        .subscribe(PLAN_EVENTS, json!({ "featureId": other_feature }))
        .await;
    let mut by_plan = Subscriber::connect(&server.base_url, team.owner.key()).await;
    by_plan
        .subscribe(PLAN_EVENTS, json!({ "planId": target }))
        .await;
    let mut everything = Subscriber::connect(&server.base_url, team.owner.key()).await;
    everything.subscribe(PLAN_EVENTS, json!({})).await;
    server.wait_for_subscriptions(4).await;

    let in_other_feature = team
        .plan_of(&other_feature, "other feature plan", "READY")
        .await;
    let elsewhere = team
        .plan_of(&elsewhere_feature, "elsewhere plan", "READY")
        .await;
    team.owner.ok(CLAIM, json!({ "planId": target })).await;

    let plan_of = |event: Value| event["plan"]["id"].as_str().expect("id").to_owned();
    assert_eq!(plan_of(by_project.next_event().await), in_other_feature);
    assert_eq!(plan_of(by_project.next_event().await), target);
    assert_eq!(plan_of(by_feature.next_event().await), in_other_feature);
    assert_eq!(plan_of(by_plan.next_event().await), target);
    assert_eq!(plan_of(everything.next_event().await), in_other_feature);
    assert_eq!(plan_of(everything.next_event().await), elsewhere);
    assert_eq!(plan_of(everything.next_event().await), target);
    for subscriber in [
        &mut by_project,
        &mut by_feature,
        &mut by_plan,
        &mut everything,
    ] {
        subscriber.expect_nothing(Duration::from_millis(300)).await;
    }
}

async fn members_see_only_their_projects(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let own_feature = team.outsiders_own_feature().await;

    let mut outsider = Subscriber::connect(&server.base_url, team.outsider.key()).await;
    let forbidden = outsider
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    match outsider.next_delivery(Duration::from_secs(10)).await {
        Some((id, Delivery::Errors(errors))) => {
            assert_eq!(id, forbidden);
            assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN");
        }
        other => panic!("expected FORBIDDEN, got {other:?}"),
    }
    outsider.subscribe(PLAN_EVENTS, json!({})).await;
    server.wait_for_subscriptions(1).await;
    team.plan("secret", "READY").await;
    let mine = team.outsider.create_plan(&own_feature, "visible").await;
    let event = loop {
        match outsider.next_delivery(Duration::from_secs(10)).await {
            Some((_, Delivery::Complete)) => continue,
            Some((_, Delivery::Data(data))) => break data["planEvents"].clone(),
            other => panic!("expected an event, got {other:?}"),
        }
    };
    assert_eq!(
        event["plan"]["id"],
        mine.as_str(),
        "the foreign project's event never arrived"
    );
    outsider.expect_nothing(Duration::from_millis(300)).await;
}

async fn bad_keys_are_refused_with_protocol_close_codes(backend: Backend) {
    let server = Server::start(backend).await;
    let bad =
        json!({ "Authorization": "Bearer pg_00000000_0000000000000000000000000000000000000000" });
    let refused = Subscriber::connect_with(&server.base_url, TRANSPORT_WS, bad)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.close_code, Some(4403));
    let missing = Subscriber::connect_with(&server.base_url, TRANSPORT_WS, json!({}))
        .await
        .err()
        .expect("refused");
    assert_eq!(missing.close_code, Some(4403));

    let early = json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { planEvents { cursor } }" } });
    assert_eq!(
        close_code_after(&server.base_url, Some(early)).await,
        Some(4401),
        "subscribe before init"
    );

    let user = server.user("revoked@example.com").await;
    let keys = user.ok("{ apiKeys { id } }", json!({})).await;
    user.ok(
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": keys["apiKeys"][0]["id"] }),
    )
    .await;
    let revoked = json!({ "Authorization": format!("Bearer {}", user.key()) });
    let refused = Subscriber::connect_with(&server.base_url, TRANSPORT_WS, revoked)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.close_code, Some(4403));
}

async fn resume_after_a_dropped_connection_has_no_gap_and_no_duplicate(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let mut board = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    board
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(1).await;
    let plan = team.plan("resumable", "READY").await;
    team.worker.ok(CLAIM, json!({ "planId": plan })).await;
    board.next_event().await;
    let cursor = board.next_event().await["cursor"].clone();
    board.disconnect().await;

    // Missed while away.
    team.worker
        .ok(UPDATE_PLAN, json!({ "planId": plan, "spec": "one" }))
        .await;
    team.worker
        .ok(UPDATE_PLAN, json!({ "planId": plan, "spec": "two" }))
        .await;
    team.worker
        .ok(
            SUBMIT,
            json!({ "planId": plan, "artifacts": "PR", "status": "REVIEW" }),
        )
        .await;

    let mut board = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    board
        .subscribe(
            PLAN_EVENTS,
            json!({ "projectId": team.project, "after": cursor }),
        )
        .await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(
            board.next_event().await["kind"]
                .as_str()
                .expect("kind")
                .to_owned(),
        );
    }
    assert_eq!(
        replayed,
        ["UPDATED", "UPDATED", "SUBMITTED"],
        "exactly the missed events, in order"
    );
    // Then live, without a duplicate at the seam.
    team.owner
        .ok(SET_STATUS, json!({ "planId": plan, "status": "COMPLETED" }))
        .await;
    assert_eq!(board.next_event().await["kind"], "COMPLETED");
    board.expect_nothing(Duration::from_millis(500)).await;
}

async fn resume_after_a_server_restart(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let mut board = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    board
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(1).await;
    let plan = team.plan("survivor", "READY").await;
    let cursor = board.next_event().await["cursor"].clone();

    let server = server.restart().await;
    let owner = server.as_client(&team.owner);
    let worker = server.as_client(&team.worker);
    worker.ok(CLAIM, json!({ "planId": plan })).await;
    owner.ok(RELEASE, json!({ "planId": plan })).await;

    let mut board = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    board
        .subscribe(PLAN_EVENTS, json!({ "after": cursor }))
        .await;
    assert_eq!(board.next_event().await["kind"], "CLAIMED");
    assert_eq!(board.next_event().await["kind"], "RELEASED");
    board.expect_nothing(Duration::from_millis(300)).await;
}

async fn sweeper_stalls_are_delivered(backend: Backend) {
    let server =
        Server::start_with(backend, &["--stale-after", "1s", "--sweep-every", "200ms"]).await;
    let team = Team::new(&server).await;
    let plan = team.plan("forgotten", "READY").await;
    let created = team.owner.latest_cursor(&plan).await;
    let mut board = Subscriber::connect(&server.base_url, team.owner.key()).await;
    board
        .subscribe(PLAN_EVENTS, json!({ "planId": plan, "after": created }))
        .await;
    team.worker.ok(CLAIM, json!({ "planId": plan })).await;
    assert_eq!(board.next_event().await["kind"], "CLAIMED");
    let stalled = board.next_event().await;
    assert_eq!(stalled["kind"], "STALLED");
    assert_eq!(stalled["actor"], json!(null), "the system did it");
    assert_eq!(stalled["plan"]["claimedBy"]["email"], "worker@example.com");
}

/// One client stops reading. Another still gets every event at once; the
/// stalled one is eventually told to resume, and resuming loses nothing.
async fn a_stalled_client_delays_nobody_and_can_resume(backend: Backend) {
    let server = Server::start_with(backend, &["--subscriber-buffer", "8"]).await;
    let team = Team::new(&server).await;
    let heavy = "subscription($projectId: ID, $after: String) { planEvents(projectId: $projectId, after: $after) {
        cursor kind plan { id spec } } }";
    let mut stalled = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    stalled
        .subscribe(heavy, json!({ "projectId": team.project }))
        .await;
    let mut reader = Subscriber::connect(&server.base_url, team.owner.key()).await;
    reader
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(2).await;

    // Big specs so the stalled socket's buffers fill up quickly.
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
        // The reading client keeps up while the other one reads nothing.
        assert_eq!(reader.next_event().await["plan"]["id"], plan.as_str());
        created.push(plan);
    }

    // Now the stalled client reads: a prefix of events, then RESUME_REQUIRED.
    let mut seen = Vec::new();
    let resume_from = loop {
        match stalled.next_delivery(Duration::from_secs(30)).await {
            Some((_, Delivery::Data(data))) => {
                seen.push(
                    data["planEvents"]["plan"]["id"]
                        .as_str()
                        .expect("id")
                        .to_owned(),
                );
            }
            Some((_, Delivery::Errors(errors))) => {
                assert_eq!(errors[0]["extensions"]["code"], "RESUME_REQUIRED");
                break errors[0]["extensions"]["lastCursor"].clone();
            }
            other => panic!("expected events then RESUME_REQUIRED, got {other:?}"),
        }
    };
    assert!(seen.len() < created.len(), "the stalled client fell behind");
    stalled
        .subscribe(
            heavy,
            json!({ "projectId": team.project, "after": resume_from }),
        )
        .await;
    while seen.len() < created.len() {
        match stalled.next_delivery(Duration::from_secs(30)).await {
            Some((_, Delivery::Data(data))) => {
                seen.push(
                    data["planEvents"]["plan"]["id"]
                        .as_str()
                        .expect("id")
                        .to_owned(),
                );
            }
            Some((_, Delivery::Complete)) => continue,
            other => panic!("expected the rest of the events, got {other:?}"),
        }
    }
    assert_eq!(seen, created, "every event exactly once, in order");
}

async fn the_legacy_protocol_works(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let auth = json!({ "Authorization": format!("Bearer {}", team.owner.key()) });
    let mut board = Subscriber::connect_with(&server.base_url, LEGACY_WS, auth)
        .await
        .expect("accepted");
    board
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(1).await;
    let plan = team.plan("legacy", "READY").await;
    let event = board.next_event().await;
    assert_eq!(event["kind"], "CREATED");
    assert_eq!(event["plan"]["id"], plan.as_str());

    let bad = json!({ "Authorization": "Bearer nope" });
    let refused = Subscriber::connect_with(&server.base_url, LEGACY_WS, bad)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.messages[0]["type"], "connection_error");
}

async fn shutdown_completes_subscriptions(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let mut board = Subscriber::connect(&server.base_url, team.owner.key()).await;
    let id = board
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(1).await;
    let stopping = tokio::spawn(server.stop());
    match board.next_delivery(Duration::from_secs(10)).await {
        Some((completed, Delivery::Complete)) => assert_eq!(completed, id),
        other => panic!("expected complete, got {other:?}"),
    }
    assert_eq!(board.close_code(Duration::from_secs(10)).await, Some(1001));
    stopping.await.expect("server stopped cleanly");
}

/// On PostgreSQL two instances share the database; on SQLite (one instance)
/// this is the same check on a single server.
async fn a_change_on_one_instance_reaches_subscribers_on_another(backend: Backend) {
    let servers = Server::instances(backend, &[]).await;
    let (first, last) = (&servers[0], &servers[servers.len() - 1]);
    let team = Team::new(first).await;
    let mut board = Subscriber::connect(&last.base_url, team.viewer.key()).await;
    board
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    last.wait_for_subscriptions(1).await;
    let plan = team.plan("crossing", "READY").await;
    last.as_client(&team.worker)
        .ok(CLAIM, json!({ "planId": plan }))
        .await;
    let created = board.next_event().await;
    assert_eq!(
        (created["kind"].as_str(), created["plan"]["id"].as_str()),
        (Some("CREATED"), Some(plan.as_str()))
    );
    assert_eq!(
        board.next_event().await["kind"],
        "CLAIMED",
        "local changes arrive too, in order"
    );
}

/// The next delivery other than a `complete`, which must be the error ending
/// subscription `id`; returns its code.
async fn ending_error(subscriber: &mut Subscriber, id: &str) -> String {
    loop {
        match subscriber.next_delivery(Duration::from_secs(15)).await {
            Some((_, Delivery::Complete)) => continue,
            Some((delivered, Delivery::Errors(errors))) if delivered == id => {
                return errors[0]["extensions"]["code"]
                    .as_str()
                    .expect("code")
                    .to_owned();
            }
            other => panic!("expected an error for subscription {id}, got {other:?}"),
        }
    }
}

/// Access changes made on one instance reach live subscriptions on another
/// (on SQLite: the same server) before any event committed after them:
/// joining a project shows its events without resubscribing, leaving it stops
/// them (and ends a subscription filtered to it), revoking the key ends them all.
async fn live_subscriptions_follow_membership_and_key_changes(backend: Backend) {
    let servers = Server::instances(backend, &[]).await;
    let (first, last) = (&servers[0], &servers[servers.len() - 1]);
    let team = Team::new(first).await;
    let own_feature = team.outsiders_own_feature().await;
    let outsider_id = team.outsider.user_id().await;
    let mut everything = Subscriber::connect(&last.base_url, team.outsider.key()).await;
    let everything_id = everything.subscribe(PLAN_EVENTS, json!({})).await;
    last.wait_for_subscriptions(1).await;

    team.owner
        .ok(
            ADD_MEMBER,
            json!({ "projectId": team.project, "email": "outsider@example.com", "role": "VIEWER" }),
        )
        .await;
    let joined = team.plan("after joining", "READY").await;
    assert_eq!(
        everything.next_event().await["plan"]["id"],
        joined.as_str(),
        "a project joined after subscribing is followed"
    );

    let mut filtered = Subscriber::connect(&last.base_url, team.outsider.key()).await;
    let filtered_id = filtered
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    last.wait_for_subscriptions(2).await;
    team.owner
        .ok(
            REMOVE_MEMBER,
            json!({ "projectId": team.project, "userId": outsider_id }),
        )
        .await;
    assert_eq!(ending_error(&mut filtered, &filtered_id).await, "FORBIDDEN");
    team.plan("after leaving", "READY").await;
    let own = team
        .outsider
        .create_plan(&own_feature, "still visible")
        .await;
    assert_eq!(
        everything.next_event().await["plan"]["id"],
        own.as_str(),
        "no event of a project left behind is delivered"
    );

    let keys = team.outsider.ok("{ apiKeys { id } }", json!({})).await;
    team.outsider
        .ok(
            "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({ "id": keys["apiKeys"][0]["id"] }),
        )
        .await;
    assert_eq!(
        ending_error(&mut everything, &everything_id).await,
        "UNAUTHENTICATED"
    );
    assert_eq!(
        everything.close_code(Duration::from_secs(15)).await,
        Some(4403),
        "a connection opened before the revocation is closed"
    );
}
