//! The delivery worker of one instance. It wakes when an event commits (the
//! event bus) and on a timer, so a missed wake-up, a backoff that ends or a
//! webhook another instance gave up costs at most one poll interval. Each
//! webhook with work gets a task that delivers its events one by one, in
//! order, until it has none left or an attempt fails; at most
//! `--webhook-concurrency` such tasks run at once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::outbox::{self, Hold, Outcome, Work};
use super::{Outgoing, Verdict};
use crate::service::{Services, now};

/// How long a webhook that another instance holds (or whose delivery hit a
/// database error) is left alone before this instance tries it again.
const PAUSE_AFTER_MISS: Duration = Duration::from_secs(1);

/// How a webhook's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskEnd {
    /// Nothing left to send now (or a failure that set a backoff).
    Done,
    /// Another instance is delivering it, or the database failed.
    Missed,
}

/// Runs until aborted (at shutdown); its delivery tasks end with it.
pub async fn run(services: Services) {
    let settings = services.webhooks.settings.clone();
    let mut wake = services.events.subscribe();
    let mut tasks: JoinSet<TaskEnd> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, Uuid> = HashMap::new();
    let mut paused: HashMap<Uuid, Instant> = HashMap::new();
    loop {
        let started = Instant::now();
        paused.retain(|_, until| *until > started);
        let mut deadline = started + settings.poll_every;
        // Until a look says otherwise, new events may concern a webhook.
        let mut any_enabled = true;
        match outbox::due(&services.db, now()).await {
            Ok(due) => {
                any_enabled = due.any_enabled;
                let busy: HashSet<Uuid> = running.values().copied().collect();
                for id in due.webhooks {
                    if running.len() >= settings.concurrency {
                        break;
                    }
                    if busy.contains(&id) || paused.contains_key(&id) {
                        continue;
                    }
                    let handle = tasks.spawn(deliver_webhook(services.clone(), id));
                    running.insert(handle.id(), id);
                }
                if let Some(at) = due.next_retry_at {
                    let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                    deadline = deadline.min(Instant::now() + wait);
                }
            }
            Err(error) => {
                tracing::warn!(?error, "webhook worker cannot read its work; retrying");
            }
        }
        if let Some(until) = paused.values().min() {
            deadline = deadline.min(*until);
        }
        loop {
            tokio::select! {
                message = wake.recv() => {
                    if let Err(RecvError::Closed) = message {
                        return;
                    }
                    // One look at the table serves every event that came
                    // meanwhile; with no webhook enabled, none is needed (a
                    // webhook added here says so, one added elsewhere is
                    // found by the next poll).
                    while !matches!(wake.try_recv(), Err(TryRecvError::Empty | TryRecvError::Closed)) {}
                    if any_enabled {
                        break;
                    }
                }
                () = services.webhooks.changed.notified() => break,
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (task, end) = match joined {
                        Ok((task, end)) => (task, end),
                        Err(error) => {
                            tracing::error!(%error, "a webhook delivery task failed");
                            (error.id(), TaskEnd::Missed)
                        }
                    };
                    if let Some(id) = running.remove(&task)
                        && end == TaskEnd::Missed
                    {
                        paused.insert(id, Instant::now() + PAUSE_AFTER_MISS);
                    }
                    break;
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
}

/// Delivers `id`'s events in order until none is left, an attempt fails (it
/// is retried after its backoff), or another instance holds the webhook.
async fn deliver_webhook(services: Services, id: Uuid) -> TaskEnd {
    loop {
        match deliver_next(&services, id).await {
            Ok(Some(Verdict::Delivered | Verdict::Rejected)) => continue,
            Ok(Some(Verdict::Failed(_))) => return TaskEnd::Done,
            Ok(None) => return TaskEnd::Done,
            Err(Missed::HeldElsewhere) => return TaskEnd::Missed,
            Err(Missed::Database(error)) => {
                tracing::warn!(webhook = %id, ?error, "webhook delivery could not be recorded; retrying");
                return TaskEnd::Missed;
            }
        }
    }
}

enum Missed {
    HeldElsewhere,
    Database(crate::error::AppError),
}

impl From<crate::error::AppError> for Missed {
    fn from(error: crate::error::AppError) -> Missed {
        Missed::Database(error)
    }
}

/// One step: the next event sent and recorded (its verdict), filtered events
/// passed (`Delivered`, to go on), or `None` when there is nothing to do.
async fn deliver_next(services: &Services, id: Uuid) -> Result<Option<Verdict>, Missed> {
    let Some(hold) = outbox::hold(services, id).await? else {
        return Err(Missed::HeldElsewhere);
    };
    let work = match outbox::next_work(services, &hold, id).await {
        Ok(Some(work)) => work,
        Ok(None) => {
            hold.release().await?;
            return Ok(None);
        }
        Err(error) => {
            release_quietly(hold).await;
            return Err(error.into());
        }
    };
    let Work {
        webhook,
        passed,
        event,
    } = work;
    let Some(event) = event else {
        if let Some(passed) = passed {
            outbox::pass(services, hold, &webhook, passed).await?;
            return Ok(Some(Verdict::Delivered));
        }
        hold.release().await?;
        return Ok(None);
    };
    let delivery_id = Uuid::now_v7();
    let attempt = services
        .webhooks
        .send(Outgoing {
            id: delivery_id,
            url: &webhook.url,
            secret: &webhook.secret.0,
            event: &event,
        })
        .await;
    if let Verdict::Failed(failure) = attempt.verdict {
        tracing::info!(webhook = %webhook.id, event = event.event.id, ?failure, "webhook delivery failed; will retry");
    }
    let outcome = Outcome {
        webhook: &webhook,
        passed,
        event_id: event.event.id,
        delivery_id,
        attempt: &attempt,
    };
    outbox::record(services, hold, outcome).await?;
    Ok(Some(attempt.verdict))
}

/// Gives a hold back after another error, which is the one to report.
async fn release_quietly(hold: Hold) {
    if let Err(error) = hold.release().await {
        tracing::debug!(
            ?error,
            "releasing a webhook hold failed; the connection drops it"
        );
    }
}
