//! Hostile input and crashes: the server never panics or answers 500, stays
//! up, and a SIGKILL loses nothing it acknowledged.
//!
//! The fuzz test runs a bounded number of generated cases (300 by default);
//! set PLANGRAPH_FUZZ_CASES=100000 to run longer, and PLANGRAPH_FUZZ_SEED to
//! replay a run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    survives_random_and_malformed_requests,
    acknowledged_writes_survive_sigkill
);

/// A small deterministic generator (xorshift), so a failing seed replays.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SEEDS: [&str; 6] = [
    "{ plans(first: 5) { nodes { id title spec claimedBy { email } } } }",
    "mutation($f: ID!) { createPlan(featureId: $f, title: \"t\", specContent: \"s\") { id } }",
    "query($id: ID!) { plan(id: $id) { events { kind } feature { versions { version } } } }",
    "mutation { setPlanStatus(planId: \"x\", status: READY) { id } }",
    "{ projects { features(first: 2) { nodes { planCounts { total } } } } }",
    "subscription { planEvents { cursor } }",
];

/// One generated request body and content type.
fn generate(random: &mut Random, feature: &str) -> (Vec<u8>, &'static str) {
    let content_type = *random.pick(&[
        "application/json",
        "application/json",
        "text/plain",
        "application/graphql",
        "multipart/form-data",
    ]);
    let body = match random.below(12) {
        // A valid document with characters deleted, duplicated or inserted.
        0 | 1 => {
            let mut query: Vec<char> = random.pick(&SEEDS).chars().collect();
            for _ in 0..=random.below(6) {
                let at = random.below(query.len().max(1));
                match random.below(3) {
                    0 if !query.is_empty() => {
                        query.remove(at);
                    }
                    1 => query.insert(
                        at,
                        *random
                            .pick(&['{', '}', '(', ')', '$', '"', ':', '!', '@', '\\', '\0', 'é']),
                    ),
                    _ => {
                        let copy = query[at..].iter().take(5).copied().collect::<Vec<_>>();
                        query.splice(at..at, copy);
                    }
                }
            }
            json!({ "query": query.into_iter().collect::<String>() })
                .to_string()
                .into_bytes()
        }
        // Variables of the wrong types.
        2 => {
            let wrong = random
                .pick(&[
                    json!(42),
                    json!(true),
                    json!([1, 2]),
                    json!({ "a": 1 }),
                    json!(null),
                    json!(-1.5),
                ])
                .clone();
            json!({ "query": SEEDS[1], "variables": { "f": wrong } })
                .to_string()
                .into_bytes()
        }
        // Huge strings.
        3 => {
            let huge = "x".repeat(*random.pick(&[300, 70_000, 1_100_000]));
            let query = "mutation($f: ID!, $t: String!) { createPlan(featureId: $f, title: $t, specContent: $t) { id } }";
            json!({ "query": query, "variables": { "f": feature, "t": huge } })
                .to_string()
                .into_bytes()
        }
        // Deep nesting.
        4 => {
            let depth = *random.pick(&[50, 500, 5_000]);
            let query = format!(
                "{}{}",
                "{ plans { nodes { feature ".repeat(depth),
                "}".repeat(depth * 3)
            );
            json!({ "query": query }).to_string().into_bytes()
        }
        // Invalid UTF-8.
        5 => {
            let mut bytes = br#"{"query": "{ viewer { email } }"}"#.to_vec();
            let at = random.below(bytes.len());
            bytes.insert(at, *random.pick(&[0xff, 0xc3, 0x80, 0xfe]));
            bytes
        }
        // Random bytes.
        6 => (0..random.below(512))
            .map(|_| random.next() as u8)
            .collect(),
        // Fragments spreading each other many times over.
        8 => {
            let (levels, fan) = (1 + random.below(8), 1 + random.below(12));
            let mut query = String::from("{ ...F0 }");
            for level in 0..levels {
                let spreads = format!("...F{} ", level + 1).repeat(fan);
                query.push_str(&format!(" fragment F{level} on Query {{ {spreads} }}"));
            }
            let leaf = random.pick(&[
                "__typename",
                "plans { nodes { spec } }",
                "projects { name }",
            ]);
            query.push_str(&format!(" fragment F{levels} on Query {{ {leaf} }}"));
            json!({ "query": query }).to_string().into_bytes()
        }
        // Many aliases of one field.
        9 => {
            let count = *random.pick(&[10, 500, 2_500]);
            let field = random.pick(&[
                "__typename",
                "viewer { email }",
                "plans(first: 100) { nodes { title spec } }",
            ]);
            let aliases: String = (0..count).map(|n| format!("a{n}: {field} ")).collect();
            json!({ "query": format!("{{ {aliases} }}") })
                .to_string()
                .into_bytes()
        }
        // Lists nested in lists, with any page size.
        10 => {
            let depth = 1 + random.below(5);
            let mut query = String::from("title");
            for _ in 0..depth {
                let page = random.pick(&["0", "1", "20", "100", "1000", "-5"]);
                query = format!("plans(first: {page}) {{ nodes {{ feature {{ {query} }} }} }}");
            }
            json!({ "query": format!("{{ {query} }}") })
                .to_string()
                .into_bytes()
        }
        // The fields whose cost grows with what is asked: dependency lists
        // nested to any depth, revisions with diffs, aliased introspection,
        // and long list arguments.
        11 => {
            let query = match random.below(4) {
                0 => {
                    let mut selection = String::from("id");
                    for _ in 0..=random.below(8) {
                        let list = random.pick(&["blockedBy", "blocks"]);
                        selection = format!("{list} {{ title {selection} }}");
                    }
                    format!(
                        "{{ plans(first: {}) {{ nodes {{ {selection} }} }} }}",
                        random.pick(&[1, 20, 100])
                    )
                }
                1 => {
                    let from = random.pick(&["", "(from: 1)", "(from: -3)", "(from: 99999)"]);
                    let last = random.pick(&["", "(last: 100)", "(last: 1000)", "(last: -1)"]);
                    format!(
                        "{{ plans(first: {}) {{ nodes {{ specRevisions{last} {{ number spec diff{from} {{ unified }} }} specDrift {{ diff {{ added }} }} }} }} }}",
                        random.pick(&[1, 50, 100])
                    )
                }
                2 => {
                    let count = *random.pick(&[1, 5, 50, 300]);
                    let one = random.pick(&[
                        "__schema { types { name description fields { name args { name } } } }",
                        "__type(name: \"Plan\") { fields { name description } }",
                    ]);
                    let aliases: String = (0..count).map(|n| format!("i{n}: {one} ")).collect();
                    format!("{{ {aliases} }}")
                }
                _ => {
                    let count = *random.pick(&[5, 101, 20_000]);
                    let values: Vec<String> = (0..count).map(|n| (n % 7).to_string()).collect();
                    let argument = random.pick(&["priority", "status"]);
                    let values = if *argument == "status" {
                        vec!["READY"; count].join(" ")
                    } else {
                        values.join(" ")
                    };
                    format!("{{ plans({argument}: [{values}]) {{ totalCount }} }}")
                }
            };
            json!({ "query": query }).to_string().into_bytes()
        }
        // JSON that is not a GraphQL request.
        _ => random
            .pick(&[
                json!([]),
                json!({ "query": 5 }),
                json!({ "variables": {} }),
                json!("query"),
                json!({ "query": "{ viewer { email } }", "operationName": 7 }),
            ])
            .to_string()
            .into_bytes(),
    };
    (body, content_type)
}

