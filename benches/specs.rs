//! Reading specs from GCS: a page of 50 plans with `spec`, cold and warm,
//! next to one single object GET, all against a local GCS emulator in the
//! same run. Run with `cargo bench --bench specs` after `bash scripts/test.sh`
//! has installed the emulator once; it starts an emulator of its own.
//!
//! Data is created through a real server process; the timings then run the
//! same application in this process (`plangraph::services` + `plangraph::app`,
//! called as a tower service), so they are server time: authentication,
//! database, GraphQL, spec store and JSON, without a client socket.
//! - one GET: `SpecStore::get` of one object with the cache off;
//! - cold page, fresh server: the first page of a freshly built application
//!   (empty cache, no open connection to GCS yet);
//! - cold page, open connections: the cache off, connections already open;
//! - warm page: every spec in the cache;
//! - page without spec: the same 50 rows without `spec`, for reference.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use clap::Parser;
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use plangraph::config::Config;
use plangraph::shutdown::Shutdown;

const PLANS: usize = 50;
const SAMPLES: usize = 40;
const FRESH_SAMPLES: usize = 15;
const WARM_SAMPLES: usize = 300;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

struct Setup {
    data_dir: String,
    store: String,
    endpoint: String,
}

impl Setup {
    fn config(&self, extra: &[&str]) -> Config {
        let mut args = vec!["plangraph", "--data-dir", &self.data_dir];
        args.extend([
            "--spec-store",
            &self.store,
            "--gcs-endpoint",
            &self.endpoint,
        ]);
        args.extend_from_slice(extra);
        Cli::parse_from(args).config
    }

    async fn app(&self, extra: &[&str]) -> axum::Router {
        let config = self.config(extra);
        let services = plangraph::services(&config).await.expect("services");
        // No Prometheus recorder: only the spec counters matter here.
        plangraph::app(&config, services, Shutdown::default(), None)
    }
}

/// A spec of about 2 KiB, like a plan with a few sections.
fn spec(index: usize) -> String {
    let mut text = format!("# Plan {index}\n\n## Context\n");
    while text.len() < 2048 {
        text.push_str("Users sign in with Google; sessions last a week and renew on use.\n");
    }
    text
}

/// Runs one GraphQL request through the application and returns its time.
async fn timed(app: &axum::Router, key: &str, query: &str, project: &str) -> (Duration, Value) {
    let body = json!({ "query": query, "variables": { "projectId": project } }).to_string();
    let request = axum::http::Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body))
        .expect("request");
    let started = Instant::now();
    let response = app.clone().oneshot(request).await.expect("response");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let elapsed = started.elapsed();
    let reply: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert!(reply["errors"].is_null(), "errors: {}", reply["errors"]);
    (elapsed, reply)
}

fn with_specs(reply: &Value) -> usize {
    reply["data"]["plans"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|node| node["spec"].as_str().is_some_and(|spec| spec.len() >= 2048))
        .count()
}

struct Summary {
    median: Duration,
    p90: Duration,
}

