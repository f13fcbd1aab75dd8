//! A fleet of agents draining a project on PostgreSQL: `claimNextPlan`
//! against the naive pattern (list READY, claim the first, retry on
//! CONFLICT), in one run. Run with `cargo bench --bench fleet` (needs the
//! machine's PostgreSQL). It starts two release-built server instances on
//! one fresh database and, for 1, 16 and 64 agents spread over both, drains
//! 2 000 READY plans with each pattern (each run in a project of its own),
//! printing successful claims per second, claim latency p50/p99 (for the
//! naive pattern: from the first list to the claim that won) and CONFLICTs.
//! A run stops early after `RUN_BUDGET`; its rate is then over what it drained.
//!
//! Goals printed with met / not met: at 64 agents claimNext drains ≥ 5× as
//! many plans per second as the naive pattern, with zero CONFLICTs; at 1
//! agent its p50 is ≤ 1.5× a plain `claimPlan`'s.

// The black-box tests' harness; a benchmark uses only part of it.
#[allow(unused)]
#[path = "../tests/api/helpers/mod.rs"]
mod helpers;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use helpers::*;
use serde_json::json;

const LEVELS: [usize; 3] = [1, 16, 64];
const PLANS: usize = 2_000;
/// The longest one run may take; a slower one reports the rate it reached.
const RUN_BUDGET: Duration = Duration::from_secs(60);

const CLAIM_NEXT: &str =
    "mutation($project: ID!) { claimNextPlan(projectId: $project) { id claimToken } }";
const FIRST_READY: &str = "query($project: ID!) {
    plans(projectId: $project, status: [READY], first: 1) { nodes { id } } }";
const CLAIM_ONE: &str = "mutation($id: ID!) { claimPlan(planId: $id) { id } }";

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// What one run measured.
#[derive(Default)]
struct Run {
    claims: usize,
    conflicts: usize,
    elapsed: Duration,
    /// Per successful claim, sorted.
    latencies: Vec<Duration>,
    /// The naive pattern's `claimPlan` calls alone (won or not), sorted.
    plain_claims: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.claims as f64 / self.elapsed.as_secs_f64()
    }
}

/// What one agent saw.
#[derive(Default)]
struct AgentLog {
    latencies: Vec<Duration>,
    plain_claims: Vec<Duration>,
    conflicts: usize,
}

#[tokio::main]
async fn main() {
    let backend = Backend::postgres()
        .await
        .expect("the benchmark needs PostgreSQL on 127.0.0.1:5432");
    let servers = Server::instances(backend, &["--database-max-connections", "20"]).await;
    let team = Team::new(&servers[0]).await;
    let mut agents = Vec::new();
    for index in 0..LEVELS[LEVELS.len() - 1] {
        let email = format!("fleet{index}@example.com");
        agents.push(team.new_member(&servers[0], &email).await);
    }
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "plangraph fleet benchmark: PostgreSQL, 2 instances, {cores} cores, {PLANS} READY plans per run"
    );
    println!(
        "{:>7} {:>10} {:>10} {:>8} {:>8} {:>10} {:>9}",
        "agents", "pattern", "claims/s", "p50 ms", "p99 ms", "conflicts", "drained"
    );
    let mut results = Vec::new();
    for level in LEVELS {
        let mut pair = Vec::new();
        for naive in [false, true] {
            let project = project_with_ready_plans(&team, level, naive).await;
            let run = drain(&servers, &agents[..level], &project, naive).await;
            println!(
                "{level:>7} {:>10} {:>10.0} {:>8.2} {:>8.2} {:>10} {:>9}",
                if naive { "naive" } else { "claimNext" },
                run.rate(),
                millis(percentile(&run.latencies, 0.50)),
                millis(percentile(&run.latencies, 0.99)),
                run.conflicts,
                run.claims,
            );
            pair.push(run);
        }
        results.push((level, pair));
    }

    let (_, at_64) = &results[results.len() - 1];
    let speedup = at_64[0].rate() / at_64[1].rate();
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "goal: 64 agents, claimNext ≥ 5× naive claims/s with zero conflicts: {speedup:.1}× with {} conflicts — {}",
        at_64[0].conflicts,
        met(speedup >= 5.0 && at_64[0].conflicts == 0)
    );
    let (_, at_1) = &results[0];
    let next_p50 = percentile(&at_1[0].latencies, 0.50);
    let plain_p50 = percentile(&at_1[1].plain_claims, 0.50);
    let ratio = next_p50.as_secs_f64() / plain_p50.as_secs_f64();
    println!(
        "goal: 1 agent, claimNext p50 ≤ 1.5× plain claimPlan p50: {:.2} ms vs {:.2} ms = {ratio:.2}× — {}",
        millis(next_p50),
        millis(plain_p50),
        met(ratio <= 1.5)
    );
}