async fn survives_random_and_malformed_requests(backend: Backend) {
    let server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let cases: usize = std::env::var("PLANGRAPH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("PLANGRAPH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_2026);
    let mut random = Random(seed);
    let http = reqwest::Client::new();
    for case in 0..cases {
        let (body, content_type) = generate(&mut random, &team.feature);
        let mut request = http
            .post(format!("{}/graphql", server.base_url))
            .header("content-type", content_type)
            .body(body.clone());
        if random.below(4) > 0 {
            request = request.bearer_auth(team.owner.key());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("case {case} (seed {seed}): no answer: {error}"));
        let status = response.status();
        assert!(
            status.as_u16() < 500,
            "case {case} (seed {seed}): status {status} for {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        let reply: Value = response
            .json()
            .await
            .unwrap_or_else(|_| panic!("case {case}: body is not JSON"));
        for error in reply["errors"].as_array().into_iter().flatten() {
            assert!(
                error["extensions"]["code"].is_string(),
                "case {case}: error without code: {error}"
            );
            assert_ne!(
                error["extensions"]["code"], "INTERNAL",
                "case {case}: a client's mistake is never the server's: {error}"
            );
            let message = error["message"].as_str().unwrap_or_default();
            assert!(
                !message.contains("panicked") && !message.contains("sqlx"),
                "case {case}: internals leaked: {message}"
            );
        }
    }
    let health = reqwest::get(format!("{}/healthz", server.base_url))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200, "still up after {cases} cases");
    team.owner.ok("{ viewer { email } }", json!({})).await;
}

/// What the writers were told succeeded.
#[derive(Default, Clone)]
struct Acknowledged {
    created: Vec<String>,
    completed: HashMap<String, i64>,
}

