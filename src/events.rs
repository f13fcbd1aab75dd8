//! The event log and its live fan-out.
//!
//! `plan_events` is the source of truth: every change writes its row in the same
//! transaction as the change itself, so the audit trail can never disagree with
//! the plans table, and a subscriber that reconnects replays from it.
//!
//! Live delivery relies on one invariant: **event ids are handed out in commit
//! order**. Then "everything after cursor N" is well defined, a replay followed
//! by live events has no gap, and duplicates are dropped by comparing ids.
//! - SQLite: writers are serialized by the service layer's write lock, and the
//!   events are published while that lock is still held.
//! - PostgreSQL: `record` takes a transaction-scoped advisory lock before drawing
//!   the id, so ids are drawn in the order transactions commit; `NOTIFY` in the
//!   same transaction wakes one `LISTEN` connection per instance, which reads
//!   the new rows and fans them out locally. Every instance sees every event.
//!
//! Changes to who may see what (memberships, key revocations) travel the same
//! ordered path as [`BusMessage::AccessChanged`], so a live subscriber re-checks
//! its access before it is handed any event committed after the change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::error::AppResult;
use crate::workflow::{EventKind, PlanStatus};
use entity::{plan, plan_event, user};

/// The PostgreSQL channel the events are announced on.
const CHANNEL: &str = "plangraph_plan_events";
/// Serializes event-id assignment with commit order on PostgreSQL ("plan_evt").
const EVENT_ORDER_LOCK: i64 = 0x706c_616e_5f65_7674;
/// Payload prefix of an access-change notification; an event's payload is its id.
const ACCESS_PREFIX: &str = "access:";
/// Access changes a connection may fall behind by; one that lags re-checks.
const ACCESS_CHANGES_BUFFER: usize = 256;
/// Largest number of events read per catch-up query.
const CATCH_UP_BATCH: u64 = 500;

/// A committed event with what every subscriber shows of it, loaded once and
/// shared by all of them.
#[derive(Debug)]
pub struct LiveEvent {
    pub event: plan_event::Model,
    pub plan: plan::Model,
    pub actor: Option<user::Model>,
}

/// What the bus carries, in commit order.
#[derive(Debug, Clone)]
pub enum BusMessage {
    Event(Arc<LiveEvent>),
    /// This user's memberships or API keys changed; `None` when this instance
    /// may have missed such changes (its database listener reconnected), so
    /// anyone's might have.
    AccessChanged(Option<Uuid>),
}

/// In-process fan-out of committed events. Sending never waits for receivers:
/// each receiver has a bounded window (the channel capacity) and one that falls
/// further behind is told so and must resume from the table.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<BusMessage>,
    /// Access changes alone, for connections that act on nothing else (a
    /// WebSocket closes when its key is revoked) and should not be woken by
    /// every event.
    access: broadcast::Sender<Option<Uuid>>,
    /// On PostgreSQL the database listener is the only publisher, so that local
    /// and remote changes arrive through the same ordered path.
    fed_by_database: bool,
}

impl EventBus {
    pub fn new(capacity: usize, fed_by_database: bool) -> EventBus {
        let (sender, _) = broadcast::channel(capacity);
        let (access, _) = broadcast::channel(ACCESS_CHANGES_BUFFER);
        EventBus {
            sender,
            access,
            fed_by_database,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.sender.subscribe()
    }

    /// Users whose memberships or keys changed (`None`: possibly anyone's).
    /// A receiver that lags must assume anyone's did.
    pub fn access_changes(&self) -> broadcast::Receiver<Option<Uuid>> {
        self.access.subscribe()
    }

    /// Called by the service layer right after a commit, in commit order.
    pub fn publish_committed(&self, events: impl IntoIterator<Item = LiveEvent>) {
        if !self.fed_by_database {
            self.send(events);
        }
    }

    /// Called by the service layer right after committing a change to `user`'s
    /// access, in commit order like events.
    pub fn publish_access_change(&self, user: Uuid) {
        if !self.fed_by_database {
            self.announce_access_change(Some(user));
        }
    }

    fn send(&self, events: impl IntoIterator<Item = LiveEvent>) {
        for event in events {
            // No receivers is normal: nobody is watching.
            let _ = self.sender.send(BusMessage::Event(Arc::new(event)));
        }
    }

    fn announce_access_change(&self, user: Option<Uuid>) {
        let _ = self.sender.send(BusMessage::AccessChanged(user));
        let _ = self.access.send(user);
    }
}

/// Who made a change and why, as its event records it: a person (with the
/// reason they gave, if any), or the server itself, which always says why —
/// a drift, an unblock or a stall is set off by something else, and the
/// history names that instead of the person whose unrelated action it was.
#[derive(Debug, Clone)]
pub struct ChangedBy {
    user: Option<Uuid>,
    note: Option<String>,
}

impl ChangedBy {
    /// A person's change.
    pub fn user(id: Uuid) -> ChangedBy {
        ChangedBy {
            user: Some(id),
            note: None,
        }
    }

