//! The delivery worker of one instance. It wakes when an event commits (the
//! event bus) and on a timer, so a missed wake-up, a backoff that ends or a
//! webhook another instance gave up costs at most one poll interval. Each
//! webhook with work gets a task of its own that delivers its events one by
//! one, in order, until it has none left or an attempt fails; then the
//! webhook waits out its backoff alone, holding no slot.
//!
//! Webhooks are independent: what runs at once is bounded so that no one
//! can delay the others ([`Slots`]). At most `--webhook-concurrency` tasks
//! run, at most `--webhook-project-concurrency` of them for one project's
//! webhooks, and webhooks retrying after a failure (the ones likely to hang
//! until the timeout) share at most half of the slots, so a dead receiver
//! never holds a slot a healthy one needs. When webhooks wait for slots, the
//! projects with the fewest deliveries running go first.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::outbox::{self, DueWebhook, Hold, Outcome, Work};
use super::{Outgoing, Verdict, WebhookSettings};
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

/// How many delivery tasks may run at once, in all and by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    pub total: usize,
    /// For one project's webhooks: below `total`, so that one project's
    /// receivers cannot take every slot.
    pub per_project: usize,
    /// For webhooks retrying after a failure: the others always keep the rest.
    pub failing: usize,
}

impl Slots {
    pub fn new(settings: &WebhookSettings) -> Slots {
        let total = settings.concurrency.max(1);
        Slots {
            total,
            per_project: settings.project_concurrency.clamp(1, total),
            failing: (total / 2).max(1),
        }
    }
}

/// Which of `due` (none of them running) to start now, as indices into it,
/// given the tasks already `running`: within the slots, the projects with
/// the fewest deliveries running first, healthy webhooks before failing
/// ones, then in `due`'s order from `turn` on, so that equal claims take
/// turns from one look to the next.
pub fn pick(due: &[DueWebhook], running: &[DueWebhook], slots: Slots, turn: usize) -> Vec<usize> {
    let mut per_project: HashMap<Uuid, usize> = HashMap::new();
    for task in running {
        *per_project.entry(task.project).or_default() += 1;
    }
    let mut total = running.len();
    let mut failing = running.iter().filter(|task| task.failing).count();
    let mut picked = Vec::new();
    let mut taken = vec![false; due.len()];
    let count = due.len().max(1);
    while total < slots.total {
        let best = due
            .iter()
            .enumerate()
            .filter(|(index, webhook)| {
                let in_project = per_project.get(&webhook.project).copied().unwrap_or(0);
                !taken[*index]
                    && in_project < slots.per_project
                    && (!webhook.failing || failing < slots.failing)
            })
            .min_by_key(|(index, webhook)| {
                let in_project = per_project.get(&webhook.project).copied().unwrap_or(0);
                let place = (index + count - turn % count) % count;
                (in_project, webhook.failing, place)
            });
        let Some((index, webhook)) = best else {
            break;
        };
        taken[index] = true;
        picked.push(index);
        total += 1;
        failing += usize::from(webhook.failing);
        *per_project.entry(webhook.project).or_default() += 1;
    }
    picked
}