async fn acknowledged_writes_survive_sigkill(backend: Backend) {
    let mut server = Server::start(backend).await;
    let team = Team::new(&server).await;
    let keys = [team.owner.key().to_owned(), team.worker.key().to_owned()];
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let mut random = Random(0xc0ffee);
    for round in 0..3 {
        let completed_before = acknowledged.lock().expect("lock").completed.len();
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let client = server.client(&keys[writer % 2]);
                let feature = team.feature.clone();
                let acknowledged = acknowledged.clone();
                tokio::spawn(async move {
                    for step in 0.. {
                        let title = format!("round {round} writer {writer} step {step}");
                        let spec = format!("# {title}\n\n{}", "body ".repeat(50));
                        let reply = client
                            .try_send(CREATE_PLAN, json!({ "featureId": feature, "title": title, "spec": spec, "status": "READY" }))
                            .await;
                        let Some(reply) = reply.filter(|reply| reply.errors.is_empty()) else { return };
                        let plan = reply.data["createPlan"]["id"].as_str().expect("id").to_owned();
                        acknowledged.lock().expect("lock").created.push(plan.clone());
                        if client.try_send(CLAIM, json!({ "planId": plan })).await.is_none() {
                            return;
                        }
                        let submit = json!({ "planId": plan, "artifacts": "done", "status": "COMPLETED" });
                        let Some(reply) = client.try_send(SUBMIT, submit).await else { return };
                        if let Some(version) = reply.data["submitWork"]["featureVersion"]["version"].as_i64() {
                            acknowledged.lock().expect("lock").completed.insert(plan, version);
                        }
                    }
                })
            })
            .collect();
        // Completions are at stake in every crash, however slow the machine.
        eventually(Duration::from_secs(60), async || {
            let completed = acknowledged.lock().expect("lock").completed.len();
            (completed > completed_before).then_some(())
        })
        .await;
        // Not a wait for the server: the crash strikes at a random moment of
        // the load, which is what this test is about.
        tokio::time::sleep(Duration::from_millis(random.below(900) as u64)).await;
        let database = server.kill().await;
        for writer in writers {
            writer.await.expect("writer task");
        }
        server = Server::relaunch(database).await;
        let snapshot = acknowledged.lock().expect("lock").clone();
        verify(&server, &team, &snapshot).await;
    }
}

async fn verify(server: &Server, team: &Team, acknowledged: &Acknowledged) {
    let owner = server.client(team.owner.key());
    let mut plans: HashMap<String, Value> = HashMap::new();
    let mut after = Value::Null;
    loop {
        let page = owner
            .ok(
                "query($f: ID!, $after: String) { plans(featureId: $f, first: 100, after: $after) {
                   nodes { id status spec claimedBy { id } implementedVersion } pageInfo { hasNextPage endCursor } } }",
                json!({ "f": team.feature, "after": after }),
            )
            .await;
        for node in page["plans"]["nodes"].as_array().expect("nodes") {
            plans.insert(node["id"].as_str().expect("id").to_owned(), node.clone());
        }
        if page["plans"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["plans"]["pageInfo"]["endCursor"].clone();
    }
    for id in &acknowledged.created {
        assert!(
            plans.contains_key(id),
            "acknowledged plan {id} is missing after the crash"
        );
    }
    for (id, version) in &acknowledged.completed {
        let plan = &plans[id];
        assert_eq!(
            plan["status"], "COMPLETED",
            "acknowledged completion of {id} lost"
        );
        assert_eq!(plan["implementedVersion"], *version);
    }
    for plan in plans.values() {
        assert!(
            plan["spec"].is_string(),
            "every plan's spec object exists: {plan}"
        );
        if plan["status"] == "CLAIMED" || plan["status"] == "IN_PROGRESS" {
            assert!(
                plan["claimedBy"]["id"].is_string(),
                "a claimed plan has a claimer: {plan}"
            );
        }
    }
    // Versions are contiguous: v1 at creation, then one per completion,
    // each named by its plan.
    let current = owner
        .ok(
            "query($f: ID!) { feature(id: $f) { currentVersion } }",
            json!({ "f": team.feature }),
        )
        .await["feature"]["currentVersion"]
        .as_i64()
        .expect("current");
    let mut implemented: Vec<i64> = plans
        .values()
        .filter(|plan| plan["status"] == "COMPLETED")
        .map(|plan| plan["implementedVersion"].as_i64().expect("a version"))
        .collect();
    implemented.sort_unstable();
    assert_eq!(
        implemented,
        (2..=current).collect::<Vec<_>>(),
        "versions are contiguous"
    );
}
