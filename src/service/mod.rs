//! Use cases. Resolvers call these and nothing lower: this is where
//! authorization, validation, transactions and events happen.

pub mod changes;
pub mod claim_next;
pub mod drift;
pub mod features;
pub mod fleet;
pub mod keys;
pub mod nodes;
pub mod pagination;
pub mod plan_lists;
pub mod plan_rows;
pub mod plans;
pub mod projects;
pub mod reads;
pub mod subscriptions;
pub mod transition;
pub mod users;
pub mod webhooks;

use std::sync::Arc;

use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, Timelike, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::error::{AppError, AppResult, Argument, InputProblem};
use crate::events::{self, EventBus, LiveEvent};
use crate::metrics::DatabaseMetrics;
use crate::storage::{SharedSpecStore, StoreError};
use crate::workflow::Role;
use entity::{plan_spec_revision, project_member, user};

/// Size limits for user input; each refusal names its limit.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_spec_bytes: usize,
    pub max_title_chars: usize,
    pub max_description_chars: usize,
    /// Longest title search: a search scans titles with LIKE, which costs
    /// in proportion to the pattern.
    pub max_search_chars: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_spec_bytes: 1024 * 1024,
            max_title_chars: 255,
            max_description_chars: 10_000,
            max_search_chars: 200,
        }
    }
}

/// Everything a use case needs; cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub db: DatabaseConnection,
    pub specs: SharedSpecStore,
    pub events: EventBus,
    pub limits: Limits,
    /// Statement counters, shared with the database connection's callback.
    pub database_metrics: Arc<DatabaseMetrics>,
    /// The reads every request makes, past sea-orm's executor.
    pub reads: reads::DirectReads,
    write_lock: Option<Arc<Mutex<()>>>,
    /// Webhook delivery settings and client (see [`Services::with_webhooks`]).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The lease of a claim that asks for none: `--stale-after`, so that
    /// without leases the seed's stall rule holds as before.
    pub default_lease_seconds: i32,
    /// Turns to compute a spec diff (`--max-concurrent-diffs`): diffs are
    /// CPU-bound, and without a bound a few requests of many diffs would
    /// take every core from everyone else.
    pub diff_turns: Arc<tokio::sync::Semaphore>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: user::Model,
    /// The API key the caller authenticated with.
    pub key_id: Uuid,
}

impl Viewer {
    pub fn id(&self) -> Uuid {
        self.user.id
    }
}

