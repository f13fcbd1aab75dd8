//! The books of delivery, kept in the database: which webhooks have work, a
//! webhook's next event, and an attempt's outcome, committed together with
//! the cursor move and backoff it implies.
//!
//! One deliverer per webhook: on PostgreSQL an attempt runs inside a
//! transaction holding a transaction-scoped advisory lock on the webhook
//! (`pg_try_advisory_xact_lock`), taken before the cursor is read and
//! released by the commit that moves it, so another instance either waits
//! its turn and then reads the moved cursor, or skips the webhook. A crashed
//! instance's lock goes with its connection. The lock is not a row lock, so
//! owners editing the webhook are never blocked by a slow receiver. SQLite
//! has one instance, whose worker never runs two attempts of a webhook at
//! once, and writes through the process-wide write lock after the attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement, TransactionTrait,
};
use uuid::Uuid;

use super::{Attempt, Verdict, WebhookSettings};
use crate::error::AppResult;
use crate::events::{self, LiveEvent};
use crate::service::{Services, now, rfc3339};
use crate::workflow::EventKind;
use entity::{plan_event, webhook, webhook_delivery};

/// Attempts kept per webhook in its delivery log.
pub const DELIVERY_LOG_SIZE: u64 = 50;
/// Events read at once when looking for the next one a filter lets through.
const EVENTS_PER_READ: u64 = 25;
/// The advisory-lock namespace of webhooks ("whks"); the second key is
/// derived from the webhook's id.
const LOCK_NAMESPACE: i32 = 0x7768_6b73;

/// A webhook with events past its cursor and no backoff in the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueWebhook {
    pub id: Uuid,
    pub project: Uuid,
    /// Its last attempt failed: it is retrying, and may well fail again.
    pub failing: bool,
}

/// What the enabled webhooks have to do, from one look at the table.
pub struct Due {
    /// In id order.
    pub webhooks: Vec<DueWebhook>,
    /// When the earliest backoff of a webhook with events waiting ends.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Whether any webhook is enabled at all; with none, new events need
    /// no look (see `worker.rs`).
    pub any_enabled: bool,
}

/// Every enabled webhook with whether its project has events past its
/// cursor; one query, however many webhooks there are.
pub async fn due(db: &impl ConnectionTrait, at: DateTime<Utc>) -> AppResult<Due> {
    let pending = Query::select()
        .expr(Expr::val(1))
        .from(plan_event::Entity)
        .and_where(
            Expr::col((plan_event::Entity, plan_event::Column::ProjectId))
                .equals((webhook::Entity, webhook::Column::ProjectId)),
        )
        .and_where(
            Expr::col((plan_event::Entity, plan_event::Column::Id))
                .gt(Expr::col((webhook::Entity, webhook::Column::EventCursor))),
        )
        .to_owned();
    let enabled = webhook::Entity::find()
        .select_only()
        .column(webhook::Column::Id)
        .column(webhook::Column::ProjectId)
        .column(webhook::Column::NextAttemptAt)
        .column(webhook::Column::Attempts)
        .expr_as(Expr::exists(pending), "pending")
        .filter(webhook::Column::Enabled.eq(true))
        .order_by_asc(webhook::Column::Id)
        .into_tuple::<(Uuid, Uuid, Option<DateTime<Utc>>, i32, bool)>()
        .all(db)
        .await?;
    let any_enabled = !enabled.is_empty();
    let mut webhooks = Vec::new();
    let mut next_retry_at: Option<DateTime<Utc>> = None;
    for (id, project, next_attempt_at, attempts, pending) in enabled {
        match next_attempt_at {
            _ if !pending => {}
            Some(retry) if retry > at => {
                next_retry_at = Some(next_retry_at.map_or(retry, |next| Ord::min(next, retry)));
            }
            _ => webhooks.push(DueWebhook {
                id,
                project,
                failing: attempts > 0,
            }),
        }
    }
    Ok(Due {
        webhooks,
        next_retry_at,
        any_enabled,
    })
}