    /// A change the server made, and what caused it.
    pub fn system(cause: impl Into<String>) -> ChangedBy {
        ChangedBy {
            user: None,
            note: Some(cause.into()),
        }
    }

    /// The reason a person gave for their change.
    pub fn with_note(self, note: Option<String>) -> ChangedBy {
        ChangedBy { note, ..self }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        self.user
    }
}

/// Inserts the audit row for a change of `plan`, inside the caller's
/// transaction, as the last write before its commit.
pub async fn record(
    connection: &impl ConnectionTrait,
    plan: &plan::Model,
    kind: EventKind,
    from: Option<PlanStatus>,
    by: ChangedBy,
) -> AppResult<plan_event::Model> {
    record_at(connection, plan, kind, from, by, plan.updated_at).await
}

/// [`record`] for an event that did not change the plan row (a drift of its
/// feature), stamped `at` rather than with the plan's `updated_at`.
pub async fn record_at(
    connection: &impl ConnectionTrait,
    plan: &plan::Model,
    kind: EventKind,
    from: Option<PlanStatus>,
    by: ChangedBy,
    at: chrono::DateTime<chrono::Utc>,
) -> AppResult<plan_event::Model> {
    let postgres = connection.get_database_backend() == DbBackend::Postgres;
    if postgres {
        take_order_lock(connection).await?;
    }
    let event = plan_event::ActiveModel {
        project_id: Set(plan.project_id),
        feature_id: Set(plan.feature_id),
        plan_id: Set(plan.id),
        kind: Set(kind),
        from_status: Set(from),
        to_status: Set(plan.status),
        actor_id: Set(by.user),
        at: Set(at),
        note: Set(by.note),
        ..Default::default()
    }
    .insert(connection)
    .await?;
    if postgres {
        announce(connection, event.id).await?;
    }
    Ok(event)
}

/// Inserts many event rows built elsewhere (a bulk import), in the caller's
/// transaction and in commit order like [`record`], and announces them.
pub async fn record_many(
    connection: &impl ConnectionTrait,
    rows: Vec<plan_event::ActiveModel>,
) -> AppResult<()> {
    /// Rows per INSERT, well under either database's bound-parameter limit.
    const ROWS_PER_INSERT: usize = 1000;
    let postgres = connection.get_database_backend() == DbBackend::Postgres;
    if postgres {
        take_order_lock(connection).await?;
    }
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(ROWS_PER_INSERT).collect();
        plan_event::Entity::insert_many(chunk)
            .exec_without_returning(connection)
            .await?;
    }
    if postgres {
        let newest = plan_event::Entity::find()
            .order_by_desc(plan_event::Column::Id)
            .one(connection)
            .await?;
        if let Some(newest) = newest {
            announce(connection, newest.id).await?;
        }
    }
    Ok(())
}

/// Held until commit: the next writer draws its event ids only after this
/// transaction commits, which makes ids follow commit order.
async fn take_order_lock(connection: &impl ConnectionTrait) -> AppResult<()> {
    connection
        .execute_unprepared(&format!("SELECT pg_advisory_xact_lock({EVENT_ORDER_LOCK})"))
        .await?;
    Ok(())
}

/// Wakes every instance's listener, at commit, to read events up to `id`.
async fn announce(connection: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    connection
        .execute_unprepared(&format!("NOTIFY {CHANNEL}, '{id}'"))
        .await?;
    Ok(())
}

/// Inside a transaction that changes `user`'s access (a membership, a key):
/// on PostgreSQL the announcement is queued with the transaction's commit, in
/// commit order with the events, for every instance's listener.
pub async fn record_access_change(connection: &impl ConnectionTrait, user: Uuid) -> AppResult<()> {
    if connection.get_database_backend() == DbBackend::Postgres {
        connection
            .execute_unprepared(&format!("NOTIFY {CHANNEL}, '{ACCESS_PREFIX}{user}'"))
            .await?;
    }
    Ok(())
}

/// Committed events after `after`, oldest first, at most `limit`.
pub async fn events_after(
    db: &DatabaseConnection,
    after: i64,
    limit: u64,
    filter: impl FnOnce(sea_orm::Select<plan_event::Entity>) -> sea_orm::Select<plan_event::Entity>,
) -> AppResult<Vec<plan_event::Model>> {
    let query = plan_event::Entity::find()
        .filter(plan_event::Column::Id.gt(after))
        .order_by_asc(plan_event::Column::Id)
        .limit(limit);
    Ok(filter(query).all(db).await?)
}

