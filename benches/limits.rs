//! What the request bounds cost and save: the server time of refusing each
//! attack of the denial-of-service review, next to `{ __typename }` (the
//! cheapest request there is) and, for the fragment fan-out, next to the same
//! document on a server whose field bound is lifted (what every request cost
//! before the bound existed). Run with `cargo bench --bench limits`.
//!
//! Everything runs in this process on SQLite with specs on disk: the
//! application is called as a tower service, so times are server time
//! (parsing, validation, execution, JSON) without a client socket.

use std::time::{Duration, Instant};

use axum::body::Body;
use clap::Parser;
use serde_json::{Value, json};
use tower::ServiceExt;

use plangraph::config::Config;
use plangraph::shutdown::Shutdown;

/// The server binary's allocator (see `src/main.rs`), so that time measured
/// in this process is what the server would spend.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SAMPLES: usize = 30;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

struct Bench {
    app: axum::Router,
    key: String,
}

impl Bench {
    async fn start(data_dir: &std::path::Path, extra: &[&str]) -> Bench {
        let dir = data_dir.display().to_string();
        let mut args = vec!["plangraph", "--data-dir", dir.as_str()];
        args.extend_from_slice(extra);
        let config = Cli::parse_from(args).config;
        let services = plangraph::services(&config).await.expect("services");
        let key = match services.user_by_email("bench@example.com").await {
            Ok(Some(user)) => {
                services
                    .create_key_for(user.id, "bench")
                    .await
                    .expect("key")
                    .token
            }
            _ => {
                services
                    .create_user_unchecked("bench@example.com", None, true)
                    .await
                    .expect("user")
                    .key
                    .token
            }
        };
        let app = plangraph::app(
            &config,
            services,
            Shutdown::default(),
            None,
            tokio::runtime::Handle::current(),
        );
        Bench { app, key }
    }

    /// One request's server time, its reply and the size of its body.
    async fn run(&self, query: &str, variables: Value) -> (Duration, Value, usize) {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let request = axum::http::Request::post("/graphql")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.key))
            .body(Body::from(body))
            .expect("request");
        let started = Instant::now();
        let response = self.app.clone().oneshot(request).await.expect("response");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let elapsed = started.elapsed();
        (
            elapsed,
            serde_json::from_slice(&bytes).expect("JSON"),
            bytes.len(),
        )
    }

    async fn ok(&self, query: &str, variables: Value) -> Value {
        let (_, reply, _) = self.run(query, variables).await;
        assert!(reply["errors"].is_null(), "errors: {}", reply["errors"]);
        reply["data"].clone()
    }

    /// Median server time over `samples` runs; checks the first reply.
    async fn median(
        &self,
        samples: usize,
        query: &str,
        variables: Value,
        check: impl Fn(&Value),
    ) -> (Duration, usize) {
        let mut times = Vec::with_capacity(samples);
        let mut size = 0;
        for sample in 0..samples {
            let (elapsed, reply, bytes) = self.run(query, variables.clone()).await;
            if sample == 0 {
                check(&reply);
                size = bytes;
            }
            times.push(elapsed);
        }
        times.sort();
        (times[times.len() / 2], size)
    }
}

