//! An internal error reaches the client as a code and a sentence, and the
//! server log once, with its detail and where it happened.

use crate::helpers::*;
use sea_orm::{ConnectionTrait, Database as Connection};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_code_cannot_read_is_internal_and_logged_once_with_its_detail() {
    let server = Server::start_with(Backend::Sqlite, &["--log-format", "json"]).await;
    let team = Team::new(&server).await;
    let plan = team.plan("damaged", "READY").await;
    // Another program wrote a status this server does not know.
    let file = server.database.data_dir.path().join("plangraph.db");
    let database = Connection::connect(format!("sqlite://{}", file.display()))
        .await
        .expect("open the database file");
    let damaged = database
        .execute_unprepared("UPDATE plans SET status = 'archived' WHERE title = 'damaged'")
        .await
        .expect("damage the row");
    assert_eq!(damaged.rows_affected(), 1);

    let reply = team
        .owner
        .send(
            "query($id: ID!) { plan(id: $id) { title } }",
            json!({ "id": plan }),
        )
        .await;
    assert_eq!(reply.code(), "INTERNAL");
    assert!(
        !reply.message().contains("archived"),
        "no internals for the client: {}",
        reply.message()
    );

    let log = std::fs::read_to_string(server.database.data_dir.path().join("server.log"))
        .expect("server log");
    let logged: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "internal error")
        .collect();
    assert_eq!(logged.len(), 1, "logged once: {logged:?}");
    let line = &logged[0];
    assert!(
        line["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("archived")),
        "with the detail: {line}"
    );
    assert_eq!(line["context"], "graphql plan", "and where: {line}");
}