/// Runs until aborted (at shutdown); its delivery tasks end with it.
pub async fn run(services: Services) {
    let settings = services.webhooks.settings.clone();
    let slots = Slots::new(&settings);
    let mut wake = services.events.subscribe();
    let mut tasks: JoinSet<TaskEnd> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, DueWebhook> = HashMap::new();
    let mut paused: HashMap<Uuid, Instant> = HashMap::new();
    let mut turn: usize = 0;
    loop {
        let started = Instant::now();
        paused.retain(|_, until| *until > started);
        let mut deadline = started + settings.poll_every;
        // Until a look says otherwise, new events may concern a webhook.
        let mut any_enabled = true;
        match outbox::due(&services.db, now()).await {
            Ok(due) => {
                any_enabled = due.any_enabled;
                let busy: HashSet<Uuid> = running.values().map(|task| task.id).collect();
                let waiting: Vec<DueWebhook> = due
                    .webhooks
                    .into_iter()
                    .filter(|webhook| {
                        !busy.contains(&webhook.id) && !paused.contains_key(&webhook.id)
                    })
                    .collect();
                let now_running: Vec<DueWebhook> = running.values().copied().collect();
                turn = turn.wrapping_add(1);
                for index in pick(&waiting, &now_running, slots, turn) {
                    let webhook = waiting[index];
                    let handle = tasks.spawn(deliver_webhook(services.clone(), webhook.id));
                    running.insert(handle.id(), webhook);
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
                    if let Some(webhook) = running.remove(&task)
                        && end == TaskEnd::Missed
                    {
                        paused.insert(webhook.id, Instant::now() + PAUSE_AFTER_MISS);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(project: Uuid, failing: bool) -> DueWebhook {
        DueWebhook {
            id: Uuid::now_v7(),
            project,
            failing,
        }
    }

    fn slots(total: usize, per_project: usize, failing: usize) -> Slots {
        Slots {
            total,
            per_project,
            failing,
        }
    }

    #[test]
    fn one_project_cannot_take_every_slot() {
        let (busy, quiet) = (Uuid::now_v7(), Uuid::now_v7());
        let mut due: Vec<DueWebhook> = (0..8).map(|_| webhook(busy, false)).collect();
        let picked = pick(&due, &[], slots(16, 4, 8), 0);
        assert_eq!(picked.len(), 4, "the project's cap, not the total");
        let running: Vec<DueWebhook> = picked.iter().map(|index| due[*index]).collect();
        due.retain(|webhook| !running.contains(webhook));
        due.push(webhook(quiet, false));
        let picked = pick(&due, &running, slots(16, 4, 8), 0);
        assert_eq!(picked.len(), 1);
        assert_eq!(
            due[picked[0]].project, quiet,
            "another project still gets a slot"
        );
    }

    #[test]
    fn failing_webhooks_share_only_their_part_of_the_slots() {
        let projects: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let due: Vec<DueWebhook> = projects.iter().map(|p| webhook(*p, true)).collect();
        let picked = pick(&due, &[], slots(4, 4, 2), 0);
        assert_eq!(picked.len(), 2);
        let running: Vec<DueWebhook> = picked.iter().map(|index| due[*index]).collect();
        let healthy = [webhook(projects[0], false), webhook(projects[1], false)];
        let more = [due[2], due[3], healthy[0], healthy[1]];
        let picked = pick(&more, &running, slots(4, 4, 2), 0);
        let started: Vec<DueWebhook> = picked.iter().map(|index| more[*index]).collect();
        assert_eq!(started, healthy, "the rest stays for webhooks that work");
    }

    #[test]
    fn waiting_projects_go_before_projects_already_delivering() {
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let running = [webhook(first, false), webhook(first, false)];
        let due = [
            webhook(first, false),
            webhook(first, false),
            webhook(second, false),
        ];
        let picked = pick(&due, &running, slots(3, 4, 1), 0);
        assert_eq!(picked, [2]);
    }

    #[test]
    fn equal_claims_take_turns() {
        let due: Vec<DueWebhook> = (0..3).map(|_| webhook(Uuid::now_v7(), false)).collect();
        let firsts: HashSet<usize> = (0..3)
            .map(|turn| pick(&due, &[], slots(1, 1, 1), turn)[0])
            .collect();
        assert_eq!(firsts.len(), 3, "each gets the one slot in turn");
    }

    #[test]
    fn slots_follow_the_settings() {
        let settings = WebhookSettings {
            concurrency: 16,
            project_concurrency: 40,
            ..WebhookSettings::default()
        };
        assert_eq!(Slots::new(&settings), slots(16, 16, 8));
        let one = WebhookSettings {
            concurrency: 1,
            project_concurrency: 4,
            ..WebhookSettings::default()
        };
        assert_eq!(Slots::new(&one), slots(1, 1, 1));
    }
}
