//! What one request, one socket or one anonymous client can cost is bounded,
//! each bound with an error that names it, while other clients are served;
//! and a revoked key stops working on sockets it already opened.

use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    a_fragment_fan_out_is_refused_before_it_expands,
    nested_lists_are_refused_by_their_multiplied_cost,
    one_response_carries_a_bounded_amount_of_specs,
    a_page_over_the_document_budget_loses_only_the_fields_that_overrun_it,
    a_revoked_key_stops_working_on_open_sockets,
    socket_operations_read_fresh_data_and_are_capped,
    text_with_nul_and_oversized_searches_are_refused,
);

/// `{ ...G0 }` where each fragment spreads the next one `fan` times:
/// `fan^levels` fields once expanded, in well under a kilobyte.
fn fragment_fan_out(levels: usize, fan: usize) -> String {
    let mut query = String::from("{ ...G0 }");
    for level in 0..levels {
        let spreads = format!("...G{} ", level + 1).repeat(fan);
        query.push_str(&format!(" fragment G{level} on Query {{ {spreads} }}"));
    }
    query.push_str(&format!(" fragment G{levels} on Query {{ __typename }}"));
    query
}

/// `error` is a field's refusal for going over the response's document
/// budget, naming the option that sets it.
fn assert_over_document_budget(error: &Value) {
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| message.contains("--max-response-document-bytes")),
        "{error}"
    );
}

async fn a_fragment_fan_out_is_refused_before_it_expands(backend: Backend) {
    let server = Server::start(backend).await;
    let attacker = server.anonymous();
    // 12^9 fields once expanded: expanding them would take the server minutes.
    let query = fragment_fan_out(9, 12);
    assert!(
        query.len() < 1000,
        "a small document: {} bytes",
        query.len()
    );

    let reply = with_bystanders(&server, attacker.send(&query, json!({}))).await;
    assert_refused_naming(&reply, "--max-query-fields");

    // Aliases are fields too.
    let aliases: String = (0..2001).map(|n| format!("a{n}: __typename ")).collect();
    let reply = attacker.send(&format!("{{ {aliases} }}"), json!({})).await;
    assert_refused_naming(&reply, "--max-query-fields");
    // A long document is refused before it is parsed; values belong in variables.
    let padded = format!("{{ __typename }} # {}", "x".repeat(200 * 1024));
    let reply = attacker.send(&padded, json!({})).await;
    assert_refused_naming(&reply, "--max-query-bytes");
    let fits: String = (0..50).map(|n| format!("a{n}: __typename ")).collect();
    let reply = attacker.send(&format!("{{ {fits} }}"), json!({})).await;
    assert_eq!(reply.data["a49"], "Query", "{reply:?}");
}

async fn nested_lists_are_refused_by_their_multiplied_cost(backend: Backend) {
    // No sweep or webhook poll running statements while they are counted.
    let server = Server::start_with(backend, &NO_BACKGROUND_STATEMENTS).await;
    let team = Team::new(&server).await;
    for title in ["one", "two", "three"] {
        team.plan(title, "READY").await;
    }
    let nested = |page: usize| {
        format!(
            "{{ plans(first: {page}) {{ nodes {{ feature {{ plans(first: {page}) {{ nodes {{ feature {{ plans(first: {page}) {{ nodes {{ title }} }} }} }} }} }} }} }} }}"
        )
    };
    // The bystanders' key is used once first, so that their requests only
    // look it up (its first use also records when it was used).
    server.admin().ok("{ __typename }", json!({})).await;
    // Once the webhook worker has looked at the setup's events.
    let quiet = Duration::from_millis(300);
    let before = server
        .settled_count("plangraph_db_statements_total", quiet)
        .await;
    let reply = with_bystanders(&server, team.owner.send(&nested(100), json!({}))).await;
    assert_refused_naming(&reply, "--max-query-complexity");
    let after = server.metrics().await.get("plangraph_db_statements_total");
    assert!(
        after - before <= 12.0,
        "refused before loading anything (the bystanders' keys aside): {} statements",
        after - before
    );
    // The refusal says by how much: the cost, which counts page sizes sent
    // as variables as it counts them written in the document.
    let cost_of = |reply: &Reply| -> u64 {
        let message = reply.message();
        let digits: String = message
            .split("its cost is ")
            .nth(1)
            .unwrap_or_else(|| panic!("no cost in {message:?}"))
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("a cost")
    };
    let cost = cost_of(&reply);
    assert!(cost > 5_000, "over the default limit of 5000: {cost}");
    let variable = "query($page: Int) { plans(first: $page) { nodes { feature { plans(first: $page) { nodes { feature { plans(first: $page) { nodes { title } } } } } } } } }";
    let reply = team.owner.send(variable, json!({ "page": 100 })).await;
    assert_refused_naming(&reply, "--max-query-complexity");
    assert_eq!(cost_of(&reply), cost);

    let served = team.owner.ok(&nested(3), json!({})).await;
    let titles =
        &served["plans"]["nodes"][0]["feature"]["plans"]["nodes"][0]["feature"]["plans"]["nodes"];
    assert_eq!(titles.as_array().map(Vec::len), Some(3), "{served}");

    // A document counts more than a title: the same page of specs, five
    // times over, costs more than the limit where titles do not.
    let five = |field: &str| {
        let pages: String = (0..5)
            .map(|n| format!("p{n}: plans(first: 100) {{ nodes {{ {field} }} }} "))
            .collect();
        format!("{{ {pages} }}")
    };
    team.owner.ok(&five("title"), json!({})).await;
    let reply = team.owner.send(&five("spec"), json!({})).await;
    assert_refused_naming(&reply, "--max-query-complexity");
}

