//! Agent fleets: priorities, dependencies between plans, claiming the next
//! claimable plan, leases with fencing tokens and heartbeats.
//!
//! The rules themselves (bounds, token format, what blocks, cycles, what a
//! heartbeat does) are pure and live in `workflow.rs`; this module runs them
//! in transactions with their event rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, IntoIden, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult,
    JoinType, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::plans::{Outcome, live_event};
use super::{Services, Viewer, WriteTransaction, now, parse_id};
use crate::error::{AppError, AppResult, Argument, Blocker, InputProblem};
use crate::events::{self, ChangedBy, LiveEvent};
use crate::workflow::{
    self, ClaimToken, EventKind, Heartbeat, MAX_LEASE_SECONDS, MIN_LEASE_SECONDS, PRIORITIES,
    PlanStatus, SubmitRetry, SubmitTarget,
};
use entity::{feature_version, plan, plan_dependency, plan_event};

/// Serializes dependency changes of one project on PostgreSQL ("plan_dep"),
/// so that two concurrent additions cannot close a cycle neither saw.
const DEPENDENCY_LOCK: i32 = 0x706c_6470;

/// How many times a heartbeat that lost a race re-reads the plan.
const HEARTBEAT_ATTEMPTS: usize = 4;

/// `priority`, checked against [`PRIORITIES`].
pub fn validate_priority(priority: i32) -> AppResult<i32> {
    if PRIORITIES.contains(&priority) {
        Ok(priority)
    } else {
        Err(AppError::invalid(
            Argument::Priority,
            InputProblem::OutOfRange {
                min: i64::from(*PRIORITIES.start()),
                max: i64::from(*PRIORITIES.end()),
                unit: "(0 = most urgent, 4 = someday)",
            },
        ))
    }
}

/// The token sent with a change of `plan`, parsed; a malformed token or one
/// of another plan is BAD_USER_INPUT (a client bug, not a lost race).
pub fn parse_token(plan: Uuid, token: Option<&str>) -> AppResult<Option<ClaimToken>> {
    let Some(text) = token else {
        return Ok(None);
    };
    let token = ClaimToken::parse(text)
        .ok_or_else(|| AppError::invalid(Argument::ClaimToken, InputProblem::NotAClaimToken))?;
    if token.plan != plan {
        return Err(AppError::invalid(
            Argument::ClaimToken,
            InputProblem::TokenOfAnotherPlan,
        ));
    }
    Ok(Some(token))
}

/// STALE_CLAIM unless `token` (when sent) is the plan's current claim.
pub fn check_token(plan: &plan::Model, token: Option<ClaimToken>) -> AppResult<()> {
    match token {
        Some(token) if current_token(plan) != Some(token) => {
            // Counted apart from lost claim races: a fleet with many stale
            // tokens has workers that outlive their leases.
            metrics::counter!("plangraph_claim_refusals_total", "reason" => "stale_claim")
                .increment(1);
            Err(AppError::StaleClaim { plan: plan.id })
        }
        _ => Ok(()),
    }
}

/// The accepted result again when a submit repeats the one that put `plan`
/// where it is (`workflow::repeats_accepted_submit`); `None` otherwise.
pub async fn accepted_submit(
    db: &impl ConnectionTrait,
    plan: &plan::Model,
    viewer: &Viewer,
    target: SubmitTarget,
    artifacts: &str,
    token: Option<ClaimToken>,
) -> AppResult<Option<Outcome>> {
    let now = SubmitRetry {
        status: plan.status,
        is_submitter: plan.submitted_by == Some(viewer.id()),
        stored_artifacts: plan.work_artifacts.as_deref(),
        claim_generation: plan.claim_generation,
        token_generation: token.map(|token| token.generation),
    };
    if !workflow::repeats_accepted_submit(target, artifacts, now) {
        return Ok(None);
    }
    // The status the plan left, as the accepted answer said it.
    let submitted = plan_event::Entity::find()
        .filter(plan_event::Column::PlanId.eq(plan.id))
        .filter(plan_event::Column::ActorId.eq(viewer.id()))
        .filter(plan_event::Column::ToStatus.eq(plan.status))
        .order_by_desc(plan_event::Column::Id)
        .one(db)
        .await?;
    let version = match plan.implemented_version {
        Some(number) => {
            feature_version::Entity::find()
                .filter(feature_version::Column::FeatureId.eq(plan.feature_id))
                .filter(feature_version::Column::Version.eq(number))
                .one(db)
                .await?
        }
        None => None,
    };
    Ok(Some(Outcome {
        plan: plan.clone(),
        previous: submitted
            .and_then(|event| event.from_status)
            .unwrap_or(plan.status),
        version,
    }))
}