/// A webhook held by this worker for one attempt.
pub enum Hold {
    /// The transaction holding the webhook's advisory lock; the attempt's
    /// outcome is written in it.
    Postgres(DatabaseTransaction),
    Sqlite,
}

/// Takes `webhook` for one attempt; `None` when another instance holds it.
pub async fn hold(services: &Services, webhook: Uuid) -> AppResult<Option<Hold>> {
    if services.db.get_database_backend() != DbBackend::Postgres {
        return Ok(Some(Hold::Sqlite));
    }
    let pool = services.webhooks.pool().unwrap_or(&services.db);
    let txn = pool.begin().await?;
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_try_advisory_xact_lock($1, $2) AS held",
            [LOCK_NAMESPACE.into(), lock_key(webhook).into()],
        ))
        .await?;
    let held = match row {
        Some(row) => row.try_get::<bool>("", "held")?,
        None => false,
    };
    if held {
        Ok(Some(Hold::Postgres(txn)))
    } else {
        txn.rollback().await?;
        Ok(None)
    }
}

/// The webhook's 32-bit lock key. Two webhooks may share one; then they
/// merely take turns.
fn lock_key(webhook: Uuid) -> i32 {
    let value = webhook.as_u128();
    let folded = (value ^ (value >> 32) ^ (value >> 64) ^ (value >> 96)) as u32;
    i32::from_ne_bytes(folded.to_ne_bytes())
}

impl Hold {
    pub async fn release(self) -> AppResult<()> {
        if let Hold::Postgres(txn) = self {
            txn.rollback().await?;
        }
        Ok(())
    }
}

/// What a held webhook has to do next.
pub struct Work {
    pub webhook: webhook::Model,
    /// The last of the events its filter leaves out before `event` (or of
    /// all those read, when none passes): the cursor may move past them.
    pub passed: Option<i64>,
    pub event: Option<LiveEvent>,
}

/// The held webhook's next event, if it is enabled, due and has one.
pub async fn next_work(services: &Services, hold: &Hold, id: Uuid) -> AppResult<Option<Work>> {
    match hold {
        Hold::Postgres(txn) => next_work_on(txn, id).await,
        Hold::Sqlite => next_work_on(&services.db, id).await,
    }
}

async fn next_work_on(connection: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<Work>> {
    let Some(webhook) = webhook::Entity::find_by_id(id).one(connection).await? else {
        return Ok(None);
    };
    let due = webhook.enabled && webhook.next_attempt_at.is_none_or(|at| at <= now());
    if !due {
        return Ok(None);
    }
    let events = plan_event::Entity::find()
        .filter(plan_event::Column::ProjectId.eq(webhook.project_id))
        .filter(plan_event::Column::Id.gt(webhook.event_cursor))
        .order_by_asc(plan_event::Column::Id)
        .limit(EVENTS_PER_READ)
        .all(connection)
        .await?;
    if events.is_empty() {
        return Ok(None);
    }
    let mut passed = None;
    let mut next = None;
    for event in events {
        if accepts(webhook.event_kinds.as_deref(), event.kind) {
            next = Some(event);
            break;
        }
        passed = Some(event.id);
    }
    let event = match next {
        Some(event) => {
            let id = event.id;
            let detailed = events::with_details(connection, vec![event]).await?.pop();
            // Foreign keys keep an event's plan; should it be missing anyway,
            // the worker pauses instead of spinning on the event.
            Some(detailed.ok_or_else(|| {
                crate::error::AppError::internal(format!("the plan of event {id} is missing"))
            })?)
        }
        None => None,
    };
    Ok(Some(Work {
        webhook,
        passed,
        event,
    }))
}

/// Whether a webhook with this stored filter receives `kind`.
pub fn accepts(filter: Option<&str>, kind: EventKind) -> bool {
    filter.is_none_or(|kinds| kinds.split(',').any(|stored| stored == kind.as_str()))
}

/// Moves the cursor past events the filter leaves out, when no event passes.
pub async fn pass(
    services: &Services,
    hold: Hold,
    webhook: &webhook::Model,
    passed: i64,
) -> AppResult<()> {
    let update = webhook::Entity::update_many()
        .col_expr(webhook::Column::EventCursor, Expr::value(passed))
        .filter(webhook::Column::Id.eq(webhook.id))
        .filter(webhook::Column::EventCursor.eq(webhook.event_cursor));
    match hold {
        Hold::Postgres(txn) => {
            update.exec(&txn).await?;
            txn.commit().await?;
        }
        Hold::Sqlite => {
            let txn = services.begin_write().await?;
            update.exec(&*txn).await?;
            txn.commit().await?;
        }
    }
    Ok(())
}

/// An attempt at `event` and where it leaves the webhook.
pub struct Outcome<'a> {
    pub webhook: &'a webhook::Model,
    pub passed: Option<i64>,
    pub event_id: i64,
    pub delivery_id: Uuid,
    pub attempt: &'a Attempt,
}

