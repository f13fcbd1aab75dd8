//! The server as a program: restart durability, the CLI, HTTP endpoints, and
//! the committed schema.

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    data_and_specs_survive_a_restart,
    cli_creates_users_with_working_keys
);

async fn data_and_specs_survive_a_restart(backend: Backend) {
    let server = Server::start(backend).await;
    assert!(
        server.bootstrap_key.is_some(),
        "first start prints the admin key"
    );
    let team = Team::new(&server).await;
    let plan = team.plan_in("durable", "COMPLETED").await;
    let before = team.owner.ok(GET_PLAN, json!({ "id": plan })).await;

    let server = server.restart().await;
    assert_eq!(
        server.bootstrap_key, None,
        "the admin key is printed only once"
    );
    let owner = server.client(team.owner.key());
    let after = owner.ok(GET_PLAN, json!({ "id": plan })).await;
    assert_eq!(after, before, "plan, spec, events and version all survive");
    let versions = owner
        .ok(
            "query($id: ID!) { feature(id: $id) { currentVersion spec versions { version } } }",
            json!({ "id": team.feature }),
        )
        .await;
    assert_eq!(versions["feature"]["currentVersion"], 2);
    assert_eq!(versions["feature"]["spec"], "# Auth\nUsers sign in.");
}

async fn cli_creates_users_with_working_keys(backend: Backend) {
    let server = Server::start(backend).await;
    let output = tokio::process::Command::new(binary())
        .args([
            "admin",
            "create-user",
            "--email",
            "cli@example.com",
            "--admin",
        ])
        .args(database_args(&server.database))
        .output()
        .await
        .expect("run the CLI");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let key = stdout.lines().last().expect("a last line").trim();
    assert!(
        key.starts_with("pg_"),
        "the key stands alone on the last line: {stdout:?}"
    );
    let me = server
        .client(key)
        .ok("{ viewer { email isAdmin } }", json!({}))
        .await;
    assert_eq!(
        me["viewer"],
        json!({ "email": "cli@example.com", "isAdmin": true })
    );

    let again = tokio::process::Command::new(binary())
        .args(["admin", "create-user", "--email", "cli@example.com"])
        .args(database_args(&server.database))
        .output()
        .await
        .expect("run the CLI");
    assert!(!again.status.success(), "a duplicate email is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[tokio::test]
async fn http_endpoints_behave() {
    let server = Server::start(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let base = &server.base_url;

    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready: Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready,
        json!({ "status": "ready", "database": "ok", "specStore": "ok" })
    );

    let page = http
        .get(format!("{base}/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("graphiql");
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("html")
            .to_lowercase()
            .contains("graphiql")
    );

    let key = server.bootstrap_key.clone().expect("key");
    let get = http
        .get(format!("{base}/graphql"))
        .query(&[("query", "{ viewer { email } }")])
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET query");
    assert_eq!(get.headers()["cache-control"], "private, no-cache");
    let body: Value = get.json().await.expect("json");
    assert_eq!(body["data"]["viewer"]["email"], "admin@localhost");

    let mutation = http
        .get(format!("{base}/graphql"))
        .query(&[("query", "mutation { createProject(name: \"x\") { id } }")])
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET mutation");
    assert_eq!(mutation.status(), 405);
    let body: Value = mutation.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    for (content_type, payload) in [("application/json", "{not json"), ("text/plain", "hello")] {
        let reply = http
            .post(format!("{base}/graphql"))
            .header("content-type", content_type)
            .bearer_auth(&key)
            .body(payload)
            .send()
            .await
            .expect("malformed POST");
        assert_eq!(reply.status(), 400);
        let body: Value = reply.json().await.expect("json error body");
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    }

    let huge = http
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        // Just over the 4 MiB limit: the client has written all of it when
        // the refusal comes, so it reads the refusal rather than a reset.
        .body(vec![b' '; 4 * 1024 * 1024 + 16 * 1024])
        .send()
        .await
        .expect("huge POST");
    assert_eq!(huge.status(), 413);
    let body: Value = huge.json().await.expect("json error body");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    let syntax = server.admin().send("{ viewer { ", json!({})).await;
    assert_eq!(syntax.code(), "BAD_USER_INPUT", "{syntax:?}");
    assert!(
        syntax
            .message()
            .starts_with("Syntax error at line 1, column 12: expected"),
        "a syntax error says where and what was expected: {}",
        syntax.message()
    );
    let empty = server.admin().send("", json!({})).await;
    assert!(
        empty.message().starts_with("The request has no query"),
        "{}",
        empty.message()
    );
    let alive = server.admin().ok("{ viewer { email } }", json!({})).await;
    assert_eq!(alive["viewer"]["email"], "admin@localhost");
}

#[test]
fn committed_schema_matches_the_code() {
    let output = std::process::Command::new(binary())
        .arg("print-schema")
        .output()
        .expect("print-schema");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql at the repository root");
    assert!(
        generated == committed,
        "schema.graphql is stale: run `cargo run -- print-schema > schema.graphql`"
    );
}

/// GraphiQL users read descriptions: every type, field, argument and enum
/// value of our own schema has one.
#[tokio::test]
async fn every_type_field_and_argument_is_described() {
    let server = Server::start(Backend::Sqlite).await;
    let query = "{ __schema { types { name kind description
        fields { name description args { name description } }
        inputFields { name description }
        enumValues { name description } } } }";
    let schema = server.anonymous().ok(query, json!({})).await;
    let builtin = ["String", "Int", "Float", "Boolean", "ID"];
    let mut missing = Vec::new();
    for ty in schema["__schema"]["types"].as_array().expect("types") {
        let name = ty["name"].as_str().expect("name");
        if name.starts_with("__") || builtin.contains(&name) {
            continue;
        }
        let described = |value: &Value| {
            value["description"]
                .as_str()
                .is_some_and(|text| !text.trim().is_empty())
        };
        if !described(ty) {
            missing.push(name.to_owned());
        }
        for field in ty["fields"].as_array().into_iter().flatten() {
            if !described(field) {
                missing.push(format!("{name}.{}", field["name"]));
            }
            for arg in field["args"].as_array().into_iter().flatten() {
                if !described(arg) {
                    missing.push(format!("{name}.{}({})", field["name"], arg["name"]));
                }
            }
        }
        for value in ty["enumValues"].as_array().into_iter().flatten() {
            if !described(value) {
                missing.push(format!("{name}.{}", value["name"]));
            }
        }
    }
    assert!(missing.is_empty(), "undescribed: {missing:?}");
}
