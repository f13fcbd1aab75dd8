//! What an operator sees: request ids, one log line per operation, metrics,
//! CORS for named origins only, and a switch to turn the playground off.

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn requests_are_traced_logged_and_counted() {
    let server = Server::start_with(Backend::Sqlite, &["--log-format", "json"]).await;
    let team = Team::new(&server).await;
    let secret_spec = "# TOP SECRET SPEC CONTENT";
    team.owner
        .ok(
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "logged", "spec": secret_spec }),
        )
        .await;
    let http = reqwest::Client::new();
    let echoed = http
        .post(format!("{}/graphql", server.base_url))
        .header("x-request-id", "trace-me-42")
        .bearer_auth(team.owner.key())
        .json(&json!({ "query": "query Board { plans { totalCount } }", "operationName": "Board" }))
        .send()
        .await
        .expect("request");
    assert_eq!(
        echoed.headers()["x-request-id"],
        "trace-me-42",
        "a client's id is kept"
    );
    let generated = http
        .get(format!("{}/healthz", server.base_url))
        .send()
        .await
        .expect("healthz");
    assert!(
        !generated.headers()["x-request-id"].is_empty(),
        "every response gets an id"
    );
    team.outsider
        .send("{ plan(id: \"nope\") { id } }", json!({}))
        .await;

    let metrics = http
        .get(format!("{}/metrics", server.base_url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for family in [
        "plangraph_graphql_requests_total{kind=\"query\",operation=\"Board\"} 1",
        "plangraph_graphql_request_duration_seconds_bucket",
        "plangraph_graphql_errors_total{code=\"BAD_USER_INPUT\"}",
        "plangraph_db_pool_connections",
        "plangraph_db_statements_total",
    ] {
        assert!(
            metrics.contains(family),
            "/metrics lacks {family}:\n{metrics}"
        );
    }

    let log =
        std::fs::read_to_string(server.database.data_dir.path().join("server.log")).expect("log");
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let board = lines
        .iter()
        .find(|line| line["message"] == "graphql operation" && line["operation"] == "Board")
        .expect("one log line for the Board operation");
    assert_eq!(board["span"]["request_id"], "trace-me-42");
    assert!(board["duration_ms"].is_number());
    assert!(
        !log.contains("TOP SECRET"),
        "spec contents never reach the log"
    );
    assert!(!log.contains(team.owner.key()), "keys never reach the log");
}

#[tokio::test]
async fn readable_logs_written_to_a_file_carry_no_colour_codes() {
    let server = Server::start_with(Backend::Sqlite, &[]).await;
    let reply = server
        .admin()
        .send("query Colourless { viewer { id } }", json!({}))
        .await;
    assert!(reply.errors.is_empty(), "{reply:?}");
    let log =
        std::fs::read_to_string(server.database.data_dir.path().join("server.log")).expect("log");
    let line = log
        .lines()
        .find(|line| line.contains("graphql operation") && line.contains("Colourless"))
        .unwrap_or_else(|| panic!("no log line for the operation:\n{log}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file:\n{log}"
    );
}

#[tokio::test]
async fn cors_allows_only_named_origins() {
    let server =
        Server::start_with(Backend::Sqlite, &["--cors-origin", "https://board.example"]).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/graphql", server.base_url),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
    };
    let allowed = preflight("https://board.example").await.expect("preflight");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://board.example"
    );
    let refused = preflight("https://evil.example").await.expect("preflight");
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn the_playground_and_introspection_can_be_turned_off() {
    let server = Server::start_with(Backend::Sqlite, &["--no-playground"]).await;
    let page = reqwest::Client::new()
        .get(format!("{}/graphql", server.base_url))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GET");
    assert!(
        !page
            .text()
            .await
            .expect("body")
            .to_lowercase()
            .contains("graphiql")
    );
    let reply = server
        .admin()
        .send("{ __schema { types { name } } }", json!({}))
        .await;
    assert!(
        !reply.errors.is_empty() || reply.data["__schema"].is_null(),
        "introspection is off: {reply:?}"
    );
    server.admin().ok("{ viewer { email } }", json!({})).await;
}
