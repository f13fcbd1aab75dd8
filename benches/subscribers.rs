//! Live fan-out under load: N subscribers on one project of one server, 20
//! mutations 200 ms apart. Run with `cargo bench --bench subscribers`
//! (default N = 1000, 10000 and 20000, grouped, and 1000 and 10000 also with
//! `--ungrouped-subscriptions` for comparison; pass other counts as arguments
//! after `--` to run only those, grouped). The server is a separate,
//! release-built process on SQLite; this process is the load client. Prints,
//! per N: mutation → delivery latency p50/p99/max, deliveries
//! received/expected, the mutations' own latency next to a baseline with no
//! subscribers, server memory per idle subscriber and server CPU per delivery;
//! then, next to the 10 000 run, the kernel's floor under that CPU (the same
//! writes as plain TCP from a thread doing nothing else) and the fan-out
//! goals, each met or not.
//!
//! Each subscriber is one WebSocket with one subscription, except where the
//! open-files limit (RLIMIT_NOFILE, for the server and this process alike)
//! is lower than N: then the subscriptions are spread over as many sockets
//! as the limit allows, and the table says so.

// The black-box tests' harness; a benchmark uses only part of it.
#[allow(unused)]
#[path = "../tests/api/helpers/mod.rs"]
mod helpers;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// CPU time (user + system) a process has used so far, from /proc.
fn cpu_time(pid: u32) -> Duration {
    cpu_time_in(&format!("/proc/{pid}/stat"))
}

/// CPU time (user + system) from a `stat` file of /proc (a process's or a
/// thread's).
fn cpu_time_in(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|index| fields.get(*index)?.parse::<u64>().ok())
        .sum();
    // The kernel's USER_HZ, 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

/// This process's soft limit on open files.
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|value| value.parse().ok())
        .unwrap_or(1024)
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
async fn drive(server: &Server, team: &Team, plan: &str, count: usize) -> Vec<(Instant, Duration)> {
    // The client that changes the plan is not one of its subscribers (in
    // production it is another process): it gets a thread, a runtime and
    // connections of its own. On this process's runtime its responses would
    // wait behind the subscribers' reader tasks whenever a burst of
    // deliveries outlasts the spacing, timing this process's queue instead
    // of the server.
    let owner = Client::new(&server.base_url, Some(team.owner.key()));
    let plan = plan.to_owned();
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the mutating client's runtime");
        let sent = runtime.block_on(async {
            let mut sent = Vec::new();
            let mut ticker = tokio::time::interval(SPACING);
            for index in 0..count {
                ticker.tick().await;
                let status = if index % 2 == 0 { "DRAFT" } else { "READY" };
                let started = Instant::now();
                owner
                    .ok(SET_STATUS, json!({ "planId": plan, "status": status }))
                    .await;
                sent.push((started, started.elapsed()));
            }
            sent
        });
        let _ = done.send(sent);
    });
    outcome.await.expect("the mutating client finished")
}

/// What the kernel alone charges for a delivery on this machine, now: one
/// thread that does nothing else writes `frame_bytes` to each of `sockets`
/// loopback TCP sockets (read by tasks of this process, as the subscribers
/// are), `MUTATIONS` times `SPACING` apart, as plain bytes: no WebSocket
/// framing, no GraphQL, no tasks per socket. On loopback the sender's system
/// call also runs the receiver's side of TCP, as it does for the server.
/// Returns the thread's CPU time per write.
async fn kernel_floor(sockets: usize, frame_bytes: usize) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("nonblocking");
    let (connected, all_connected) = tokio::sync::oneshot::channel::<()>();
    let writer = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let mut streams = Vec::with_capacity(sockets);
            for _ in 0..sockets {
                streams.push(listener.accept().await.expect("accept").0);
            }
            let _ = all_connected.await;
            let frame = vec![b'x'; frame_bytes];
            let mut ticker = tokio::time::interval(SPACING);
            let before = cpu_time_in("/proc/thread-self/stat");
            for _ in 0..MUTATIONS {
                ticker.tick().await;
                for stream in &mut streams {
                    stream.write_all(&frame).await.expect("write");
                }
            }
            cpu_time_in("/proc/thread-self/stat").saturating_sub(before)
        })
    });
    let readers: Vec<_> = futures::stream::iter(0..sockets)
        .then(|_| tokio::net::TcpStream::connect(address))
        .map(|stream| {
            let mut stream = stream.expect("connect");
            tokio::spawn(async move {
                let mut buffer = vec![0; frame_bytes];
                for _ in 0..MUTATIONS {
                    stream.read_exact(&mut buffer).await.expect("read");
                }
            })
        })
        .collect()
        .await;
    let _ = connected.send(());
    futures::future::join_all(readers).await;
    let cpu = writer.join().expect("writer");
    cpu / (sockets * MUTATIONS).max(1) as u32
}