fn summary(mut samples: Vec<Duration>) -> Summary {
    samples.sort_unstable();
    let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction).round() as usize];
    Summary {
        median: at(0.5),
        p90: at(0.9),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn row(name: &str, summary: &Summary, samples: usize) {
    println!(
        "{name:<42} {:>9.3} {:>9.3} {samples:>8}",
        millis(summary.median),
        millis(summary.p90)
    );
}

#[tokio::main]
async fn main() {
    let emulator = PrivateGcs::start().await.expect(
        "the benchmark needs the GCS emulator; run `bash scripts/test.sh` once to install it",
    );
    let (server, bucket) = Server::start_on_gcs(&emulator.gcs, &[]).await;
    let team = Team::new(&server).await;
    for index in 0..PLANS {
        team.owner
            .ok(
                CREATE_PLAN,
                json!({ "featureId": team.feature, "title": format!("plan {index}"), "spec": spec(index) }),
            )
            .await;
    }
    let key = team.owner.key().to_owned();
    let project = team.project.clone();
    let database = server.stop().await;
    let setup = Setup {
        data_dir: database.data_dir.path().display().to_string(),
        store: format!("gcs://{bucket}/specs"),
        endpoint: emulator.gcs.endpoint.clone(),
    };
    let objects: Vec<String> = emulator
        .gcs
        .objects(&bucket)
        .await
        .iter()
        .filter_map(|object| object["name"].as_str())
        .filter(|name| name.contains("/plans/"))
        .map(|name| name.trim_start_matches("specs/").to_owned())
        .collect();
    assert_eq!(objects.len(), PLANS);

    let page = "query($projectId: ID!) { plans(projectId: $projectId, first: 50) {
        nodes { id title status spec } } }";
    let page_without_spec = "query($projectId: ID!) { plans(projectId: $projectId, first: 50) {
        nodes { id title status } } }";
    let no_cache = ["--spec-cache-bytes", "0"];

    // One GET, on a fresh client (opens its connection) and on an open one.
    let mut fresh_gets = Vec::new();
    for object in objects.iter().take(FRESH_SAMPLES) {
        let store = plangraph::spec_store(&setup.config(&no_cache))
            .await
            .expect("store");
        let started = Instant::now();
        store.get(object).await.expect("get");
        fresh_gets.push(started.elapsed());
    }
    let store = plangraph::spec_store(&setup.config(&no_cache))
        .await
        .expect("store");
    store.get(&objects[0]).await.expect("warm-up get");
    let mut open_gets = Vec::new();
    for round in 0..SAMPLES {
        let object = &objects[round % objects.len()];
        let started = Instant::now();
        store.get(object).await.expect("get");
        open_gets.push(started.elapsed());
    }

    // A cold page on a freshly built application, each time.
    let mut fresh_pages = Vec::new();
    for _ in 0..FRESH_SAMPLES {
        let app = setup.app(&[]).await;
        let (elapsed, reply) = timed(&app, &key, page, &project).await;
        assert_eq!(with_specs(&reply), PLANS);
        fresh_pages.push(elapsed);
    }

    // A cold page with the cache off and connections to GCS already open.
    let uncached = setup.app(&no_cache).await;
    timed(&uncached, &key, page, &project).await;
    let mut cold_pages = Vec::new();
    for _ in 0..SAMPLES {
        let (elapsed, reply) = timed(&uncached, &key, page, &project).await;
        assert_eq!(with_specs(&reply), PLANS);
        cold_pages.push(elapsed);
    }

    // Warm: every spec in the cache; and the same rows without spec.
    let cached = setup.app(&[]).await;
    timed(&cached, &key, page, &project).await;
    let mut warm_pages = Vec::new();
    let mut bare_pages = Vec::new();
    for _ in 0..WARM_SAMPLES {
        let (elapsed, reply) = timed(&cached, &key, page, &project).await;
        assert_eq!(with_specs(&reply), PLANS);
        warm_pages.push(elapsed);
        bare_pages.push(timed(&cached, &key, page_without_spec, &project).await.0);
    }

    let fresh_get = summary(fresh_gets);
    let open_get = summary(open_gets);
    let fresh_page = summary(fresh_pages);
    let cold_page = summary(cold_pages);
    let warm_page = summary(warm_pages);
    let bare_page = summary(bare_pages);
    println!(
        "plangraph spec benchmark: {PLANS} plans, ~2 KiB specs, fake-gcs-server on 127.0.0.1, \
         SQLite, {} cores, --spec-fetch-concurrency 16; server time in process",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:<42} {:>9} {:>9} {:>8}",
        "", "median ms", "p90 ms", "samples"
    );
    row("one GET, new connection", &fresh_get, FRESH_SAMPLES);
    row("one GET, open connection", &open_get, SAMPLES);
    row(
        "page of 50 with spec, fresh server (cold)",
        &fresh_page,
        FRESH_SAMPLES,
    );
    row(
        "page of 50 with spec, cache off (cold)",
        &cold_page,
        SAMPLES,
    );
    row(
        "page of 50 with spec, cached (warm)",
        &warm_page,
        WARM_SAMPLES,
    );
    row("page of 50 without spec", &bare_page, WARM_SAMPLES);
    let ratio =
        |page: &Summary, get: &Summary| page.median.as_secs_f64() / get.median.as_secs_f64();
    println!(
        "cold / one GET: {:.2} (fresh server vs. new connection), {:.2} (cache off vs. open connection); goal <= 1.5",
        ratio(&fresh_page, &fresh_get),
        ratio(&cold_page, &open_get)
    );
    println!(
        "warm page server time: {:.3} ms median (goal <= 1 ms); {:.3} ms more than without spec",
        millis(warm_page.median),
        millis(warm_page.median) - millis(bare_page.median)
    );
}