/// A fresh project of the team with `PLANS` READY plans, created 16 at a time.
async fn project_with_ready_plans(team: &Team, level: usize, naive: bool) -> String {
    let name = format!("fleet {level} {}", if naive { "naive" } else { "next" });
    let project = team.owner.create_project(&name).await;
    for email in (0..LEVELS[LEVELS.len() - 1]).map(|index| format!("fleet{index}@example.com")) {
        team.owner
            .ok(ADD_MEMBER, json!({ "projectId": project, "email": email }))
            .await;
    }
    let feature = team.owner.create_feature(&project, "Work", "# work").await;
    let titles: Vec<String> = (0..PLANS).map(|index| format!("plan {index}")).collect();
    for batch in titles.chunks(16) {
        futures::future::join_all(batch.iter().map(|title| {
            team.owner.ok(
                CREATE_PLAN,
                json!({ "featureId": feature, "title": title, "spec": "# spec", "status": "READY" }),
            )
        }))
        .await;
    }
    project
}

/// `agents` drain `project` with one pattern, until it is empty or the budget is spent.
async fn drain(servers: &[Server], agents: &[Client], project: &str, naive: bool) -> Run {
    let claimed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + RUN_BUDGET;
    let started = Instant::now();
    let tasks: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(index, agent)| {
            let client = servers[index % servers.len()].as_client(agent);
            let (project, claimed) = (project.to_owned(), claimed.clone());
            tokio::spawn(async move {
                let mut log = AgentLog::default();
                while claimed.load(Ordering::SeqCst) < PLANS && Instant::now() < deadline {
                    let begun = Instant::now();
                    let got = if naive {
                        naive_claim(&client, &project, &mut log).await
                    } else {
                        let reply = client.send(CLAIM_NEXT, json!({ "project": project })).await;
                        if !reply.errors.is_empty() {
                            log.conflicts += usize::from(reply.code() == "CONFLICT");
                            continue;
                        }
                        !reply.data["claimNextPlan"].is_null()
                    };
                    if !got {
                        break;
                    }
                    log.latencies.push(begun.elapsed());
                    claimed.fetch_add(1, Ordering::SeqCst);
                }
                log
            })
        })
        .collect();
    let mut run = Run::default();
    for joined in futures::future::join_all(tasks).await {
        let log = joined.expect("agent");
        run.claims += log.latencies.len();
        run.conflicts += log.conflicts;
        run.latencies.extend(log.latencies);
        run.plain_claims.extend(log.plain_claims);
    }
    run.elapsed = started.elapsed();
    run.latencies.sort_unstable();
    run.plain_claims.sort_unstable();
    run
}

/// List READY, claim the first, retry on CONFLICT: true once a claim won,
/// false when nothing is READY any more.
async fn naive_claim(client: &Client, project: &str, log: &mut AgentLog) -> bool {
    loop {
        let listed = client.ok(FIRST_READY, json!({ "project": project })).await;
        let Some(id) = listed["plans"]["nodes"][0]["id"]
            .as_str()
            .map(str::to_owned)
        else {
            return false;
        };
        let begun = Instant::now();
        let reply = client.send(CLAIM_ONE, json!({ "id": id })).await;
        log.plain_claims.push(begun.elapsed());
        if reply.errors.is_empty() {
            return true;
        }
        log.conflicts += 1;
    }
}
