//! PostgreSQL going away: a clear start-up failure, clear request errors while
//! it is gone, and recovery without a restart when it returns.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_clearly_during_an_outage_and_recover_after() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let database = Database::create(backend).await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let name = database
        .url()
        .expect("url")
        .rsplit('/')
        .next()
        .expect("name")
        .to_owned();
    let url = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    let server = Server::launch(
        database,
        vec![
            "--database-url".into(),
            url,
            "--database-acquire-timeout".into(),
            "1s".into(),
        ],
    )
    .await;
    let admin = server.admin();
    admin.ok(CREATE_PROJECT, json!({ "name": "before" })).await;
    let http = reqwest::Client::new();
    let readyz = || async {
        let response = http
            .get(format!("{}/readyz", server.base_url))
            .send()
            .await
            .expect("readyz");
        let status = response.status();
        (status, response.json::<Value>().await.expect("json"))
    };

    proxy.cut();
    let reply = admin.send("{ projects { name } }", json!({})).await;
    assert_eq!(reply.code(), "INTERNAL");
    assert!(
        reply.message().contains("database is unavailable"),
        "{}",
        reply.message()
    );
    assert!(
        !reply.message().contains("5432"),
        "no driver details leak: {}",
        reply.message()
    );
    let (status, body) = readyz().await;
    assert_eq!(status, 503);
    assert_eq!(body["database"], "unavailable");
    let write = admin
        .send(CREATE_PROJECT, json!({ "name": "during" }))
        .await;
    assert_eq!(write.code(), "INTERNAL");

    proxy.restore();
    let projects = eventually(Duration::from_secs(20), || async {
        let reply = admin.send("{ projects { name } }", json!({})).await;
        reply.errors.is_empty().then_some(reply.data)
    })
    .await;
    assert_eq!(
        projects["projects"],
        json!([{ "name": "before" }]),
        "nothing half-written"
    );
    assert_eq!(readyz().await.0, 200);
    admin.ok(CREATE_PROJECT, json!({ "name": "after" })).await;
}

#[tokio::test]
async fn start_up_without_a_database_fails_with_one_clear_line() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let output = tokio::process::Command::new(binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-acquire-timeout",
            "2s",
        ])
        .args([
            "--database-url",
            "postgres://postgres:hunter2@127.0.0.1:1/plangraph",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("PLANGRAPH_LOG", "off")
        .output()
        .await
        .expect("run plangraph");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("cannot connect to the database at 127.0.0.1:1"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password never appears: {stderr}"
    );
}
