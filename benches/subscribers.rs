//! Live fan-out under load: N WebSocket subscribers on one project of one
//! server, 20 mutations 200 ms apart. Run with
//! `cargo bench --bench subscribers` (default N = 1000 and 10000; pass other
//! counts as arguments after `--`). The server is a separate, release-built
//! process on SQLite; this process is the load client. Prints, per N:
//! mutation → delivery latency p50/p99/max, deliveries received/expected, the
//! mutations' own latency next to a baseline with no subscribers, and server
//! memory per idle subscriber.

// The black-box tests' harness; a benchmark uses only part of it.
#[allow(unused)]
#[path = "../tests/api/helpers/mod.rs"]
mod helpers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use helpers::*;
use serde_json::json;
use tokio::sync::Mutex;

const MUTATIONS: usize = 20;
const SPACING: Duration = Duration::from_millis(200);
const QUERY: &str = "subscription($projectId: ID) { planEvents(projectId: $projectId) { cursor kind toStatus plan { id status } } }";

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Toggles a plan DRAFT ↔ READY `count` times, `SPACING` apart; returns when
/// each mutation was sent and how long it took.
async fn drive(team: &Team, plan: &str, count: usize) -> Vec<(Instant, Duration)> {
    let mut sent = Vec::new();
    let mut ticker = tokio::time::interval(SPACING);
    for index in 0..count {
        ticker.tick().await;
        let status = if index % 2 == 0 { "DRAFT" } else { "READY" };
        let started = Instant::now();
        team.owner
            .ok(SET_STATUS, json!({ "planId": plan, "status": status }))
            .await;
        sent.push((started, started.elapsed()));
    }
    sent
}

#[tokio::main]
async fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1_000, 10_000]
    } else {
        counts
    };
    println!(
        "plangraph subscription fan-out: SQLite, one server process, {} cores shared by server and load client",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:>8} {:>18} {:>9} {:>9} {:>9} {:>14} {:>14} {:>14} {:>12}",
        "subs",
        "delivered",
        "p50 ms",
        "p99 ms",
        "max ms",
        "mutation p50",
        "no-subs p50",
        "mutation max",
        "KiB/sub"
    );
    for count in counts {
        run(count).await;
    }
}

async fn run(count: usize) {
    let server = Server::start(Backend::Sqlite).await;
    let pid = server.pid();
    let team = Team::new(&server).await;
    let plan = team.plan("watched", "READY").await;

    let baseline = drive(&team, &plan, MUTATIONS).await;
    let mut baseline_latency: Vec<Duration> = baseline.iter().map(|(_, took)| *took).collect();
    baseline_latency.sort_unstable();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory_before = rss_bytes(pid);
    let subscribers: Vec<Subscriber> = futures::stream::iter(0..count)
        .map(|_| {
            let (base, key) = (server.base_url.clone(), team.viewer.key().to_owned());
            let project = team.project.clone();
            async move {
                let mut subscriber = Subscriber::connect(&base, &key).await;
                subscriber
                    .subscribe(QUERY, json!({ "projectId": project }))
                    .await;
                subscriber
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory_idle = rss_bytes(pid);
    let per_subscriber = memory_idle.saturating_sub(memory_before) as f64 / count as f64 / 1024.0;

    // Every subscriber records when it received each event.
    let arrivals: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut subscriber| {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut received = Vec::with_capacity(MUTATIONS);
                for index in 0..MUTATIONS {
                    match subscriber.next_delivery(Duration::from_secs(30)).await {
                        Some((_, Delivery::Data(_))) => received.push((index, Instant::now())),
                        _ => break,
                    }
                }
                arrivals.lock().await.extend(received);
                subscriber
            })
        })
        .collect();
    let sent = drive(&team, &plan, MUTATIONS).await;
    let subscribers: Vec<Subscriber> = futures::future::join_all(readers)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();

    let arrivals = arrivals.lock().await;
    let mut delivery: Vec<Duration> = arrivals
        .iter()
        .map(|(index, at)| at.saturating_duration_since(sent[*index].0))
        .collect();
    delivery.sort_unstable();
    let mut mutation: Vec<Duration> = sent.iter().map(|(_, took)| *took).collect();
    mutation.sort_unstable();
    println!(
        "{count:>8} {:>18} {:>9.1} {:>9.1} {:>9.1} {:>14.2} {:>14.2} {:>14.2} {:>12.1}",
        format!("{}/{}", arrivals.len(), count * MUTATIONS),
        millis(percentile(&delivery, 0.50)),
        millis(percentile(&delivery, 0.99)),
        millis(delivery.last().copied().unwrap_or_default()),
        millis(percentile(&mutation, 0.50)),
        millis(percentile(&baseline_latency, 0.50)),
        millis(mutation.last().copied().unwrap_or_default()),
        per_subscriber,
    );
    drop(arrivals);
    for subscriber in subscribers {
        subscriber.disconnect().await;
    }
    server.stop().await;
}