/// The plan's current claim token; `None` when nobody holds it.
pub fn current_token(plan: &plan::Model) -> Option<ClaimToken> {
    ClaimToken::current(plan.id, plan.claimed_by.is_some(), plan.claim_generation)
}

/// When a lease of `seconds` taken or renewed `at` expires.
pub fn lease_end(at: DateTime<Utc>, seconds: i32) -> DateTime<Utc> {
    at + chrono::Duration::seconds(i64::from(seconds))
}

/// `NOT EXISTS` an unfinished blocker of the plan whose id is `waiter`: the
/// "not blocked" condition, inside the statement that claims, so a claim
/// never commits against a blocker it did not see.
pub fn not_blocked(waiter: SimpleExpr) -> SimpleExpr {
    has_blocker(waiter, false).not()
}

/// `EXISTS` a blocker of the plan whose id is `waiter` that is unfinished
/// (any status but COMPLETED), or with `failed_only` one that FAILED: a
/// plan that waits for a failed plan waits until a person removes or
/// replaces the dependency.
pub fn has_blocker(waiter: SimpleExpr, failed_only: bool) -> SimpleExpr {
    let blocker = Alias::new("blocker").into_iden();
    let status = Expr::col((blocker.clone(), plan::Column::Status));
    let holds_back = if failed_only {
        status.eq(PlanStatus::Failed.as_str())
    } else {
        status.ne(PlanStatus::Completed.as_str())
    };
    let unfinished = Query::select()
        .expr(Expr::val(1))
        .from(plan_dependency::Entity)
        .join_as(
            JoinType::InnerJoin,
            plan::Entity,
            blocker.clone(),
            Expr::col((blocker.clone(), plan::Column::Id)).equals((
                plan_dependency::Entity,
                plan_dependency::Column::BlockedByPlanId,
            )),
        )
        .and_where(Expr::col((plan_dependency::Entity, plan_dependency::Column::PlanId)).eq(waiter))
        .and_where(holds_back)
        .to_owned();
    Expr::exists(unfinished)
}

/// A blocker of some plan with its status.
#[derive(Debug, FromQueryResult)]
struct BlockerRow {
    waiter: Uuid,
    id: Uuid,
    title: String,
    status: PlanStatus,
}