/// Loads the plan and actor of each event, with one query per table.
pub async fn with_details(
    db: &impl ConnectionTrait,
    events: Vec<plan_event::Model>,
) -> AppResult<Vec<LiveEvent>> {
    let plan_ids: Vec<Uuid> = events.iter().map(|event| event.plan_id).collect();
    let actor_ids: Vec<Uuid> = events.iter().filter_map(|event| event.actor_id).collect();
    let plans: HashMap<Uuid, plan::Model> = plan::Entity::find()
        .filter(plan::Column::Id.is_in(plan_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|plan| (plan.id, plan))
        .collect();
    let actors: HashMap<Uuid, user::Model> = user::Entity::find()
        .filter(user::Column::Id.is_in(actor_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|user| (user.id, user))
        .collect();
    Ok(events
        .into_iter()
        .filter_map(|event| {
            let plan = plans.get(&event.plan_id)?.clone();
            let actor = event.actor_id.and_then(|id| actors.get(&id).cloned());
            Some(LiveEvent { event, plan, actor })
        })
        .collect())
}

/// The newest event id, where a fresh listener starts.
pub async fn latest_event_id(db: &DatabaseConnection) -> AppResult<i64> {
    let latest = plan_event::Entity::find()
        .order_by_desc(plan_event::Column::Id)
        .one(db)
        .await?;
    Ok(latest.map_or(0, |event| event.id))
}

/// One `LISTEN` connection for this instance. It runs until the process ends,
/// reconnecting by itself; after every (re)connection it first listens, then
/// reads anything committed meanwhile from the table, so a database blip
/// delays events but never loses them.
pub async fn run_postgres_listener(url: String, db: DatabaseConnection, bus: EventBus) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut last_published = loop {
        match latest_event_id(&db).await {
            Ok(id) => break id,
            Err(error) => {
                tracing::warn!(?error, "event listener cannot read the event log; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "event listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "event listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tracing::debug!("event listener connected");
        // Listening already: whatever commits from now on is announced. What
        // was announced while nobody listened is lost, access changes
        // included, so every subscriber re-checks its access before it is
        // handed the events committed meanwhile.
        bus.announce_access_change(None);
        last_published = catch_up(&db, &bus, last_published, None).await;
        loop {
            let first = match listener.try_recv().await {
                Ok(Some(notification)) => notification,
                // The connection dropped. sqlx would re-listen on the next
                // call, but a fresh listener lets the catch-up above run
                // strictly after listening again.
                Ok(None) => {
                    tracing::info!("event listener lost its connection; reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "event listener lost its connection; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            };
            // Notifications arrive in commit order. Events are read only up
            // to the newest id announced so far, never past an access change
            // still to be announced, so no subscriber receives an event
            // committed after a change to its access before the change itself.
            let mut announced_up_to = None;
            let mut next = Some(first);
            while let Some(notification) = next {
                match notification.payload().strip_prefix(ACCESS_PREFIX) {
                    Some(user) => {
                        if let Some(up_to) = announced_up_to.take() {
                            last_published = catch_up(&db, &bus, last_published, Some(up_to)).await;
                        }
                        // An unreadable user id makes everyone re-check.
                        bus.announce_access_change(user.parse().ok());
                    }
                    None => {
                        let id = notification.payload().parse().unwrap_or(i64::MAX);
                        announced_up_to = announced_up_to.max(Some(id));
                    }
                }
                next = listener.next_buffered();
            }
            if let Some(up_to) = announced_up_to {
                last_published = catch_up(&db, &bus, last_published, Some(up_to)).await;
            }
        }
    }
}

/// Publishes every committed event after `last_published` (up to id `up_to`
/// when given); returns the new high-water mark. Read errors are retried until
/// the database answers.
async fn catch_up(
    db: &DatabaseConnection,
    bus: &EventBus,
    mut last_published: i64,
    up_to: Option<i64>,
) -> i64 {
    loop {
        let batch = events_after(db, last_published, CATCH_UP_BATCH, |query| match up_to {
            Some(id) => query.filter(plan_event::Column::Id.lte(id)),
            None => query,
        });
        let batch = match batch.await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(?error, "event catch-up failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let Some(last) = batch.last().map(|event| event.id) else {
            return last_published;
        };
        let full = batch.len() as u64 == CATCH_UP_BATCH;
        match with_details(db, batch).await {
            Ok(events) => {
                bus.send(events);
                last_published = last;
                if !full {
                    return last_published;
                }
            }
            Err(error) => {
                tracing::warn!(?error, "event catch-up failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