fn refused(reply: &Value) {
    assert_eq!(
        reply["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{reply}"
    );
    assert!(reply["data"].is_null(), "refused before execution: {reply}");
}

fn fan_out(levels: usize, fan: usize) -> String {
    let mut query = String::from("{ ...G0 }");
    for level in 0..levels {
        let spreads = format!("...G{} ", level + 1).repeat(fan);
        query.push_str(&format!(" fragment G{level} on Query {{ {spreads} }}"));
    }
    query.push_str(&format!(" fragment G{levels} on Query {{ __typename }}"));
    query
}

fn milliseconds(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let bench = Bench::start(data_dir.path(), &[]).await;

    // Data for the list and spec attacks: 100 plans, one with a 1 MiB spec.
    let project = bench
        .ok(
            "mutation { createProject(name: \"Bench\") { id } }",
            json!({}),
        )
        .await["createProject"]["id"]
        .clone();
    let feature = bench
        .ok(
            "mutation($p: ID!) { createFeature(projectId: $p, title: \"F\", specContent: \"# F\") { id } }",
            json!({ "p": project }),
        )
        .await["createFeature"]["id"]
        .clone();
    let create = "mutation($f: ID!, $t: String!, $s: String!) { createPlan(featureId: $f, title: $t, specContent: $s) { id } }";
    let mut big = Value::Null;
    for index in 0..100 {
        let spec = if index == 0 {
            "x".repeat(1024 * 1024)
        } else {
            format!("# Plan {index}")
        };
        let created = bench
            .ok(
                create,
                json!({ "f": feature, "t": format!("plan {index}"), "s": spec }),
            )
            .await;
        if index == 0 {
            big = created["createPlan"]["id"].clone();
        }
    }

    let (baseline, _) = bench
        .median(SAMPLES, "{ __typename }", json!({}), |reply| {
            assert_eq!(reply["data"]["__typename"], "Query");
        })
        .await;
    println!(
        "baseline {{ __typename }}: {:.3} ms server time (median of {SAMPLES})",
        milliseconds(baseline)
    );
    println!(
        "attack                                               refused in   × baseline   response"
    );

    let report = |name: &str, time: Duration, bytes: usize| {
        println!(
            "{name:<52} {:>8.3} ms {:>10.1}× {:>10} B",
            milliseconds(time),
            time.as_secs_f64() / baseline.as_secs_f64(),
            bytes
        );
    };

    let fan = fan_out(7, 10);
    let (time, bytes) = bench.median(SAMPLES, &fan, json!({}), refused).await;
    report("fragment fan-out, 10^7 fields (950 bytes)", time, bytes);
    let fan_out_refused = time;

    let aliases: String = (0..2001).map(|n| format!("a{n}: __typename ")).collect();
    let (time, bytes) = bench
        .median(SAMPLES, &format!("{{ {aliases} }}"), json!({}), refused)
        .await;
    report("2 001 aliases", time, bytes);

    let nested = "{ plans(first: 100) { nodes { feature { plans(first: 100) { nodes { feature { plans(first: 100) { nodes { title } } } } } } } } }";
    let (time, bytes) = bench.median(SAMPLES, nested, json!({}), refused).await;
    report("plans(first: 100) nested three deep", time, bytes);

    let spec_aliases: String = (0..2000)
        .map(|n| format!("p{n}: plan(id: $id) {{ spec }} "))
        .collect();
    let (time, bytes) = bench
        .median(
            5,
            &format!("query($id: ID!) {{ {spec_aliases} }}"),
            json!({ "id": big }),
            refused,
        )
        .await;
    report("2 000 aliases of a 1 MiB spec", time, bytes);

    let some_aliases: String = (0..200)
        .map(|n| format!("p{n}: plan(id: $id) {{ spec }} "))
        .collect();
    let (time, bytes) = bench
        .median(
            5,
            &format!("query($id: ID!) {{ {some_aliases} }}"),
            json!({ "id": big }),
            |reply| {
                let served = reply["data"].as_object().map_or(0, |fields| {
                    fields
                        .values()
                        .filter(|plan| plan["spec"].is_string())
                        .count()
                });
                assert_eq!(served, 16, "16 MiB of specs, then refusals");
            },
        )
        .await;
    report("200 aliases of a 1 MiB spec (16 served)", time, bytes);

    let introspection = |count: usize| {
        let one = "__schema { types { name description fields { name description } } }";
        let aliases: String = (0..count).map(|n| format!("s{n}: {one} ")).collect();
        format!("{{ {aliases} }}")
    };
    let (time, bytes) = bench
        .median(SAMPLES, &introspection(285), json!({}), refused)
        .await;
    report("285 aliased introspections (20 KB)", time, bytes);
    let (time, bytes) = bench
        .median(SAMPLES, &introspection(1), json!({}), |reply| {
            assert!(reply["data"]["s0"]["types"].is_array(), "{reply}");
        })
        .await;
    report("one introspection, served (for scale)", time, bytes);

    let blockers = "{ plans(first: 100) { nodes { blockedBy { blockedBy { blockedBy { blockedBy { id } } } } } } }";
    let (time, bytes) = bench.median(SAMPLES, blockers, json!({}), refused).await;
    report("blockedBy nested four deep", time, bytes);

    let priorities: Vec<i32> = (0..200_000).map(|n| n % 5).collect();
    let (time, bytes) = bench
        .median(
            5,
            "query($p: [Int!]) { plans(priority: $p) { totalCount } }",
            json!({ "p": priorities }),
            refused,
        )
        .await;
    report("plans(priority:) with 200 000 values", time, bytes);

    // Diffs: 40 revisions of a 2 000-line spec, every line changed each
    // time; one request asks for a diff of every revision.
    let rewritten = bench
        .ok(
            create,
            json!({ "f": feature, "t": "rewritten", "s": "# start" }),
        )
        .await["createPlan"]["id"]
        .clone();
    for revision in 0..40 {
        let spec: String = (0..2000)
            .map(|line| {
                format!(
                    "line {line} of revision {revision}: {}\n",
                    (line * 7919 + revision * 104_729) % 1_000_003
                )
            })
            .collect();
        bench
            .ok(
                "mutation($id: ID!, $s: String!) { updatePlan(planId: $id, specContent: $s) { id } }",
                json!({ "id": rewritten, "s": spec }),
            )
            .await;
    }
    let (time, bytes) = bench
        .median(
            5,
            "query($id: ID!) { plan(id: $id) { specRevisions(last: 40) { diff(from: 1) { added } } } }",
            json!({ "id": rewritten }),
            |reply| {
                let refusals = reply["errors"].as_array().map_or(0, Vec::len);
                assert_eq!(refusals, 24, "16 of 40 diffs computed: {}", reply["errors"]);
            },
        )
        .await;
    report("40 diffs of 2 000 changed lines (16 computed)", time, bytes);

    // The same fan-out on a server that lets it through validation: what
    // every such request cost before the bound.
    let unbounded_dir = tempfile::tempdir().expect("temp dir");
    let unbounded = Bench::start(
        unbounded_dir.path(),
        &[
            "--max-query-fields",
            "1000000000",
            "--max-query-complexity",
            "1000000000",
        ],
    )
    .await;
    let smaller = fan_out(6, 10);
    let (time, _) = unbounded.median(3, &smaller, json!({}), |_| {}).await;
    println!(
        "without the field bound, a 10^6-field fan-out costs {:.1} ms ({:.0}× the refusal of a 10^7 one)",
        milliseconds(time),
        time.as_secs_f64() / fan_out_refused.as_secs_f64()
    );
}