async fn one_response_carries_a_bounded_amount_of_specs(backend: Backend) {
    let server = Server::start_with(backend, &["--max-response-document-bytes", "2500000"]).await;
    let team = Team::new(&server).await;
    let megabyte = "x".repeat(1024 * 1024);
    let plan = team
        .owner
        .ok(
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "big", "spec": megabyte, "status": "READY" }),
        )
        .await["createPlan"]["id"]
        .as_str()
        .expect("plan id")
        .to_owned();
    let aliases = |count: usize| {
        let fields: String = (0..count)
            .map(|n| format!("p{n}: plan(id: $id) {{ spec }} "))
            .collect();
        format!("query($id: ID!) {{ {fields} }}")
    };

    let reply = with_bystanders(
        &server,
        team.owner.send(&aliases(200), json!({ "id": plan })),
    )
    .await;
    let served = (0..200)
        .filter(|n| reply.data[format!("p{n}")]["spec"].is_string())
        .count();
    assert_eq!(served, 2, "two megabytes fit in 2.5 MB, the third does not");
    assert_eq!(reply.errors.len(), 198);
    for error in &reply.errors {
        assert_over_document_budget(error);
    }
    assert!(
        reply.data.to_string().len() < 3_000_000,
        "the response stays within the budget"
    );

    // Thousands of aliases are refused before anything is loaded.
    let reply = team.owner.send(&aliases(2000), json!({ "id": plan })).await;
    assert_eq!(reply.code(), "BAD_USER_INPUT");
    assert!(reply.data.is_null(), "{:?}", reply.errors);

    // Other fields of the same response are unaffected.
    let reply = team
        .owner
        .send(
            "query($id: ID!) { a: plan(id: $id) { spec } b: plan(id: $id) { spec } c: plan(id: $id) { spec title } }",
            json!({ "id": plan }),
        )
        .await;
    assert_eq!(reply.data["c"]["title"], "big");
    let specs = ["a", "b", "c"]
        .iter()
        .filter(|alias| reply.data[**alias]["spec"].is_string())
        .count();
    assert_eq!(specs, 2, "two of the three fit");
}

