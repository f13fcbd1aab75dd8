//! Workflow mutations on PostgreSQL under concurrency: race outcomes and
//! latency. Run with `cargo bench --bench mutations` (needs the machine's
//! PostgreSQL). It starts two release-built server instances on one fresh
//! database and prints:
//! - 100 concurrent claims of one plan across both instances: wins / CONFLICTs;
//! - 20 simultaneous completions of one feature: the version numbers cut;
//! - claimPlan/releasePlan latency p50/p99 at 1, 16 and 64 concurrent clients,
//!   next to a no-database baseline query at the same concurrency.

// The black-box tests' harness; a benchmark uses only part of it.
#[allow(unused)]
#[path = "../tests/api/helpers/mod.rs"]
mod helpers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use helpers::*;
use serde_json::json;

const LEVELS: [usize; 3] = [1, 16, 64];
const OPERATIONS_PER_CLIENT: usize = 40;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let backend = Backend::postgres()
        .await
        .expect("the benchmark needs PostgreSQL on 127.0.0.1:5432");
    let servers = Server::instances(backend, &["--database-max-connections", "20"]).await;
    let team = Team::new(&servers[0]).await;
    let mut agents = Vec::new();
    for index in 0..64 {
        let email = format!("bench{index}@example.com");
        agents.push(team.new_member(&servers[0], &email).await);
    }
    println!(
        "plangraph mutation benchmark: PostgreSQL, 2 instances, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    // Races.
    let plan = team.plan("contested", "READY").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let claims = (0..100).map(|index| {
        let client = servers[index % 2].as_client(&agents[index % agents.len()]);
        let (plan, barrier) = (plan.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            client.send(CLAIM, json!({ "planId": plan })).await
        })
    });
    let replies = futures::future::join_all(claims).await;
    let wins = replies
        .iter()
        .filter(|reply| reply.as_ref().is_ok_and(|r| r.errors.is_empty()))
        .count();
    let conflicts = replies
        .iter()
        .filter(|reply| {
            reply
                .as_ref()
                .is_ok_and(|r| !r.errors.is_empty() && r.code() == "CONFLICT")
        })
        .count();
    println!(
        "claims: 100 concurrent on one plan -> {wins} won, {conflicts} CONFLICT, {} other",
        100 - wins - conflicts
    );

    let mut completions = Vec::new();
    for (index, agent) in agents.iter().take(20).enumerate() {
        let plan = team.plan(&format!("complete {index}"), "READY").await;
        agent.ok(CLAIM, json!({ "planId": plan })).await;
        completions.push((servers[index % 2].as_client(agent), plan));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(completions.len()));
    let tasks = completions.into_iter().map(|(client, plan)| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            client
                .send(
                    SUBMIT,
                    json!({ "planId": plan, "artifacts": "done", "status": "COMPLETED" }),
                )
                .await
        })
    });
    let mut versions: Vec<i64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter_map(|reply| reply.ok()?.data["submitWork"]["featureVersion"]["version"].as_i64())
        .collect();
    versions.sort_unstable();
    let contiguous = versions.windows(2).all(|pair| pair[1] == pair[0] + 1);
    println!(
        "completions: 20 simultaneous -> versions {:?}..{:?}, {} distinct, contiguous: {contiguous}",
        versions.first(),
        versions.last(),
        versions.len()
    );

    // Latency: each client claims and releases its own plan in a loop.
    let mut plans = Vec::new();
    for index in 0..64 {
        plans.push(team.plan(&format!("latency {index}"), "READY").await);
    }
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>10} {:>14} {:>12}",
        "clients", "mutations/s", "p50 ms", "p99 ms", "max ms", "baseline p50", "p50 ratio"
    );
    for clients in LEVELS {
        let baseline = run_level(clients, |index| {
            let client = servers[index % 2].as_client(&agents[index]);
            async move {
                let mut samples = Vec::new();
                for _ in 0..OPERATIONS_PER_CLIENT {
                    let started = Instant::now();
                    client.ok("{ __typename }", json!({})).await;
                    samples.push(started.elapsed());
                }
                samples
            }
        })
        .await;
        let started = Instant::now();
        let samples = run_level(clients, |index| {
            let client = servers[index % 2].as_client(&agents[index]);
            let plan = plans[index].clone();
            async move {
                let mut samples = Vec::new();
                for round in 0..OPERATIONS_PER_CLIENT {
                    let query = if round % 2 == 0 { CLAIM } else { RELEASE };
                    let begun = Instant::now();
                    client.ok(query, json!({ "planId": plan })).await;
                    samples.push(begun.elapsed());
                }
                samples
            }
        })
        .await;
        let elapsed = started.elapsed();
        let p50 = percentile(&samples, 0.50);
        println!(
            "{clients:>8} {:>12.0} {:>10.2} {:>10.2} {:>10.2} {:>14.2} {:>12.1}",
            samples.len() as f64 / elapsed.as_secs_f64(),
            millis(p50),
            millis(percentile(&samples, 0.99)),
            millis(*samples.last().expect("samples")),
            millis(percentile(&baseline, 0.50)),
            p50.as_secs_f64() / percentile(&baseline, 0.50).as_secs_f64(),
        );
    }
}

/// Runs `clients` workers at once and returns all their samples, sorted.
async fn run_level<F, Fut>(clients: usize, worker: F) -> Vec<Duration>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Vec<Duration>> + Send + 'static,
{
    let tasks: Vec<_> = (0..clients)
        .map(|index| tokio::spawn(worker(index)))
        .collect();
    let mut samples: Vec<Duration> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flat_map(|joined| joined.expect("worker"))
        .collect();
    samples.sort_unstable();
    samples
}