/// The blockers of each of `plans` (any status), oldest first.
async fn blockers_of(
    connection: &impl ConnectionTrait,
    plans: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<Blocker>>> {
    let rows = plan_dependency::Entity::find()
        .select_only()
        .column_as(plan_dependency::Column::PlanId, "waiter")
        .column_as(plan::Column::Id, "id")
        .column_as(plan::Column::Title, "title")
        .column_as(plan::Column::Status, "status")
        .join(
            JoinType::InnerJoin,
            plan_dependency::Entity::belongs_to(plan::Entity)
                .from(plan_dependency::Column::BlockedByPlanId)
                .to(plan::Column::Id)
                .into(),
        )
        .filter(plan_dependency::Column::PlanId.is_in(plans.iter().copied()))
        .order_by_asc(plan::Column::CreatedAt)
        .order_by_asc(plan::Column::Id)
        .into_model::<BlockerRow>()
        .all(connection)
        .await?;
    let mut grouped: HashMap<Uuid, Vec<Blocker>> = HashMap::new();
    for row in rows {
        grouped.entry(row.waiter).or_default().push(Blocker {
            id: row.id,
            title: row.title,
            status: row.status,
        });
    }
    Ok(grouped)
}

/// The blockers of `plan` that are not COMPLETED.
pub async fn unfinished_blockers(
    connection: &impl ConnectionTrait,
    plan: Uuid,
) -> AppResult<Vec<Blocker>> {
    let mut blockers = blockers_of(connection, &[plan]).await?;
    Ok(blockers
        .remove(&plan)
        .unwrap_or_default()
        .into_iter()
        .filter(|blocker| blocker.status != PlanStatus::Completed)
        .collect())
}

/// Records `kind` for a change that left the plan's status as it was
/// (priority, dependencies, unblocking), ready to publish after the commit.
async fn record_in_place(
    connection: &impl ConnectionTrait,
    plan: &plan::Model,
    kind: EventKind,
    viewer: &Viewer,
) -> AppResult<LiveEvent> {
    let by = ChangedBy::user(viewer.id());
    let event = events::record(connection, plan, kind, Some(plan.status), by).await?;
    Ok(live_event(event, plan, Some(viewer)))
}

/// In the transaction that completed `completed` (or removed its
/// dependency `only_for`): each waiting plan that no unfinished blocker
/// holds any more gets an UNBLOCKED event (and a fresh `updated_at`).
///
/// Called after the transaction recorded its own event, so on PostgreSQL it
/// holds the event-order lock: a concurrent completion of another blocker of
/// the same plan either committed before (and is seen here) or sees this one.
/// The server records the events, with `cause` as their note.
pub async fn unblock_waiters(
    txn: &WriteTransaction,
    blocker: Uuid,
    only_for: Option<Uuid>,
    cause: &str,
) -> AppResult<Vec<LiveEvent>> {
    let waiters: Vec<Uuid> = match only_for {
        Some(waiter) => vec![waiter],
        None => {
            plan_dependency::Entity::find()
                .select_only()
                .column(plan_dependency::Column::PlanId)
                .filter(plan_dependency::Column::BlockedByPlanId.eq(blocker))
                .into_tuple()
                .all(&**txn)
                .await?
        }
    };
    if waiters.is_empty() {
        return Ok(Vec::new());
    }
    let blockers = blockers_of(&**txn, &waiters).await?;
    let free: Vec<Uuid> = waiters
        .into_iter()
        .filter(|waiter| {
            let statuses = blockers.get(waiter).into_iter().flatten().map(|b| b.status);
            !workflow::is_blocked(statuses)
        })
        .collect();
    if free.is_empty() {
        return Ok(Vec::new());
    }
    let at = now();
    let unblocked = plan::Entity::update_many()
        .col_expr(plan::Column::UpdatedAt, Expr::value(at))
        .filter(plan::Column::Id.is_in(free))
        .filter(plan::Column::Status.is_not_in([PlanStatus::Completed, PlanStatus::Failed]))
        .exec_with_returning(&**txn)
        .await?;
    let mut live = Vec::with_capacity(unblocked.len());
    for plan in unblocked {
        let by = ChangedBy::system(cause);
        let event =
            events::record(&**txn, &plan, EventKind::Unblocked, Some(plan.status), by).await?;
        live.push(live_event(event, &plan, None));
    }
    Ok(live)
}

impl Services {
    /// A lease asked for (seconds), checked; the default when none is asked.
    pub fn validate_lease(&self, lease_seconds: Option<i32>) -> AppResult<i32> {
        let Some(seconds) = lease_seconds else {
            return Ok(self.default_lease_seconds);
        };
        if (MIN_LEASE_SECONDS..=MAX_LEASE_SECONDS).contains(&i64::from(seconds)) {
            Ok(seconds)
        } else {
            Err(AppError::invalid(
                Argument::LeaseSeconds,
                InputProblem::OutOfRange {
                    min: MIN_LEASE_SECONDS,
                    max: MAX_LEASE_SECONDS,
                    unit: "seconds (7 days)",
                },
            ))
        }
    }

    /// The blockers of each plan, any status: `Plan.blockedBy` and `isBlocked`.
    pub async fn blockers_by_plans(&self, plans: &[Uuid]) -> AppResult<HashMap<Uuid, Vec<Uuid>>> {
        let grouped = blockers_of(&self.db, plans).await?;
        Ok(grouped
            .into_iter()
            .map(|(waiter, blockers)| (waiter, blockers.into_iter().map(|b| b.id).collect()))
            .collect())
    }

    /// What `plan` waits for, each with its title and status (finished ones
    /// included), for members of its project.
    pub async fn blockers_of_plan(&self, plan: Uuid) -> AppResult<Vec<Blocker>> {
        Ok(blockers_of(&self.db, &[plan])
            .await?
            .remove(&plan)
            .unwrap_or_default())
    }

    /// The plans waiting for each plan: `Plan.blocks`.
    pub async fn waiters_by_plans(&self, plans: &[Uuid]) -> AppResult<HashMap<Uuid, Vec<Uuid>>> {
        let rows: Vec<(Uuid, Uuid)> = plan_dependency::Entity::find()
            .select_only()
            .column(plan_dependency::Column::BlockedByPlanId)
            .column(plan_dependency::Column::PlanId)
            .filter(plan_dependency::Column::BlockedByPlanId.is_in(plans.iter().copied()))
            .order_by_asc(plan_dependency::Column::PlanId)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut grouped: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for (blocker, waiter) in rows {
            grouped.entry(blocker).or_default().push(waiter);
        }
        Ok(grouped)
    }

    /// Members change a plan's priority; PRIORITY_CHANGED records it.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn set_plan_priority(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        priority: i32,
    ) -> AppResult<plan::Model> {
        let plan_id = parse_id(Argument::PlanId, plan_id)?;
        let priority = validate_priority(priority)?;
        let before = self.find_plan(plan_id).await?;
        self.require_writer(viewer, before.project_id).await?;
        if before.priority == priority {
            return Ok(before);
        }
        let txn = self.begin_write().await?;
        let Some(plan) = plan::Entity::update_many()
            .col_expr(plan::Column::Priority, Expr::value(priority))
            .col_expr(plan::Column::UpdatedAt, Expr::value(now()))
            .filter(plan::Column::Id.eq(plan_id))
            .exec_with_returning(&*txn)
            .await?
            .into_iter()
            .next()
        else {
            return Err(AppError::NotFound(format!("No plan with id {plan_id}")));
        };
        let live = record_in_place(&*txn, &plan, EventKind::PriorityChanged, viewer).await?;
        txn.commit_and_publish(&self.events, vec![live]).await?;
        Ok(plan)
    }

    /// The waiting plan and the blocker's id of a dependency to add or
    /// remove, once the caller is known to be a writer of the plan's project.
    async fn dependency_of(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        blocked_by_plan_id: &str,
    ) -> AppResult<(plan::Model, Uuid)> {
        let plan_id = parse_id(Argument::PlanId, plan_id)?;
        let blocker_id = parse_id(Argument::BlockedByPlanId, blocked_by_plan_id)?;
        let waiter = self.find_plan(plan_id).await?;
        self.require_writer(viewer, waiter.project_id).await?;
        Ok((waiter, blocker_id))
    }

    /// `plan` waits for `blocked_by` from now on (members; one project; no
    /// cycles). Adding a dependency that exists already changes nothing.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn add_plan_dependency(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        blocked_by_plan_id: &str,
    ) -> AppResult<plan::Model> {
        let (waiter, blocker_id) = self
            .dependency_of(viewer, plan_id, blocked_by_plan_id)
            .await?;
        let plan_id = waiter.id;
        if plan_id == blocker_id {
            return Err(AppError::invalid(
                Argument::BlockedByPlanId,
                InputProblem::SelfDependency,
            ));
        }
        let blocker = self.find_plan(blocker_id).await?;
        if blocker.project_id != waiter.project_id {
            return Err(AppError::invalid(
                Argument::BlockedByPlanId,
                InputProblem::OtherProject,
            ));
        }
        let txn = self.begin_write().await?;
        lock_dependencies(&txn, waiter.project_id).await?;
        let edges: Vec<(Uuid, Uuid)> = plan_dependency::Entity::find()
            .select_only()
            .column(plan_dependency::Column::PlanId)
            .column(plan_dependency::Column::BlockedByPlanId)
            .filter(plan_dependency::Column::ProjectId.eq(waiter.project_id))
            .into_tuple()
            .all(&*txn)
            .await?;
        if edges.contains(&(plan_id, blocker_id)) {
            return Ok(waiter);
        }
        // Checked under the project's dependency lock, so two additions at
        // once cannot both take the last place.
        let blockers = edges.iter().filter(|(waiting, _)| *waiting == plan_id);
        if blockers.count() >= workflow::MAX_BLOCKERS {
            return Err(AppError::invalid(
                Argument::PlanId,
                InputProblem::TooManyBlockers {
                    limit: workflow::MAX_BLOCKERS,
                },
            ));
        }
        let waiters = edges.iter().filter(|(_, blocking)| *blocking == blocker_id);
        if waiters.count() >= workflow::MAX_WAITERS {
            return Err(AppError::invalid(
                Argument::BlockedByPlanId,
                InputProblem::TooManyWaiters {
                    limit: workflow::MAX_WAITERS,
                },
            ));
        }
        if let Some(cycle) = workflow::dependency_cycle(&edges, plan_id, blocker_id) {
            // Only the plans the refusal names: a cycle may run through thousands.
            let named_count = cycle.len().min(crate::error::CYCLE_PLANS_NAMED);
            let titles = self.titles(&cycle[..named_count]).await?;
            let named = cycle
                .iter()
                .map(|id| match titles.get(id) {
                    Some(title) => crate::error::plan_named(title, *id),
                    None => id.to_string(),
                })
                .collect();
            return Err(AppError::invalid(
                Argument::BlockedByPlanId,
                InputProblem::DependencyCycle { cycle: named },
            ));
        }
        let at = now();
        plan_dependency::ActiveModel {
            plan_id: Set(plan_id),
            blocked_by_plan_id: Set(blocker_id),
            project_id: Set(waiter.project_id),
            created_by: Set(viewer.id()),
            created_at: Set(at),
        }
        .insert(&*txn)
        .await?;
        let plan = touch(&txn, plan_id, at).await?;
        let live = record_in_place(&*txn, &plan, EventKind::DependencyAdded, viewer).await?;
        txn.commit_and_publish(&self.events, vec![live]).await?;
        Ok(plan)
    }

    /// `plan` no longer waits for `blocked_by`; if nothing else holds it, it
    /// gets an UNBLOCKED event too. Removing a dependency that does not
    /// exist changes nothing.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn remove_plan_dependency(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        blocked_by_plan_id: &str,
    ) -> AppResult<plan::Model> {
        let (waiter, blocker_id) = self
            .dependency_of(viewer, plan_id, blocked_by_plan_id)
            .await?;
        let plan_id = waiter.id;
        let txn = self.begin_write().await?;
        lock_dependencies(&txn, waiter.project_id).await?;
        let removed = plan_dependency::Entity::delete_many()
            .filter(plan_dependency::Column::PlanId.eq(plan_id))
            .filter(plan_dependency::Column::BlockedByPlanId.eq(blocker_id))
            .exec(&*txn)
            .await?;
        if removed.rows_affected == 0 {
            return Ok(waiter);
        }
        let plan = touch(&txn, plan_id, now()).await?;
        let mut live =
            vec![record_in_place(&*txn, &plan, EventKind::DependencyRemoved, viewer).await?];
        let removed_blocker = plan::Entity::find_by_id(blocker_id).one(&*txn).await?;
        if let Some(blocker) = removed_blocker.filter(|b| b.status != PlanStatus::Completed) {
            let cause = format!(
                "{} removed its dependency on \"{}\"",
                viewer.user.email, blocker.title
            );
            live.extend(unblock_waiters(&txn, blocker_id, Some(plan_id), &cause).await?);
        }
        let plan = match live.last() {
            Some(last) if last.plan.id == plan_id => last.plan.clone(),
            _ => plan,
        };
        txn.commit_and_publish(&self.events, live).await?;
        Ok(plan)
    }

    /// The claimer renews the lease of a plan they hold. Cheap: no spec, no
    /// event (renewing is not a change anyone watches for), `updatedAt`
    /// unchanged. A STALLED plan's holder resumes it instead: IN_PROGRESS
    /// again, with an event.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn heartbeat_plan(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        claim_token: Option<&str>,
    ) -> AppResult<plan::Model> {
        let plan_id = parse_id(Argument::PlanId, plan_id)?;
        let token = parse_token(plan_id, claim_token)?;
        for _ in 0..HEARTBEAT_ATTEMPTS {
            let before = self.find_plan(plan_id).await?;
            self.require_writer(viewer, before.project_id).await?;
            check_token(&before, token)?;
            let Some(effect) = workflow::heartbeat(before.status) else {
                return Err(AppError::Conflict(format!(
                    "Nobody holds this plan (it is {}), so there is no lease to renew; claim it first",
                    before.status
                )));
            };
            if before.claimed_by != Some(viewer.id()) {
                return Err(AppError::Forbidden(
                    "Only the user who claimed this plan can renew its lease".into(),
                ));
            }
            let at = now();
            let lease = before.lease_seconds.unwrap_or(self.default_lease_seconds);
            let txn = self.begin_write().await?;
            let mut update = plan::Entity::update_many()
                .col_expr(plan::Column::LastActivityAt, Expr::value(at))
                .col_expr(plan::Column::LeaseSeconds, Expr::value(Some(lease)))
                .col_expr(
                    plan::Column::LeaseExpiresAt,
                    Expr::value(Some(lease_end(at, lease))),
                )
                .filter(plan::Column::Id.eq(plan_id))
                .filter(plan::Column::Status.eq(before.status))
                .filter(plan::Column::ClaimedBy.eq(viewer.id()))
                .filter(plan::Column::ClaimGeneration.eq(before.claim_generation));
            if effect == Heartbeat::Resume {
                update = update
                    .col_expr(plan::Column::Status, Expr::value(PlanStatus::InProgress))
                    .col_expr(plan::Column::UpdatedAt, Expr::value(at));
            }
            let Some(plan) = update.exec_with_returning(&*txn).await?.into_iter().next() else {
                continue;
            };
            if effect == Heartbeat::Resume {
                let event = events::record(
                    &*txn,
                    &plan,
                    EventKind::StatusChanged,
                    Some(before.status),
                    ChangedBy::user(viewer.id()),
                )
                .await?;
                let live = live_event(event, &plan, Some(viewer));
                txn.commit_and_publish(&self.events, vec![live]).await?;
            } else {
                txn.commit().await?;
            }
            return Ok(plan);
        }
        Err(AppError::Conflict(
            "The plan kept changing while this heartbeat was applied; reload it and retry".into(),
        ))
    }

    async fn titles(&self, ids: &[Uuid]) -> AppResult<HashMap<Uuid, String>> {
        let rows: Vec<(Uuid, String)> = plan::Entity::find()
            .select_only()
            .column(plan::Column::Id)
            .column(plan::Column::Title)
            .filter(plan::Column::Id.is_in(ids.iter().copied()))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().collect())
    }
}

/// On PostgreSQL, the project's dependency lock until the transaction ends
/// (SQLite's write lock already serializes every writer).
async fn lock_dependencies(txn: &WriteTransaction, project: Uuid) -> AppResult<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        let bytes = project.as_bytes();
        let key = i32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({DEPENDENCY_LOCK}, {key})"
        ))
        .await?;
    }
    Ok(())
}

/// Marks the plan changed now and returns it (its dependencies changed).
async fn touch(txn: &WriteTransaction, plan: Uuid, at: DateTime<Utc>) -> AppResult<plan::Model> {
    plan::Entity::update_many()
        .col_expr(plan::Column::UpdatedAt, Expr::value(at))
        .filter(plan::Column::Id.eq(plan))
        .exec_with_returning(&**txn)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound(format!("No plan with id {plan}")))
}