/// Work artifacts are a column of a page's rows, resolved row after row:
/// the row whose artifacts would overrun the response's budget loses that
/// field alone, with an error at its path; every row keeps its other fields.
async fn a_page_over_the_document_budget_loses_only_the_fields_that_overrun_it(backend: Backend) {
    let server = Server::start_with(backend, &["--max-response-document-bytes", "1000000"]).await;
    let team = Team::new(&server).await;
    let artifacts = "y".repeat(400 * 1024);
    for title in ["one", "two", "three"] {
        let plan = team.plan(title, "READY").await;
        team.worker.ok(CLAIM, json!({ "planId": plan })).await;
        team.worker
            .ok(
                SUBMIT,
                json!({ "planId": plan, "artifacts": artifacts, "status": "REVIEW" }),
            )
            .await;
    }

    let reply = team
        .owner
        .send(
            "query($feature: ID!) { plans(featureId: $feature, first: 10) { nodes { title workArtifacts status } } }",
            json!({ "feature": team.feature }),
        )
        .await;
    let nodes = reply.data["plans"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{:?}", reply.errors);
    for node in nodes {
        assert!(node["title"].is_string(), "{node}");
        assert_eq!(node["status"], "REVIEW", "{node}");
    }
    let without: Vec<usize> = (0..nodes.len())
        .filter(|&index| !nodes[index]["workArtifacts"].is_string())
        .collect();
    assert_eq!(without.len(), 1, "two of the three fit in 1 MB");
    assert_eq!(reply.errors.len(), 1, "{:?}", reply.errors);
    let error = &reply.errors[0];
    assert_over_document_budget(error);
    assert_eq!(
        error["path"],
        json!(["plans", "nodes", without[0], "workArtifacts"]),
        "the error points at the row that lost its artifacts"
    );
}

/// The id of the API key this client authenticates with, found by label.
async fn key_id(client: &Client, label: &str) -> Value {
    let keys = client.ok("{ apiKeys { id label } }", json!({})).await;
    keys["apiKeys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["label"] == label))
        .map(|key| key["id"].clone())
        .expect("key by label")
}

async fn a_revoked_key_stops_working_on_open_sockets(backend: Backend) {
    let servers = Server::instances(backend, &[]).await;
    let (first, last) = (&servers[0], &servers[servers.len() - 1]);
    let team = Team::new(first).await;
    let created = team
        .worker
        .ok(
            "mutation { createApiKey(label: \"laptop\") { secret } }",
            json!({}),
        )
        .await;
    let laptop = first.client(created["createApiKey"]["secret"].as_str().expect("secret"));
    let socket_key = key_id(&team.worker, "initial").await;

    // On PostgreSQL the socket is on another instance than the revocation.
    let mut socket = Subscriber::connect(&last.base_url, team.worker.key()).await;
    let asked = socket.subscribe("{ viewer { email } }", json!({})).await;
    match socket.next_delivery(Duration::from_secs(15)).await {
        Some((id, Delivery::Data(data))) if id == asked => {
            assert_eq!(data["viewer"]["email"], "worker@example.com");
        }
        other => panic!("expected the viewer, got {other:?}"),
    }

    laptop
        .ok(
            "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": socket_key }),
        )
        .await;
    let minting = socket
        .subscribe(
            "mutation { createApiKey(label: \"zombie\") { secret } }",
            json!({}),
        )
        .await;
    loop {
        match socket.next_delivery(Duration::from_secs(15)).await {
            Some((id, Delivery::Complete)) if id == asked => continue,
            Some((id, Delivery::Errors(errors))) if id == minting => {
                assert_eq!(errors[0]["extensions"]["code"], "UNAUTHENTICATED");
                break;
            }
            other => panic!("the revoked key mints nothing; got {other:?}"),
        }
    }
    assert_eq!(
        socket.close_code(Duration::from_secs(15)).await,
        Some(4403),
        "the socket is closed at once, on whichever instance it is"
    );
    let labels = laptop.ok("{ apiKeys { label } }", json!({})).await;
    assert!(
        !labels.to_string().contains("zombie"),
        "no key was minted: {labels}"
    );
}

