//! The WebSocket protocols themselves, with a real client: what the server
//! does with messages that break them, and with operation ids.

use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    a_second_subscribe_with_an_id_in_use_closes_the_socket_with_4409,
    an_id_can_be_used_again_once_its_operation_has_completed,
    a_legacy_start_with_an_id_in_use_replaces_its_operation,
);

/// A `planEvents` document that is not grouped: a literal `after` makes it
/// differ per subscriber, so async-graphql runs it on its own.
const UNGROUPED_PLAN_EVENTS: &str = r#"subscription { planEvents(after: "0") { cursor kind } }"#;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_break_the_protocol_close_the_socket_with_4400_and_the_reason() {
    let server = Server::start(Backend::Sqlite).await;
    let key = server.bootstrap_key.clone().expect("admin key");
    let frames = [
        ("not json", "Invalid message received"),
        (r#"{"type":"subscribe"}"#, "'id'"),
        (
            r#"{"type":"subscribe","id":"x","payload":{"query":5}}"#,
            "'query'",
        ),
        (r#"{"type":"subscribe","id":"x"}"#, "'payload'"),
        (r#"{"type":"complete"}"#, "'id'"),
        (r#"{"id":"x"}"#, "'type'"),
        (r#"{"type":"hello"}"#, "\"hello\""),
    ];
    for (frame, named) in frames {
        let mut socket = Subscriber::connect(&server.base_url, &key).await;
        socket.send_text(frame).await;
        let (code, reason) = socket
            .close_frame(WAIT)
            .await
            .unwrap_or_else(|| panic!("{frame}: the socket ended without a close frame"));
        assert_eq!(code, 4400, "{frame}: {reason}");
        assert!(
            reason.contains(named),
            "{frame}: the reason {reason:?} names {named}"
        );
    }
}

async fn a_second_subscribe_with_an_id_in_use_closes_the_socket_with_4409(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let grouped = (PLAN_EVENTS, json!({ "projectId": team.project }));
    let ungrouped = (UNGROUPED_PLAN_EVENTS, json!({}));
    for (first, second) in [
        (&grouped, &grouped),
        (&ungrouped, &ungrouped),
        (&grouped, &ungrouped),
        (&ungrouped, &grouped),
    ] {
        let mut socket = Subscriber::connect(&server.base_url, team.viewer.key()).await;
        socket.subscribe_as("dup", first.0, first.1.clone()).await;
        socket.subscribe_as("dup", second.0, second.1.clone()).await;
        assert_eq!(
            socket.close_frame(WAIT).await,
            Some((4409, "Subscriber for dup already exists".to_owned())),
            "{} then {}",
            first.0,
            second.0
        );
    }
}

/// The next message of operation `id`, which must be of `kind`.
async fn expect_message(socket: &mut Subscriber, id: &str, kind: &str) -> Value {
    let message = socket
        .next_message(WAIT)
        .await
        .unwrap_or_else(|| panic!("expected {kind} for {id}, the socket fell silent"));
    assert_eq!(message["type"], kind, "{message}");
    assert_eq!(message["id"], id, "{message}");
    message
}

async fn an_id_can_be_used_again_once_its_operation_has_completed(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let mut socket = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    // A query completes by itself…
    for _ in 0..2 {
        socket.subscribe_as("q", "{ __typename }", json!({})).await;
        let answer = expect_message(&mut socket, "q", "next").await;
        assert_eq!(answer["payload"]["data"]["__typename"], "Query");
        expect_message(&mut socket, "q", "complete").await;
    }
    // … subscriptions when the client completes them.
    let grouped = (PLAN_EVENTS, json!({ "projectId": team.project }));
    let ungrouped = (UNGROUPED_PLAN_EVENTS, json!({}));
    for (query, variables) in [&grouped, &ungrouped] {
        socket.subscribe_as("s", query, variables.clone()).await;
        server.wait_for_subscriptions(1).await;
        socket.complete("s").await;
        expect_message(&mut socket, "s", "complete").await;
        server.wait_for_subscriptions(0).await;
    }
    socket.subscribe_as("s", grouped.0, grouped.1.clone()).await;
    server.wait_for_subscriptions(1).await;
    let plan = team.plan("after the reuse", "READY").await;
    let event = expect_message(&mut socket, "s", "next").await;
    assert_eq!(
        event["payload"]["data"]["planEvents"]["plan"]["id"],
        plan.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_protocol_answers_broken_messages_with_errors_and_reads_on() {
    let server = Server::start(Backend::Sqlite).await;
    let key = server.bootstrap_key.clone().expect("admin key");
    let auth = json!({ "Authorization": format!("Bearer {key}") });
    let mut socket = Subscriber::connect_with(&server.base_url, LEGACY_WS, auth)
        .await
        .expect("accepted");
    for frame in [
        "not json",
        r#"{"type":"start"}"#,
        r#"{"type":"stop"}"#,
        r#"{"id":"x"}"#,
    ] {
        socket.send_text(frame).await;
        let answer = socket.next_message(WAIT).await.expect("an answer");
        assert_eq!(answer["type"], "connection_error", "{frame}: {answer}");
        assert!(answer["payload"]["message"].is_string(), "{answer}");
    }
    for frame in [
        r#"{"type":"start","id":"x","payload":{"query":5}}"#,
        r#"{"type":"hello","id":"x"}"#,
    ] {
        socket.send_text(frame).await;
        let answer = expect_message(&mut socket, "x", "error").await;
        assert!(answer["payload"]["message"].is_string(), "{answer}");
    }
    socket.subscribe_as("q", "{ __typename }", json!({})).await;
    let answer = expect_message(&mut socket, "q", "data").await;
    assert_eq!(answer["payload"]["data"]["__typename"], "Query");
    expect_message(&mut socket, "q", "complete").await;
}

async fn a_legacy_start_with_an_id_in_use_replaces_its_operation(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let auth = json!({ "Authorization": format!("Bearer {}", team.viewer.key()) });
    let mut socket = Subscriber::connect_with(&server.base_url, LEGACY_WS, auth)
        .await
        .expect("accepted");
    let grouped = json!({ "projectId": team.project });
    socket
        .subscribe_as("grouped", PLAN_EVENTS, grouped.clone())
        .await;
    socket.subscribe_as("grouped", PLAN_EVENTS, grouped).await;
    socket
        .subscribe_as("alone", UNGROUPED_PLAN_EVENTS, json!({}))
        .await;
    socket
        .subscribe_as("alone", UNGROUPED_PLAN_EVENTS, json!({}))
        .await;
    server.wait_for_subscriptions(2).await;

    let plan = team.plan("watched once", "READY").await;
    let mut delivered = Vec::new();
    for _ in 0..2 {
        let message = socket.next_message(WAIT).await.expect("an event");
        assert_eq!(message["type"], "data", "{message}");
        let event = &message["payload"]["data"]["planEvents"];
        assert_eq!(event["kind"], "CREATED", "{message}");
        delivered.push(message["id"].as_str().expect("id").to_owned());
    }
    delivered.sort();
    assert_eq!(
        delivered,
        ["alone", "grouped"],
        "one event per id, for {plan}"
    );
    socket.expect_nothing(Duration::from_millis(500)).await;
}

/// The schema's whole type system: a query that keeps the server busy for a
/// while without any data behind it.
const INTROSPECTION: &str = "{ __schema { types { name description fields { name description args { name type { name kind ofType { name kind } } } type { name kind ofType { name kind ofType { name kind } } } } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_queries_on_sockets_hold_up_neither_subscribers_nor_new_connections() {
    const SOCKETS: usize = 2;
    const QUERIES: usize = 25;
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let mut board = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    board
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(1).await;

    let mut busy = Vec::new();
    for _ in 0..SOCKETS {
        let mut socket = Subscriber::connect(&server.base_url, team.owner.key()).await;
        for query in 0..QUERIES {
            socket
                .subscribe_as(&format!("q{query}"), INTROSPECTION, json!({}))
                .await;
        }
        busy.push(socket);
    }
    // While those run: the board gets its event, a new socket its ack.
    let plan = team.plan("while busy", "READY").await;
    let event = board.next_event().await;
    assert_eq!(event["plan"]["id"], plan.as_str());
    let newcomer = Subscriber::connect(&server.base_url, team.worker.key()).await;
    newcomer.disconnect().await;

    for socket in &mut busy {
        let mut answered = 0;
        while answered < QUERIES {
            let message = socket
                .next_message(Duration::from_secs(60))
                .await
                .expect("every query is answered");
            match message["type"].as_str() {
                Some("next") => {
                    assert!(message["payload"]["errors"].is_null(), "{message}");
                    assert!(message["payload"]["data"]["__schema"]["types"].is_array());
                    answered += 1;
                }
                Some("complete") => {}
                _ => panic!("unexpected {message}"),
            }
        }
    }
}
