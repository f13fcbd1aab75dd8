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
//!
//! On loopback a GET costs CPU only, and two cores serve 50 of them no faster
//! concurrently than one after the other. So the cold page is measured a
//! second time through a relay that delays every chunk by 5 ms each way (a
//! 10 ms round trip, like GCS from the same region), where concurrency is what
//! hides the latency: once with the default `--spec-fetch-concurrency 100`
//! (the whole page at once) and once with 16, for comparison.

// The black-box tests' harness; a benchmark uses only part of it.
#[allow(unused)]
#[path = "../tests/api/helpers/mod.rs"]
mod helpers;

use std::time::{Duration, Instant};

use axum::body::Body;
use clap::Parser;
use helpers::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tower::ServiceExt;

use plangraph::config::Config;
use plangraph::shutdown::Shutdown;

/// The server binary's allocator (see `src/main.rs`), so that time measured
/// in this process is what the server would spend.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PLANS: usize = 50;
const SAMPLES: usize = 40;
const FRESH_SAMPLES: usize = 15;
const WARM_SAMPLES: usize = 300;
const ONE_WAY_LATENCY: Duration = Duration::from_millis(5);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[derive(Clone)]
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
        plangraph::app(
            &config,
            services,
            Shutdown::default(),
            None,
            tokio::runtime::Handle::current(),
        )
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
        "{name:<50} {:>9.3} {:>9.3} {samples:>8}",
        millis(summary.median),
        millis(summary.p90)
    );
}

/// A TCP relay that holds every chunk for `delay` in each direction, as a
/// network with that one-way latency would. Connection setup is not delayed.
async fn latency_relay(target: &str, delay: Duration) -> String {
    let target = target.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let address = listener.local_addr().expect("relay address");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (inbound_read, inbound_write) = inbound.into_split();
                let (outbound_read, outbound_write) = outbound.into_split();
                tokio::join!(
                    delayed_copy(inbound_read, outbound_write, delay),
                    delayed_copy(outbound_read, inbound_write, delay)
                );
            });
        }
    });
    format!("http://{address}")
}

async fn delayed_copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let reading = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer).await {
            let due = tokio::time::Instant::now() + delay;
            if sender.send((due, buffer[..read].to_vec())).is_err() {
                break;
            }
        }
    };
    let writing = async move {
        while let Some((due, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reading, writing);
}

/// `SAMPLES` single GETs on one open connection, the cache off.
async fn open_gets(setup: &Setup, objects: &[String]) -> Summary {
    let store = plangraph::spec_store(&setup.config(&["--spec-cache-bytes", "0"]))
        .await
        .expect("store");
    store.get(&objects[0]).await.expect("warm-up get");
    let mut samples = Vec::new();
    for round in 0..SAMPLES {
        let object = &objects[round % objects.len()];
        let started = Instant::now();
        store.get(object).await.expect("get");
        samples.push(started.elapsed());
    }
    summary(samples)
}

/// `SAMPLES` cold pages: the cache off, connections to GCS already open.
async fn cold_pages(setup: &Setup, extra: &[&str], key: &str, project: &str) -> Summary {
    let mut args = vec!["--spec-cache-bytes", "0"];
    args.extend_from_slice(extra);
    let app = setup.app(&args).await;
    timed(&app, key, PAGE, project).await;
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        let (elapsed, reply) = timed(&app, key, PAGE, project).await;
        assert_eq!(with_specs(&reply), PLANS);
        samples.push(elapsed);
    }
    summary(samples)
}

const PAGE: &str = "query($projectId: ID!) { plans(projectId: $projectId, first: 50) {
    nodes { id title status spec } } }";
const PAGE_WITHOUT_SPEC: &str = "query($projectId: ID!) { plans(projectId: $projectId, first: 50) {
    nodes { id title status } } }";

