//! Agent fleets: priorities, dependencies between plans, leases and
//! heartbeats. Claiming the next plan is `claim_next.rs`; claim tokens and
//! unblocking, which every change needs, are in `changes.rs`.
//!
//! The rules themselves (bounds, token format, what blocks, cycles, what a
//! heartbeat does) are pure and live in `workflow.rs`; this module runs them
//! in transactions with their event rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::changes::{
    blockers_of, check_token, lease_end, live_event, parse_token, record_in_place, unblock_waiters,
};
use super::{Services, Viewer, WriteTransaction, now, parse_id};
use crate::error::{AppError, AppResult, Argument, Blocker, InputProblem};
use crate::events::{self, ChangedBy};
use crate::workflow::{
    self, EventKind, Heartbeat, MAX_LEASE_SECONDS, MIN_LEASE_SECONDS, PRIORITIES, PlanStatus,
};
use entity::{plan, plan_dependency};

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
