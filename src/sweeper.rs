//! Stale detection: a background task that runs the sweep on a fixed period.

use std::time::Duration;

use crate::service::{Services, now};

/// Runs until the task is dropped or aborted. A failed sweep is logged and
/// retried at the next tick; it never takes the server down.
pub async fn run(services: Services, stale_after: Duration, every: Duration) {
    let Ok(stale_after) = chrono::Duration::from_std(stale_after) else {
        tracing::error!("--stale-after is too large; the stale sweeper is off");
        return;
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        metrics::counter!("plangraph_sweeper_runs_total").increment(1);
        match services.mark_stale_plans(now() - stale_after).await {
            Ok(0) => {}
            Ok(marked) => {
                metrics::counter!("plangraph_plans_stalled_total").increment(marked as u64);
                tracing::info!(marked, "stale sweep marked plans STALLED");
            }
            Err(error) => tracing::warn!(?error, "stale sweep failed; retrying next tick"),
        }
    }
}
