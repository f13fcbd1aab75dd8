//! What stock GraphQL clients rely on besides plain requests: automatic
//! persisted queries (Apollo's protocol), trusted documents, batched
//! requests, and GET answers a polling dashboard can revalidate.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

fn sha256(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// POSTs `body` with the server's admin key; the status and the JSON answer.
async fn post(server: &Server, body: &Value) -> (StatusCode, Value) {
    let reply = reqwest::Client::new()
        .post(format!("{}/graphql", server.base_url))
        .bearer_auth(server.bootstrap_key.as_deref().expect("admin key"))
        .json(body)
        .send()
        .await
        .expect("POST /graphql");
    let status = reply.status();
    (status, reply.json().await.expect("a JSON answer"))
}

#[tokio::test]
async fn a_document_sent_once_with_its_hash_runs_by_hash_alone() {
    let server = Server::start(Backend::Sqlite).await;
    let query = "query Me { viewer { email } }";
    let hash = sha256(query);

    let (_, unknown) = post(&server, &json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(
        unknown["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND",
        "{unknown}"
    );
    let (_, registered) = post(
        &server,
        &json!({ "query": query, "extensions": persisted(&hash) }),
    )
    .await;
    assert_eq!(registered["data"]["viewer"]["email"], "admin@localhost");
    let (_, by_hash) = post(&server, &json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(by_hash["data"]["viewer"]["email"], "admin@localhost");

    // Over GET too, as Apollo's link sends hashed queries.
    let extensions = persisted(&hash).to_string();
    let got: Value = reqwest::Client::new()
        .get(format!("{}/graphql", server.base_url))
        .query(&[("extensions", extensions.as_str())])
        .bearer_auth(server.bootstrap_key.as_deref().expect("admin key"))
        .send()
        .await
        .expect("GET /graphql")
        .json()
        .await
        .expect("json");
    assert_eq!(got["data"]["viewer"]["email"], "admin@localhost", "{got}");

    // A hash that is not the document's is refused, and nothing is stored
    // under it.
    let forged = sha256("{ projects { id } }");
    let (_, refused) = post(
        &server,
        &json!({ "query": query, "extensions": persisted(&forged) }),
    )
    .await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    let (_, still_unknown) = post(&server, &json!({ "extensions": persisted(&forged) })).await;
    assert_eq!(
        still_unknown["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );

    // A stored document goes through every limit like one sent in full.
    let aliases: String = (0..2001).map(|n| format!("a{n}: __typename ")).collect();
    let wide = format!("{{ {aliases} }}");
    let wide_hash = sha256(&wide);
    post(
        &server,
        &json!({ "query": wide, "extensions": persisted(&wide_hash) }),
    )
    .await;
    let (_, limited) = post(&server, &json!({ "extensions": persisted(&wide_hash) })).await;
    assert!(
        limited["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("--max-query-fields")),
        "{limited}"
    );
}

#[tokio::test]
async fn with_trusted_documents_only_the_manifests_documents_run() {
    let trusted = "query Me { viewer { email } }";
    let manifest = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{ "id": sha256(trusted), "name": "Me", "type": "query", "body": trusted }],
    });
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("manifest.json");
    std::fs::write(&path, manifest.to_string()).expect("write the manifest");
    let path = path.to_str().expect("utf-8 path");
    let server = Server::start_with(Backend::Sqlite, &["--trusted-documents", path]).await;

    let (_, by_hash) = post(
        &server,
        &json!({ "extensions": persisted(&sha256(trusted)) }),
    )
    .await;
    assert_eq!(by_hash["data"]["viewer"]["email"], "admin@localhost");
    let (_, by_text) = post(&server, &json!({ "query": trusted })).await;
    assert_eq!(by_text["data"]["viewer"]["email"], "admin@localhost");
    let ad_hoc = "{ projects { id } }";
    for body in [
        json!({ "query": ad_hoc }),
        json!({ "query": ad_hoc, "extensions": persisted(&sha256(ad_hoc)) }),
    ] {
        let (_, refused) = post(&server, &body).await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        assert!(
            refused["errors"][0]["message"]
                .as_str()
                .is_some_and(|message| message.contains("--trusted-documents")),
            "{refused}"
        );
        assert!(refused["data"].is_null());
    }

    // Sockets run only trusted documents too.
    let key = server.bootstrap_key.as_deref().expect("admin key");
    let mut socket = Subscriber::connect(&server.base_url, key).await;
    socket.subscribe(ad_hoc, json!({})).await;
    match socket
        .next_delivery(std::time::Duration::from_secs(5))
        .await
    {
        Some((_, Delivery::Errors(errors))) => assert!(
            errors[0]["message"]
                .as_str()
                .is_some_and(|message| message.contains("--trusted-documents")),
            "{errors:?}"
        ),
        other => panic!("an untrusted document over a socket is refused: {other:?}"),
    }

    // A manifest whose hash does not match its document stops the start.
    let broken = json!({ sha256("{ a }"): "{ b }" });
    std::fs::write(directory.path().join("broken.json"), broken.to_string()).expect("write");
    let output = std::process::Command::new(binary())
        .args(["serve", "--trusted-documents"])
        .arg(directory.path().join("broken.json"))
        .output()
        .expect("run plangraph");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("has another SHA-256 hash"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_batch_runs_each_operation_under_its_own_limits_up_to_its_bound() {
    let server = Server::start_with(Backend::Sqlite, &["--max-batch-operations", "3"]).await;
    let (status, answers) = post(
        &server,
        &json!([
            { "query": "{ viewer { email } }" },
            { "query": "mutation($name: String!) { createProject(name: $name) { name } }",
              "variables": { "name": "batched" } },
            { "query": "{ viewer { " },
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answers = answers.as_array().expect("one answer per operation");
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0]["data"]["viewer"]["email"], "admin@localhost");
    assert_eq!(answers[1]["data"]["createProject"]["name"], "batched");
    assert_eq!(
        answers[2]["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );

    let four: Vec<Value> = (0..4)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let (status, refused) = post(&server, &Value::Array(four)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("--max-batch-operations")),
        "{refused}"
    );
    let (status, _) = post(&server, &json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_polled_query_answers_304_until_a_write_changes_it() {
    let server = Server::start(Backend::Sqlite).await;
    let key = server.bootstrap_key.clone().expect("admin key");
    let http = reqwest::Client::new();
    let get = async |tag: Option<&str>| {
        let mut request = http
            .get(format!("{}/graphql", server.base_url))
            // Several root fields, which resolve concurrently: the answer
            // is the same bytes every time only in the document's order.
            .query(&[(
                "query",
                "{ projects { name } plans { totalCount } viewer { email } }",
            )])
            .bearer_auth(&key);
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        request.send().await.expect("GET /graphql")
    };
    let first = get(None).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["cache-control"], "private, no-cache");
    assert!(
        first.headers()["vary"]
            .to_str()
            .expect("ascii")
            .contains("authorization")
    );
    let tag = first.headers()["etag"].to_str().expect("ascii").to_owned();

    for _ in 0..20 {
        let unchanged = get(Some(&tag)).await;
        assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
        assert!(unchanged.bytes().await.expect("body").is_empty());
    }

    server
        .admin()
        .ok(CREATE_PROJECT, json!({ "name": "new" }))
        .await;
    let changed = get(Some(&tag)).await;
    assert_eq!(
        changed.status(),
        StatusCode::OK,
        "a write changes the answer"
    );
    assert_ne!(changed.headers()["etag"].to_str().expect("ascii"), tag);
    let body: Value = changed.json().await.expect("json");
    assert_eq!(body["data"]["projects"][0]["name"], "new");

    // Writes are POSTs, never cached.
    let posted = http
        .post(format!("{}/graphql", server.base_url))
        .bearer_auth(&key)
        .json(&json!({ "query": "{ projects { name } }" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.headers()["cache-control"], "no-store");
    assert!(posted.headers().get("etag").is_none());
}

#[tokio::test]
async fn any_object_is_fetched_again_by_its_id_alone() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let plan = team.plan("refetched", "READY").await;
    let ids = team
        .owner
        .ok(
            "query($id: ID!) { plan(id: $id) { id feature { id versions { id } }
               project { id } createdBy { id } events { id cursor } } }",
            json!({ "id": plan }),
        )
        .await;
    let plan_row = &ids["plan"];
    assert_eq!(plan_row["events"][0]["id"], plan_row["events"][0]["cursor"]);
    let expected = [
        ("Plan", plan_row["id"].clone()),
        ("Feature", plan_row["feature"]["id"].clone()),
        (
            "FeatureVersion",
            plan_row["feature"]["versions"][0]["id"].clone(),
        ),
        ("Project", plan_row["project"]["id"].clone()),
        ("User", plan_row["createdBy"]["id"].clone()),
    ];
    for (typename, id) in &expected {
        let found = team
            .owner
            .ok(
                "query($id: ID!) { node(id: $id) { __typename id ... on Plan { title } } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(found["node"]["__typename"], *typename, "{found}");
        assert_eq!(found["node"]["id"], *id);
    }
    let found = team
        .owner
        .ok(
            "query($id: ID!) { node(id: $id) { ... on Plan { title } } }",
            json!({ "id": plan }),
        )
        .await;
    assert_eq!(found["node"]["title"], "refetched");

    // Several at once, in the order asked; what is not yours to see, or is
    // not there, is null.
    let unknown = uuid::Uuid::now_v7().to_string();
    let asked: Vec<Value> = expected
        .iter()
        .map(|(_, id)| id.clone())
        .chain([json!(unknown)])
        .collect();
    let listed = team
        .owner
        .ok(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({ "ids": asked }),
        )
        .await;
    let listed = listed["nodes"].as_array().expect("nodes");
    assert_eq!(listed.len(), 6);
    for (index, (_, id)) in expected.iter().enumerate() {
        assert_eq!(listed[index]["id"], *id);
    }
    assert!(listed[5].is_null());
    let foreign = team
        .outsider
        .ok(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({ "ids": asked[..5] }),
        )
        .await;
    assert_eq!(
        foreign["nodes"],
        json!([null, null, null, null, null]),
        "another project's objects are not seen"
    );

    let malformed = team
        .owner
        .send("{ node(id: \"not-an-id\") { id } }", json!({}))
        .await;
    assert_eq!(malformed.code(), "BAD_USER_INPUT");
    let too_many: Vec<String> = (0..101).map(|_| unknown.clone()).collect();
    let refused = team
        .owner
        .send(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({ "ids": too_many }),
        )
        .await;
    assert_eq!(refused.code(), "BAD_USER_INPUT", "{refused:?}");

    // The schema says which types are nodes and how DateTime is written.
    let schema = team
        .owner
        .ok(
            "{ node: __type(name: \"Node\") { possibleTypes { name } }
               dateTime: __type(name: \"DateTime\") { specifiedByURL } }",
            json!({}),
        )
        .await;
    let mut kinds: Vec<&str> = schema["node"]["possibleTypes"]
        .as_array()
        .expect("possible types")
        .iter()
        .filter_map(|kind| kind["name"].as_str())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["Feature", "FeatureVersion", "Plan", "Project", "User"]
    );
    assert_eq!(
        schema["dateTime"]["specifiedByURL"],
        "https://datatracker.ietf.org/doc/html/rfc3339"
    );
}