/// One measured configuration.
struct Outcome {
    label: String,
    count: usize,
    delivered: usize,
    p99: Duration,
    mutation_p50: Duration,
    baseline_p50: Duration,
    kib_per_subscriber: f64,
    cpu_per_delivery: Duration,
    /// Bytes of one delivery's WebSocket frame.
    frame_bytes: usize,
}

#[tokio::main]
async fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let runs: Vec<(usize, bool)> = if counts.is_empty() {
        vec![
            (1_000, false),
            (1_000, true),
            (10_000, false),
            (10_000, true),
            (20_000, true),
        ]
    } else {
        counts.into_iter().map(|count| (count, true)).collect()
    };
    println!(
        "plangraph subscription fan-out: SQLite, one server process, {} cores shared by server and load client; open-files limit {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        open_files_limit()
    );
    println!(
        "{:>9} {:>8} {:>8} {:>16} {:>8} {:>8} {:>8} {:>13} {:>12} {:>13} {:>8} {:>12}",
        "mode",
        "subs",
        "sockets",
        "delivered",
        "p50 ms",
        "p99 ms",
        "max ms",
        "mutation p50",
        "no-subs p50",
        "mutation max",
        "KiB/sub",
        "CPU µs/deliv"
    );
    let mut outcomes = Vec::new();
    for (count, grouped) in runs {
        outcomes.push(run(count, grouped).await);
    }
    println!();
    let floor = match outcomes
        .iter()
        .find(|outcome| outcome.count == 10_000 && outcome.label == "grouped")
    {
        Some(at) => {
            // Both ends of every socket are in this process.
            let sockets = 10_000.min(open_files_limit().saturating_sub(300) / 2);
            let floor = kernel_floor(sockets, at.frame_bytes).await;
            println!(
                "kernel floor: {:.2} µs of CPU per {}-byte write to one of {sockets} loopback TCP sockets (a thread doing only that, this run); plangraph at 10000: {:.2} µs per delivery, {:.1}x the floor",
                floor.as_secs_f64() * 1e6,
                at.frame_bytes,
                at.cpu_per_delivery.as_secs_f64() * 1e6,
                at.cpu_per_delivery.as_secs_f64() / floor.as_secs_f64().max(1e-9),
            );
            Some(floor)
        }
        None => None,
    };
    goals(&outcomes, floor);
}

/// The fan-out goals, against the grouped runs.
fn goals(outcomes: &[Outcome], floor: Option<Duration>) {
    let verdict = |met: bool| if met { "MET" } else { "NOT MET" };
    if let Some(at) = outcomes
        .iter()
        .find(|outcome| outcome.count == 10_000 && outcome.label == "grouped")
    {
        let p99 = millis(at.p99);
        println!(
            "goal p99 < 250 ms at 10000 subscribers: {} ({p99:.1} ms)",
            verdict(p99 < 250.0)
        );
        println!(
            "goal <= 12 KiB per idle subscriber at 10000: {} ({:.1} KiB)",
            verdict(at.kib_per_subscriber <= 12.0),
            at.kib_per_subscriber
        );
        let cpu = at.cpu_per_delivery.as_secs_f64() * 1e6;
        let floor = floor.map_or(String::new(), |floor| {
            format!(
                "; the kernel's floor is {:.2} µs",
                floor.as_secs_f64() * 1e6
            )
        });
        println!(
            "goal <= 5 µs of server CPU per delivery at 10000: {} ({cpu:.2} µs{floor})",
            verdict(cpu <= 5.0)
        );
        let ratio = at.mutation_p50.as_secs_f64() / at.baseline_p50.as_secs_f64().max(1e-9);
        println!(
            "goal mutation p50 at 10000 subscribers <= 3x the no-subscriber p50: {} ({:.2} ms vs {:.2} ms, {ratio:.1}x)",
            verdict(ratio <= 3.0),
            millis(at.mutation_p50),
            millis(at.baseline_p50)
        );
    }
    if let Some(at) = outcomes
        .iter()
        .find(|outcome| outcome.count == 20_000 && outcome.label == "grouped")
    {
        println!(
            "goal 20000 subscribers on one instance all delivered: {} ({}/{})",
            verdict(at.delivered == at.count * MUTATIONS),
            at.delivered,
            at.count * MUTATIONS
        );
    }
}