/// Commits the attempt's log entry with the webhook's new cursor, failure
/// count and backoff, and disables a webhook that has failed for too long.
pub async fn record(services: &Services, hold: Hold, outcome: Outcome<'_>) -> AppResult<()> {
    let settings = &services.webhooks.settings;
    match hold {
        Hold::Postgres(txn) => {
            write_outcome(&txn, settings, &outcome).await?;
            txn.commit().await?;
        }
        Hold::Sqlite => {
            let txn = services.begin_write().await?;
            write_outcome(&*txn, settings, &outcome).await?;
            txn.commit().await?;
        }
    }
    Ok(())
}

async fn write_outcome(
    connection: &impl ConnectionTrait,
    settings: &WebhookSettings,
    outcome: &Outcome<'_>,
) -> AppResult<()> {
    let webhook = outcome.webhook;
    let attempt = outcome.attempt;
    let at = now();
    let mut update = <webhook::ActiveModel as Default>::default();
    match attempt.verdict {
        Verdict::Delivered => {
            update.event_cursor = Set(outcome.event_id);
            update.attempts = Set(0);
            update.consecutive_failures = Set(0);
            update.failing_since = Set(None);
            update.next_attempt_at = Set(None);
        }
        Verdict::Rejected | Verdict::Failed(_) => {
            let retry = matches!(attempt.verdict, Verdict::Failed(_));
            let failures = webhook.consecutive_failures.saturating_add(1);
            let failing_since = webhook.failing_since.unwrap_or(at);
            update.consecutive_failures = Set(failures);
            update.failing_since = Set(Some(failing_since));
            if retry {
                let attempts = webhook.attempts.saturating_add(1);
                update.attempts = Set(attempts);
                update.event_cursor = Set(outcome.passed.unwrap_or(webhook.event_cursor));
                update.next_attempt_at = Set(Some(at + backoff(settings, attempts)));
            } else {
                update.attempts = Set(0);
                update.event_cursor = Set(outcome.event_id);
                update.next_attempt_at = Set(None);
            }
            let failing_for = (at - failing_since).to_std().unwrap_or_default();
            let too_many = u32::try_from(failures).unwrap_or(0) >= settings.disable_after_failures;
            if too_many && failing_for >= settings.disable_after {
                let reason = format!(
                    "Disabled after {failures} failed deliveries in a row since {} (the last: {}); fix the receiver, then enable it again with updateWebhook(enabled: true)",
                    rfc3339(failing_since),
                    attempt.error.as_deref().unwrap_or("no answer"),
                );
                update.enabled = Set(false);
                update.disabled_reason = Set(Some(reason));
                update.next_attempt_at = Set(None);
                metrics::counter!("plangraph_webhooks_disabled_total").increment(1);
                tracing::warn!(webhook = %webhook.id, failures, "webhook disabled after failing for long");
            }
        }
    }
    // Guarded by the cursor read under the hold: if the webhook is gone (or,
    // against every rule, moved on), nothing is written.
    let moved = webhook::Entity::update_many()
        .set(update)
        .filter(webhook::Column::Id.eq(webhook.id))
        .filter(webhook::Column::EventCursor.eq(webhook.event_cursor))
        .exec(connection)
        .await?;
    if moved.rows_affected == 0 {
        tracing::debug!(webhook = %webhook.id, "webhook deleted or moved on during a delivery");
        return Ok(());
    }
    log_attempt(
        connection,
        LogEntry {
            id: outcome.delivery_id,
            webhook: webhook.id,
            event_id: outcome.event_id,
            attempt: webhook.attempts.saturating_add(1),
            redelivery: false,
            at,
        },
        attempt,
    )
    .await?;
    Ok(())
}

