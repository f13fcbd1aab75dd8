//! What a spec diff costs at the size limit: two specs of ~1 MiB (17 000
//! lines) in the shapes that matter — identical, a few lines changed, every
//! line changed, and the halves swapped (the worst case for Myers' algorithm,
//! which the deadline cuts short). Prints the median time of each next to
//! reading both specs once (the floor any diff pays), the output size and
//! whether it was cut. Run with `cargo bench --bench diff`.

use std::time::{Duration, Instant};

use plangraph::drift::{DiffLimits, diff};

const LINES: usize = 17_000;
const SAMPLES: usize = 5;

fn spec(lines: usize, variant: &str) -> String {
    (0..lines)
        .map(|line| format!("- requirement {line:05}: the service {variant} handles case {line} within its budget\n"))
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let old = spec(LINES, "always");
    let few_changed: String = old
        .lines()
        .enumerate()
        .map(|(index, line)| {
            if index % 100 == 0 {
                format!("{line} (amended)\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let all_changed = spec(LINES, "now");
    let middle = old[..old.len() / 2].rfind('\n').map_or(0, |at| at + 1);
    let swapped = format!("{}{}", &old[middle..], &old[..middle]);

    let floor = median(
        (0..SAMPLES)
            .map(|_| {
                let started = Instant::now();
                let lines = old.lines().count() + all_changed.lines().count();
                std::hint::black_box(lines);
                started.elapsed()
            })
            .collect(),
    );
    let limits = DiffLimits::default();
    println!(
        "two specs of {} and {} bytes ({LINES} lines); limits: deadline {} ms, output {} KiB",
        old.len(),
        all_changed.len(),
        limits.deadline.as_millis(),
        limits.max_output_bytes / 1024
    );
    println!("baseline: reading both specs line by line: {floor:.2?} (median of {SAMPLES})");
    println!(
        "{:<28}{:>12}{:>12}{:>10}{:>10}{:>12}{:>11}",
        "case", "median", "× baseline", "+lines", "-lines", "output", "truncated"
    );
    let mut slowest = Duration::ZERO;
    for (name, new) in [
        ("identical", &old),
        ("1 % of lines changed", &few_changed),
        ("every line changed", &all_changed),
        ("halves swapped", &swapped),
    ] {
        let mut result = None;
        let time = median(
            (0..SAMPLES)
                .map(|_| {
                    let started = Instant::now();
                    result = Some(diff(&old, new, "v1", "v2", limits));
                    started.elapsed()
                })
                .collect(),
        );
        slowest = slowest.max(time);
        let result = result.expect("at least one sample");
        println!(
            "{name:<28}{:>12}{:>11.0}×{:>10}{:>10}{:>10} KiB{:>11}",
            format!("{time:.1?}"),
            time.as_secs_f64() / floor.as_secs_f64().max(1e-9),
            result.added,
            result.removed,
            result.unified.len() / 1024,
            result.truncated
        );
    }
    let bound = limits.deadline * 2;
    println!(
        "goal: every diff of two 1 MiB specs bounded (≤ 2 × the {} ms deadline): {} (slowest {slowest:.1?})",
        limits.deadline.as_millis(),
        if slowest <= bound { "MET" } else { "NOT MET" }
    );
}