async fn run(count: usize, grouped: bool) -> Outcome {
    // Room for the server's own files (database, logs, listeners).
    let sockets = count.min(open_files_limit().saturating_sub(300)).max(1);
    let mut args = vec!["--max-connections-per-key", "1000000"];
    if !grouped {
        args.push("--ungrouped-subscriptions");
    }
    let server = Server::start_with(Backend::Sqlite, &args).await;
    let pid = server.pid();
    let team = Team::new(&server).await;
    let plan = team.plan("watched", "READY").await;

    let cpu_before_baseline = cpu_time(pid);
    let baseline = drive(&server, &team, &plan, MUTATIONS).await;
    let baseline_cpu = cpu_time(pid).saturating_sub(cpu_before_baseline);
    let mut baseline_latency: Vec<Duration> = baseline.iter().map(|(_, took)| *took).collect();
    baseline_latency.sort_unstable();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory_before = rss_bytes(pid);
    // Socket `index` carries subscriptions index, index + sockets, …
    let subscribers: Vec<(Subscriber, usize)> = futures::stream::iter(0..sockets)
        .map(|index| {
            let (base, key) = (server.base_url.clone(), team.viewer.key().to_owned());
            let project = team.project.clone();
            let on_socket = (index..count).step_by(sockets).count();
            async move {
                let mut subscriber = Subscriber::connect(&base, &key).await;
                for _ in 0..on_socket {
                    subscriber
                        .subscribe(QUERY, json!({ "projectId": project }))
                        .await;
                }
                (subscriber, on_socket)
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    // Every subscription set up (each one's setup reads the database).
    let deadline = Instant::now() + Duration::from_secs(300);
    while server.metrics().await.get("plangraph_active_subscriptions") < count as f64 {
        assert!(
            Instant::now() < deadline,
            "subscriptions not set up in 5 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory_idle = rss_bytes(pid);
    let per_subscriber = memory_idle.saturating_sub(memory_before) as f64 / count as f64 / 1024.0;

    // Every subscriber records when it received each event.
    let arrivals: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let frame_bytes = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|(mut subscriber, on_socket)| {
            let arrivals = arrivals.clone();
            let frame_bytes = frame_bytes.clone();
            tokio::spawn(async move {
                let mut received = Vec::with_capacity(MUTATIONS * on_socket);
                let mut per_subscription: std::collections::HashMap<String, usize> =
                    Default::default();
                for _ in 0..MUTATIONS * on_socket {
                    match subscriber.next_delivery(Duration::from_secs(30)).await {
                        Some((id, Delivery::Data(data))) => {
                            let at = Instant::now();
                            if received.is_empty() {
                                // The frame as the server wrote it: the
                                // envelope, the payload, a 4-byte header.
                                let message = json!({ "type": "next", "id": &id, "payload": { "data": data } });
                                frame_bytes.store(message.to_string().len() + 4, Ordering::Relaxed);
                            }
                            let index = per_subscription.entry(id).or_default();
                            received.push((*index, at));
                            *index += 1;
                        }
                        _ => break,
                    }
                }
                arrivals.lock().await.extend(received);
                subscriber
            })
        })
        .collect();
    let cpu_before = cpu_time(pid);
    let sent = drive(&server, &team, &plan, MUTATIONS).await;
    let subscribers: Vec<Subscriber> = futures::future::join_all(readers)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);

    let arrivals = arrivals.lock().await;
    let mut delivery: Vec<Duration> = arrivals
        .iter()
        .filter(|(index, _)| *index < sent.len())
        .map(|(index, at)| at.saturating_duration_since(sent[*index].0))
        .collect();
    delivery.sort_unstable();
    let mut mutation: Vec<Duration> = sent.iter().map(|(_, took)| *took).collect();
    mutation.sort_unstable();
    let delivered = arrivals.len();
    let cpu_per_delivery = cpu.saturating_sub(baseline_cpu) / (delivered.max(1) as u32);
    let label = if grouped { "grouped" } else { "ungrouped" };
    println!(
        "{label:>9} {count:>8} {sockets:>8} {:>16} {:>8.1} {:>8.1} {:>8.1} {:>13.2} {:>12.2} {:>13.2} {:>8.1} {:>12.2}",
        format!("{delivered}/{}", count * MUTATIONS),
        millis(percentile(&delivery, 0.50)),
        millis(percentile(&delivery, 0.99)),
        millis(delivery.last().copied().unwrap_or_default()),
        millis(percentile(&mutation, 0.50)),
        millis(percentile(&baseline_latency, 0.50)),
        millis(mutation.last().copied().unwrap_or_default()),
        per_subscriber,
        cpu_per_delivery.as_secs_f64() * 1e6,
    );
    let outcome = Outcome {
        label: label.to_owned(),
        count,
        delivered,
        p99: percentile(&delivery, 0.99),
        mutation_p50: percentile(&mutation, 0.50),
        baseline_p50: percentile(&baseline_latency, 0.50),
        kib_per_subscriber: per_subscriber,
        cpu_per_delivery,
        frame_bytes: frame_bytes.load(Ordering::Relaxed),
    };
    drop(arrivals);
    for subscriber in subscribers {
        subscriber.disconnect().await;
    }
    server.stop().await;
    outcome
}