fn ratio(page: &Summary, get: &Summary) -> f64 {
    page.median.as_secs_f64() / get.median.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let emulator = PrivateGcs::start_in_memory().await.expect(
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
    let local = Setup {
        data_dir: database.data_dir.path().display().to_string(),
        store: format!("gcs://{bucket}/specs"),
        endpoint: emulator.gcs.endpoint.clone(),
    };
    let distant = Setup {
        endpoint: latency_relay(&emulator.gcs.endpoint, ONE_WAY_LATENCY).await,
        ..local.clone()
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

    // On loopback. One GET on a fresh client (it opens its connection).
    let mut fresh_gets = Vec::new();
    for object in objects.iter().take(FRESH_SAMPLES) {
        let store = plangraph::spec_store(&local.config(&["--spec-cache-bytes", "0"]))
            .await
            .expect("store");
        let started = Instant::now();
        store.get(object).await.expect("get");
        fresh_gets.push(started.elapsed());
    }
    let fresh_get = summary(fresh_gets);
    let open_get = open_gets(&local, &objects).await;
    // A cold page on a freshly built application, each time.
    let mut fresh_pages = Vec::new();
    for _ in 0..FRESH_SAMPLES {
        let app = local.app(&[]).await;
        let (elapsed, reply) = timed(&app, &key, PAGE, &project).await;
        assert_eq!(with_specs(&reply), PLANS);
        fresh_pages.push(elapsed);
    }
    let fresh_page = summary(fresh_pages);
    let cold_page = cold_pages(&local, &[], &key, &project).await;
    // Warm: every spec in the cache; and the same rows without spec.
    let cached = local.app(&[]).await;
    timed(&cached, &key, PAGE, &project).await;
    let mut warm_pages = Vec::new();
    let mut bare_pages = Vec::new();
    for _ in 0..WARM_SAMPLES {
        let (elapsed, reply) = timed(&cached, &key, PAGE, &project).await;
        assert_eq!(with_specs(&reply), PLANS);
        warm_pages.push(elapsed);
        bare_pages.push(timed(&cached, &key, PAGE_WITHOUT_SPEC, &project).await.0);
    }
    let warm_page = summary(warm_pages);
    let bare_page = summary(bare_pages);

    // Through the latency relay.
    let distant_get = open_gets(&distant, &objects).await;
    let distant_page = cold_pages(&distant, &[], &key, &project).await;
    let distant_page_16 = cold_pages(
        &distant,
        &["--spec-fetch-concurrency", "16"],
        &key,
        &project,
    )
    .await;

    println!(
        "plangraph spec benchmark: {PLANS} plans with ~2 KiB specs, fake-gcs-server (memory), \
         SQLite, {} cores; server time measured in process",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:<50} {:>9} {:>9} {:>8}",
        "", "median ms", "p90 ms", "samples"
    );
    println!("on loopback (default --spec-fetch-concurrency 100):");
    row("  one GET, new connection", &fresh_get, FRESH_SAMPLES);
    row("  one GET, open connection", &open_get, SAMPLES);
    row(
        "  page with spec, fresh server (cold)",
        &fresh_page,
        FRESH_SAMPLES,
    );
    row("  page with spec, cache off (cold)", &cold_page, SAMPLES);
    row("  page with spec, cached (warm)", &warm_page, WARM_SAMPLES);
    row("  page without spec", &bare_page, WARM_SAMPLES);
    println!(
        "through a relay adding {} ms each way:",
        millis(ONE_WAY_LATENCY)
    );
    row("  one GET, open connection", &distant_get, SAMPLES);
    row(
        "  page with spec, cold, concurrency 100 (default)",
        &distant_page,
        SAMPLES,
    );
    row(
        "  page with spec, cold, concurrency 16",
        &distant_page_16,
        SAMPLES,
    );
    println!(
        "cold page / one GET: loopback {:.1} (fresh server vs. new connection), {:.1} (open connections); \
         10 ms round trip {:.2} (concurrency 100, the default), {:.2} (concurrency 16); goal <= 1.5",
        ratio(&fresh_page, &fresh_get),
        ratio(&cold_page, &open_get),
        ratio(&distant_page, &distant_get),
        ratio(&distant_page_16, &distant_get),
    );
    println!(
        "warm page: {:.3} ms median server time (goal <= 1 ms), {:.3} ms more than the page without spec",
        millis(warm_page.median),
        millis(warm_page.median) - millis(bare_page.median)
    );
}