/// A delivery log row's identity.
pub struct LogEntry {
    pub id: Uuid,
    pub webhook: Uuid,
    pub event_id: i64,
    pub attempt: i32,
    pub redelivery: bool,
    /// When it is recorded: the time its backoff counts from.
    pub at: DateTime<Utc>,
}

/// Writes the attempt to the webhook's log and drops all but the newest
/// [`DELIVERY_LOG_SIZE`] entries.
pub async fn log_attempt(
    connection: &impl ConnectionTrait,
    entry: LogEntry,
    attempt: &Attempt,
) -> AppResult<webhook_delivery::Model> {
    let row = webhook_delivery::ActiveModel {
        id: Set(entry.id),
        webhook_id: Set(entry.webhook),
        event_id: Set(entry.event_id),
        attempt: Set(entry.attempt),
        redelivery: Set(entry.redelivery),
        status: Set(attempt.status.map(i32::from)),
        error: Set(attempt.error.clone()),
        duration_ms: Set(Some(
            i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX),
        )),
        at: Set(entry.at),
    }
    .insert(connection)
    .await?;
    let newest = Query::select()
        .column(webhook_delivery::Column::Id)
        .from(webhook_delivery::Entity)
        .and_where(webhook_delivery::Column::WebhookId.eq(entry.webhook))
        .order_by(webhook_delivery::Column::Id, sea_orm::Order::Desc)
        .limit(DELIVERY_LOG_SIZE)
        .to_owned();
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::WebhookId.eq(entry.webhook))
        .filter(webhook_delivery::Column::Id.not_in_subquery(newest))
        .exec(connection)
        .await?;
    Ok(row)
}

/// How many times `event_id` has been attempted for `webhook`, as far as
/// the log remembers.
pub async fn attempts_logged(
    connection: &impl ConnectionTrait,
    webhook: Uuid,
    event_id: i64,
) -> AppResult<u64> {
    Ok(webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::WebhookId.eq(webhook))
        .filter(webhook_delivery::Column::EventId.eq(event_id))
        .count(connection)
        .await?)
}

/// The wait before retry number `attempts`: `retry_base` doubled for each
/// earlier failure, capped at `retry_max`, with the upper half jittered so
/// that receivers coming back are not hit by every webhook at once.
pub fn backoff(settings: &WebhookSettings, attempts: i32) -> chrono::Duration {
    let doublings = Ord::min(u32::try_from(attempts.saturating_sub(1)).unwrap_or(0), 30);
    let full = Ord::min(
        settings.retry_base.saturating_mul(1 << doublings),
        settings.retry_max,
    );
    let random = getrandom::u32().unwrap_or(u32::MAX / 2);
    let jitter = full.mul_f64(f64::from(random) / f64::from(u32::MAX) / 2.0);
    let wait: Duration = full / 2 + jitter;
    chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let settings = WebhookSettings {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..WebhookSettings::default()
        };
        for (attempts, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (1000, 60)] {
            for _ in 0..20 {
                let wait = backoff(&settings, attempts).to_std().expect("positive");
                let full = Duration::from_secs(full);
                assert!(wait >= full / 2 && wait <= full, "{attempts}: {wait:?}");
            }
        }
    }

    #[test]
    fn filters_name_stored_kinds() {
        assert!(accepts(None, EventKind::Claimed));
        assert!(accepts(Some("created,claimed"), EventKind::Claimed));
        assert!(!accepts(Some("created,completed"), EventKind::Claimed));
        assert!(!accepts(Some("status_changed"), EventKind::Stalled));
    }

    #[test]
    fn lock_keys_spread_over_ids() {
        let keys: std::collections::HashSet<i32> =
            (0..1000).map(|_| lock_key(Uuid::now_v7())).collect();
        assert!(keys.len() > 990);
    }
}