async fn socket_operations_read_fresh_data_and_are_capped(backend: Backend) {
    let server = Server::start_with(backend, &["--max-operations-per-connection", "3"]).await;
    let team = Team::new(&server).await;
    let mut socket = Subscriber::connect(&server.base_url, team.worker.key()).await;
    let title_of = "query($id: ID!) { feature(id: $id) { title } project(id: $p) { name } }"
        .replace("$p", &format!("\"{}\"", team.project));
    let title_of = title_of.as_str();
    // Asks on the socket and waits until the operation is complete, so that
    // it no longer counts as open.
    let ask = async |socket: &mut Subscriber| -> Value {
        let id = socket
            .subscribe(title_of, json!({ "id": team.feature }))
            .await;
        let mut answer = Value::Null;
        loop {
            match socket.next_delivery(Duration::from_secs(15)).await {
                Some((other, _)) if other != id => continue,
                Some((_, Delivery::Data(data))) => answer = data,
                Some((_, Delivery::Errors(errors))) => answer = json!({ "errors": errors }),
                Some((_, Delivery::Complete)) => return answer,
                None => panic!("no answer to {id}"),
            }
        }
    };
    assert_eq!(
        ask(&mut socket).await["feature"]["title"],
        "User Authentication"
    );
    team.owner
        .ok(
            "mutation($id: ID!) { updateFeature(featureId: $id, title: \"Sign-in\") { title } }",
            json!({ "id": team.feature }),
        )
        .await;
    assert_eq!(
        ask(&mut socket).await["feature"]["title"],
        "Sign-in",
        "each operation loads afresh, nothing is cached for the connection"
    );

    // Three operations may be open at once; a fourth is refused, naming the limit.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(socket.subscribe(PLAN_EVENTS, json!({})).await);
    }
    let fourth = socket.subscribe(PLAN_EVENTS, json!({})).await;
    loop {
        match socket.next_delivery(Duration::from_secs(15)).await {
            Some((_, Delivery::Complete)) => continue,
            Some((id, Delivery::Errors(errors))) if id == fourth => {
                assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT");
                let message = errors[0]["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("--max-operations-per-connection"),
                    "{message}"
                );
                break;
            }
            other => panic!("expected the fourth to be refused, got {other:?}"),
        }
    }
    // Ending one makes room for another, which then receives events.
    socket.complete(&open[0]).await;
    team.plan("seen by the new one", "DRAFT").await;
    // From the start of the log, so it cannot miss the plan above.
    let again = socket.subscribe(PLAN_EVENTS, json!({ "after": "0" })).await;
    loop {
        match socket.next_delivery(Duration::from_secs(15)).await {
            Some((id, Delivery::Data(data))) if id == again => {
                assert_eq!(data["planEvents"]["kind"], "CREATED");
                break;
            }
            Some((id, delivery)) if id != again => {
                assert!(!matches!(delivery, Delivery::Errors(_)), "{delivery:?}");
            }
            other => panic!("expected an event for {again}, got {other:?}"),
        }
    }

    // A membership removed takes effect on the open socket as over HTTP.
    socket.complete(&open[1]).await;
    let worker = team.worker.user_id().await;
    team.owner
        .ok(
            REMOVE_MEMBER,
            json!({ "projectId": team.project, "userId": worker }),
        )
        .await;
    let answer = loop {
        let answer = ask(&mut socket).await;
        if answer.get("errors").is_some() {
            break answer;
        }
    };
    assert_eq!(answer["errors"][0]["extensions"]["code"], "FORBIDDEN");
}