/// An open write transaction. On SQLite it also holds the process-wide write
/// lock: SQLite allows one writer, and a transaction that reads before it
/// writes fails with SQLITE_BUSY instead of waiting when another writer got
/// there first. Serializing writers in-process makes them queue instead.
/// PostgreSQL needs no such lock; row locks and conditional updates do the work.
pub struct WriteTransaction {
    pub txn: DatabaseTransaction,
    _lock: Option<OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteTransaction {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl WriteTransaction {
    pub async fn commit(self) -> AppResult<()> {
        self.txn.commit().await?;
        Ok(())
    }

    /// Commits, then announces the events while still holding the write lock,
    /// so that live subscribers receive events in id order.
    pub async fn commit_and_publish(self, bus: &EventBus, events: Vec<LiveEvent>) -> AppResult<()> {
        let WriteTransaction { txn, _lock } = self;
        txn.commit().await?;
        bus.publish_committed(events);
        Ok(())
    }

    /// Commits a change to `user`'s access (a membership, a key) and announces
    /// it, in commit order with the events, so that the user's live
    /// subscriptions re-check what they may see before their next event.
    pub async fn commit_access_change(self, bus: &EventBus, user: Uuid) -> AppResult<()> {
        events::record_access_change(&self.txn, user).await?;
        let WriteTransaction { txn, _lock } = self;
        txn.commit().await?;
        bus.publish_access_change(user);
        Ok(())
    }
}

impl Services {
    /// Also hooks the statement counters into `db`, so every statement the
    /// services run is counted.
    pub fn new(
        mut db: DatabaseConnection,
        specs: SharedSpecStore,
        events: EventBus,
        limits: Limits,
    ) -> Services {
        let write_lock =
            (db.get_database_backend() == DbBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let database_metrics = Arc::new(DatabaseMetrics::default());
        let recorder = Arc::clone(&database_metrics);
        db.set_metric_callback(move |info| recorder.record(info));
        let reads = reads::DirectReads::new(&db, Arc::clone(&database_metrics));
        Services {
            db,
            reads,
            specs,
            events,
            limits,
            database_metrics,
            write_lock,
            webhooks: Arc::new(crate::webhooks::Webhooks::new(Default::default())),
            default_lease_seconds: 24 * 3600,
            diff_turns: Arc::new(tokio::sync::Semaphore::new(2)),
        }
    }

    /// At most `turns` spec diffs computed at once (at least one).
    pub fn with_concurrent_diffs(mut self, turns: usize) -> Services {
        self.diff_turns = Arc::new(tokio::sync::Semaphore::new(turns.max(1)));
        self
    }

    /// Claims without a lease of their own last this long (`--stale-after`);
    /// at least a second, at most what the column holds.
    pub fn with_default_lease(mut self, lease: std::time::Duration) -> Services {
        self.default_lease_seconds = i32::try_from(lease.as_secs().max(1)).unwrap_or(i32::MAX);
        self
    }

    /// Delivers webhooks with these settings instead of the defaults; on
    /// PostgreSQL, holding webhooks with connections of `pool` (see
    /// [`crate::webhooks::Webhooks::with_pool`]), whose statements are
    /// counted with the others.
    pub fn with_webhooks(
        mut self,
        settings: crate::webhooks::WebhookSettings,
        pool: Option<DatabaseConnection>,
    ) -> Services {
        let mut webhooks = crate::webhooks::Webhooks::new(settings);
        if let Some(mut pool) = pool {
            let recorder = Arc::clone(&self.database_metrics);
            pool.set_metric_callback(move |info| recorder.record(info));
            webhooks = webhooks.with_pool(pool);
        }
        self.webhooks = Arc::new(webhooks);
        self
    }

    pub async fn begin_write(&self) -> AppResult<WriteTransaction> {
        let lock = match &self.write_lock {
            Some(mutex) => Some(Arc::clone(mutex).lock_owned().await),
            None => None,
        };
        let txn = self.db.begin().await?;
        Ok(WriteTransaction { txn, _lock: lock })
    }

    /// `/readyz`'s spec check: the store answers, and holds the newest spec
    /// the database names. Instances that share a database but keep specs in
    /// a directory each fail this as soon as another one has written a spec.
    pub async fn check_spec_store(&self) -> Result<(), StoreError> {
        self.specs.check().await?;
        let newest = plan_spec_revision::Entity::find()
            .order_by_desc(plan_spec_revision::Column::CreatedAt)
            .one(&self.db)
            .await
            .map_err(|error| StoreError::Unavailable(format!("database: {error}")))?;
        match newest {
            Some(revision) => self.specs.get(&revision.spec_key).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// The caller's role in a project, if any.
    pub async fn role_in(&self, project: Uuid, user: Uuid) -> AppResult<Option<Role>> {
        let membership = project_member::Entity::find()
            .filter(project_member::Column::ProjectId.eq(project))
            .filter(project_member::Column::UserId.eq(user))
            .one(&self.db)
            .await?;
        Ok(membership.map(|member| member.role))
    }

    /// Membership check for reads: any role will do.
    pub async fn require_member(&self, viewer: &Viewer, project: Uuid) -> AppResult<Role> {
        self.role_in(project, viewer.id())
            .await?
            .ok_or_else(AppError::not_member)
    }

    /// Membership check for writes: owners and members, not viewers.
    pub async fn require_writer(&self, viewer: &Viewer, project: Uuid) -> AppResult<Role> {
        let role = self.require_member(viewer, project).await?;
        if role.can_write() {
            Ok(role)
        } else {
            Err(AppError::Forbidden(
                "Viewers can read this project but not change it; ask an owner for the member role"
                    .into(),
            ))
        }
    }

    /// A short name (a title, a project's name, a key's label): trimmed,
    /// non-empty, bounded.
    pub fn validate_title(&self, argument: Argument, title: &str) -> AppResult<String> {
        let title = title.trim();
        let limit = self.limits.max_title_chars;
        refuse_nul(argument, title)?;
        if title.is_empty() {
            return Err(AppError::invalid(argument, InputProblem::Empty));
        }
        if title.chars().count() > limit {
            return Err(AppError::invalid(argument, InputProblem::TooLong { limit }));
        }
        Ok(title.to_owned())
    }

    pub fn validate_description(&self, description: Option<String>) -> AppResult<Option<String>> {
        self.validate_prose(Argument::Description, description)
    }

    /// A short free text (a description, a note) within the description
    /// limit; blank counts as none.
    pub fn validate_prose(
        &self,
        argument: Argument,
        text: Option<String>,
    ) -> AppResult<Option<String>> {
        let limit = self.limits.max_description_chars;
        let Some(text) = text else {
            return Ok(None);
        };
        refuse_nul(argument, &text)?;
        if text.chars().count() > limit {
            let problem = InputProblem::TooLong { limit };
            return Err(AppError::invalid(argument, problem));
        }
        Ok(Some(text).filter(|text| !text.trim().is_empty()))
    }

    /// Specs and work artifacts: markdown, non-empty, bounded.
    pub fn validate_markdown(&self, argument: Argument, content: &str) -> AppResult<()> {
        let limit = self.limits.max_spec_bytes;
        if content.len() > limit {
            let bytes = content.len();
            return Err(AppError::invalid(
                argument,
                InputProblem::TooLarge { bytes, limit },
            ));
        }
        if content.trim().is_empty() {
            return Err(AppError::invalid(argument, InputProblem::Empty));
        }
        refuse_nul(argument, content)
    }

    /// A title search, bounded; `None` when there is nothing to search for.
    pub fn validate_search<'a>(&self, search: Option<&'a str>) -> AppResult<Option<&'a str>> {
        let Some(search) = search.map(str::trim).filter(|text| !text.is_empty()) else {
            return Ok(None);
        };
        let limit = self.limits.max_search_chars;
        if search.chars().count() > limit {
            let problem = InputProblem::TooLong { limit };
            return Err(AppError::invalid(Argument::Search, problem));
        }
        refuse_nul(Argument::Search, search)?;
        Ok(Some(search))
    }
}

/// PostgreSQL cannot store NUL in text, so it is refused before it gets there.
pub(crate) fn refuse_nul(argument: Argument, text: &str) -> AppResult<()> {
    if text.contains('\0') {
        Err(AppError::invalid(argument, InputProblem::ContainsNul))
    } else {
        Ok(())
    }
}

/// Now, at the precision both databases store (microseconds), so a value
/// written and read back compares equal.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A timestamp as every interface writes it (GraphQL's `DateTime`, cursors,
/// MCP's JSON): RFC 3339 in UTC with microseconds, the precision stored, so
/// a program can compare values from anywhere, e.g. `2026-11-25T18:21:07.123456Z`.
///
/// Written digit by digit: chrono's formatter goes through `core::fmt` and
/// cost about 1 500 instructions per timestamp, a tenth of a dashboard
/// page's resolving. Years outside 0–9999 and leap seconds (which need a
/// sign, a fifth digit or a 60th second) are left to chrono.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    let micros = at.timestamp_subsec_micros();
    let (date, time) = (at.date_naive(), at.time());
    let Ok(year) = u32::try_from(date.year()) else {
        return at.to_rfc3339_opts(SecondsFormat::Micros, true);
    };
    if year > 9999 || micros >= 1_000_000 {
        return at.to_rfc3339_opts(SecondsFormat::Micros, true);
    }
    let mut text = String::with_capacity(27);
    let mut digits = |value: u32, width: u32, then: char| {
        for place in (0..width).rev() {
            let digit = value / 10u32.pow(place) % 10;
            text.push(char::from(b'0' + digit as u8));
        }
        text.push(then);
    };
    digits(year, 4, '-');
    digits(date.month(), 2, '-');
    digits(date.day(), 2, 'T');
    digits(time.hour(), 2, ':');
    digits(time.minute(), 2, ':');
    digits(time.second(), 2, '.');
    digits(micros, 6, 'Z');
    text
}

/// A timestamp a client sent, in any offset, as UTC; `None` unless RFC 3339.
pub fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Parses an id argument, naming the argument when it is not a UUID.
pub fn parse_id(argument: Argument, value: &str) -> AppResult<Uuid> {
    Uuid::parse_str(value.trim()).map_err(|_| {
        let value = value.to_owned();
        AppError::invalid(argument, InputProblem::NotAnId { value })
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

    use super::rfc3339;

    fn chrono_rfc3339(at: DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let mut samples = vec![
            Utc.with_ymd_and_hms(2026, 11, 30, 4, 47, 46).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 15, 12, 0, 0).unwrap(),
            DateTime::<Utc>::default(),
        ];
        // A leap second: chrono shows it as second 60.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 1_500_000)
            .unwrap()
            .and_utc();
        samples.push(leap);
        // 10 000 instants between 1906 and 2223, every digit position varied.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..10_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let seconds = (state >> 20) as i64 % 10_000_000_000 - 2_000_000_000;
            let micros = (state % 1_000_000) as u32;
            samples.push(DateTime::from_timestamp(seconds, micros * 1000).unwrap());
        }
        for at in samples {
            assert_eq!(rfc3339(at), chrono_rfc3339(at), "{at:?}");
        }
    }
}