async fn text_with_nul_and_oversized_searches_are_refused(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let refusals = [
        (
            "mutation($name: String!) { createProject(name: $name) { id } }",
            json!({ "name": "bad\u{0}name" }),
        ),
        (
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "t", "spec": "# spec\u{0}" }),
        ),
        (
            CREATE_PLAN,
            json!({ "featureId": team.feature, "title": "t\u{0}", "spec": "# spec" }),
        ),
        (
            "mutation($email: String!) { createUser(email: $email) { secret } }",
            json!({ "email": "nul\u{0}@example.com" }),
        ),
    ];
    for (query, variables) in refusals {
        let client = if query.contains("createUser") {
            server.admin()
        } else {
            team.owner.clone()
        };
        let reply = client.send(query, variables).await;
        assert_eq!(reply.code(), "BAD_USER_INPUT", "{reply:?}");
        assert!(
            reply.message().contains("NUL") || reply.message().contains("not an email"),
            "{}",
            reply.message()
        );
    }
    let long = "x".repeat(3 * 1024 * 1024);
    let reply = team
        .owner
        .send(
            "query($search: String) { plans(search: $search) { totalCount } }",
            json!({ "search": long }),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT");
    assert!(
        reply.message().contains("search is too long"),
        "{}",
        reply.message()
    );
    let reply = team
        .owner
        .ok(
            "query($search: String) { plans(search: $search) { totalCount } }",
            json!({ "search": "nothing like it" }),
        )
        .await;
    assert_eq!(reply["plans"]["totalCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_names_beyond_the_first_ones_share_one_metric_series() {
    let server = Server::start(Backend::Sqlite).await;
    let client = server.anonymous();
    for n in 0..260 {
        client
            .send(&format!("query Probe{n} {{ __typename }}"), json!({}))
            .await;
    }
    let metrics = server.metrics().await;
    let series: Vec<&String> = metrics
        .names()
        .filter(|name| name.starts_with("plangraph_graphql_requests_total{"))
        .collect();
    assert!(
        series.len() <= 201,
        "at most 200 named series and `other`: {}",
        series.len()
    );
    let other = metrics.get("plangraph_graphql_requests_total{kind=\"query\",operation=\"other\"}");
    assert!(other >= 60.0, "the rest are counted as other: {other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_without_a_token_only_on_loopback_or_an_address_of_their_own() {
    let token = "metrics-token-0123456789";
    let guarded = Server::start_with(Backend::Sqlite, &["--metrics-token", token]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", guarded.base_url);
    let refused = http.get(&url).send().await.expect("GET /metrics");
    assert_eq!(refused.status(), 401);
    let wrong = http
        .get(&url)
        .bearer_auth("metrics-token-wrong-wrong")
        .send()
        .await;
    assert_eq!(wrong.expect("GET /metrics").status(), 401);
    let allowed = http.get(&url).bearer_auth(token).send().await.expect("GET");
    assert_eq!(allowed.status(), 200);
    assert!(
        allowed
            .text()
            .await
            .expect("text")
            .contains("plangraph_db_statements_total")
    );

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("address").port()
    };
    let address = format!("127.0.0.1:{port}");
    let separate = Server::start_with(Backend::Sqlite, &["--metrics-listen", &address]).await;
    let on_api = http
        .get(format!("{}/metrics", separate.base_url))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(on_api.status(), 404, "not beside the API");
    let on_own = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("GET own /metrics");
    assert_eq!(on_own.status(), 200);

    // On a network address, beside the API, metrics need a token.
    let exposed = Server::start_with(Backend::Sqlite, &["--listen", "0.0.0.0:0"]).await;
    let refused = http
        .get(format!("{}/metrics", exposed.base_url))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(refused.status(), 403);
    let reason = refused.text().await.expect("text");
    assert!(
        reason.contains("--metrics-token") && reason.contains("--metrics-listen"),
        "{reason}"
    );
    let answered = exposed.admin().ok("{ __typename }", json!({})).await;
    assert_eq!(answered["__typename"], "Query");
    let exposed_with_token = Server::start_with(
        Backend::Sqlite,
        &["--listen", "0.0.0.0:0", "--metrics-token", token],
    )
    .await;
    let allowed = http
        .get(format!("{}/metrics", exposed_with_token.base_url))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(allowed.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_that_could_forge_log_lines_are_replaced() {
    let server = Server::start(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let echo = async |id: &str| -> String {
        let response = http
            .get(format!("{}/healthz", server.base_url))
            .header("x-request-id", id)
            .send()
            .await
            .expect("GET /healthz");
        response.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    assert_eq!(echo("trace-42.a_b:c").await, "trace-42.a_b:c");
    for unsafe_id in [
        "a\" level=error msg=\"forged",
        "tab\there",
        &"x".repeat(500),
    ] {
        let replaced = echo(unsafe_id).await;
        assert_ne!(replaced, unsafe_id);
        assert!(
            uuid::Uuid::parse_str(&replaced).is_ok(),
            "a server-made id instead: {replaced}"
        );
    }
}

/// A connection reads its socket through a 1 KiB buffer (an idle
/// subscriber keeps it); a client message many times longer is still read
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_websocket_message_is_read_whole() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let mut board = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    // 64 KiB of comment after the document: 64 buffers' worth.
    let long = format!("{PLAN_EVENTS}\n#{}\n", "x".repeat(64 * 1024));
    board
        .subscribe(&long, json!({ "projectId": team.project }))
        .await;
    server.wait_for_subscriptions(1).await;
    let plan = team.plan("read whole", "DRAFT").await;
    let event = board.next_event().await;
    assert_eq!(event["kind"], "CREATED");
    assert_eq!(event["plan"]["id"], plan.as_str());
}

/// A client message over 256 KiB closes its socket with 1009 (message too
/// big), and only its socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_over_the_limit_closes_with_1009() {
    let server = Server::start(Backend::Sqlite).await;
    let team = Team::new(&server).await;
    let mut bystander = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    bystander
        .subscribe(PLAN_EVENTS, json!({ "projectId": team.project }))
        .await;
    let mut sender = Subscriber::connect(&server.base_url, team.viewer.key()).await;
    let too_long = format!("{PLAN_EVENTS}\n#{}\n", "x".repeat(300 * 1024));
    sender
        .subscribe(&too_long, json!({ "projectId": team.project }))
        .await;
    assert_eq!(sender.close_code(Duration::from_secs(10)).await, Some(1009));

    server.wait_for_subscriptions(1).await;
    let plan = team.plan("still served", "DRAFT").await;
    let event = bystander.next_event().await;
    assert_eq!(event["plan"]["id"], plan.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_holds_a_bounded_number_of_sockets() {
    let server = Server::start_with(Backend::Sqlite, &["--max-connections-per-key", "2"]).await;
    let key = server.bootstrap_key.clone().expect("admin key");
    let first = Subscriber::connect(&server.base_url, &key).await;
    let _second = Subscriber::connect(&server.base_url, &key).await;
    let payload = json!({ "Authorization": format!("Bearer {key}") });
    let third = Subscriber::connect_with(&server.base_url, TRANSPORT_WS, payload.clone()).await;
    let refused = third.err().expect("a third socket is refused");
    assert_eq!(refused.close_code, Some(1008));
    // Another key is not affected.
    let other = server.user("other@example.com").await;
    let _other = Subscriber::connect(&server.base_url, other.key()).await;

    first.disconnect().await;
    let base_url = server.base_url.clone();
    eventually(Duration::from_secs(15), || {
        let (base_url, payload) = (base_url.clone(), payload.clone());
        async move {
            Subscriber::connect_with(&base_url, TRANSPORT_WS, payload)
                .await
                .ok()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_runs_too_long_is_stopped_and_a_mutation_is_not() {
    let server = Server::start_with(Backend::Sqlite, &["--query-timeout", "1ms"]).await;
    let team = Team::new(&server).await;
    for n in 0..20 {
        team.plan(&format!("plan {n}"), "READY").await;
    }
    // Twenty-one list statements: far more than a millisecond.
    let slow = "{ plans(first: 20) { nodes { feature { plans(first: 20) { totalCount nodes { title } } } } } }";
    let reply = team.owner.send(slow, json!({})).await;
    assert_eq!(reply.code(), "TIMEOUT", "{reply:?}");
    assert!(
        reply.message().contains("--query-timeout"),
        "{}",
        reply.message()
    );
    // A mutation is never stopped midway, and what needs no waiting is answered.
    team.plan("still created", "DRAFT").await;
    team.owner.ok("{ __typename }", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_stops_when_its_client_goes_away() {
    let server = Server::start_with(
        Backend::Sqlite,
        &[
            "--max-query-complexity",
            "100000000",
            "--query-timeout",
            "10m",
        ],
    )
    .await;
    let team = Team::new(&server).await;
    for n in 0..100 {
        team.plan(&format!("plan {n}"), "READY").await;
    }
    // 1 + 100 + 10 000 list statements if it ran to its end.
    let heavy = "{ plans(first: 100) { nodes { feature { plans(first: 100) { nodes { feature { plans(first: 100) { nodes { title } } } } } } } } }";
    let before = server.metrics().await.get("plangraph_db_statements_total");
    let gave_up = team
        .owner
        .give_up_after(Duration::from_millis(300), heavy, json!({}))
        .await;
    assert!(gave_up, "the client gave up before the answer");
    let settled = server
        .settled_count("plangraph_db_statements_total", Duration::from_millis(300))
        .await;
    assert!(
        settled - before < 5000.0,
        "the work stopped with its client: {} of 10 101 statements ran",
        settled - before
    );
}
