//! `claimNextPlan`: what a fleet agent calls in its loop. It hands back work
//! that came back to the caller from review first, then claims the best
//! claimable plan (taking over a stalled one when asked), and when there is
//! none counts what holds the rest back, so the answer says why.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, Func, IntoIden, LockBehavior, LockType, Query, SimpleExpr,
    SubQueryStatement,
};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::changes::{has_blocker, lease_end, live_event, not_blocked, spec_changed_since};
use super::{Services, Viewer, now, parse_id};
use crate::error::{AppError, AppResult, Argument};
use crate::events::{self, ChangedBy};
use crate::workflow::{Backlog, EventKind, PlanStatus};
use entity::{feature, plan, plan_event};

/// What `claimNextPlan` may take.
#[derive(Debug, Clone, Copy)]
pub struct NextPlanFilter {
    pub project: Uuid,
    pub feature: Option<Uuid>,
    /// Also STALLED plans whose lease expired: their holder is fenced out.
    pub include_stalled: bool,
    /// Leave out plans whose spec drifted (see `crate::drift`): they need a
    /// rebase by someone who re-read the feature first.
    pub skip_drifted: bool,
}

/// What `claimNextPlan` found for the caller.
#[derive(Debug, Clone)]
pub enum NextPlan {
    /// Claimed by this call; `took_over` when it was STALLED, held by
    /// another claim whose holder's notes are in its spec.
    Claimed {
        plan: plan::Model,
        took_over: Option<TakeOver>,
    },
    /// Work the caller submitted that a reviewer sent back: the caller holds
    /// it already, and it comes before new work.
    Returned {
        plan: plan::Model,
        sent_back: plan_event::Model,
    },
    /// Nothing to claim; what holds the open plans back.
    Nothing(Backlog),
}

/// The claim a take-over ended.
#[derive(Debug, Clone)]
pub struct TakeOver {
    /// Who held the plan; `None` when nobody did (a stalled plan released).
    pub previous_holder: Option<Uuid>,
    /// Their last activity on it (update or heartbeat).
    pub last_activity_at: DateTime<Utc>,
}

impl Services {
    /// [`Services::claim_next_plan`] with the ids as a client sent them.
    pub async fn claim_next(
        &self,
        viewer: &Viewer,
        project_id: &str,
        feature_id: Option<&str>,
        lease_seconds: Option<i32>,
        include_stalled: bool,
        skip_drifted: bool,
    ) -> AppResult<NextPlan> {
        let filter = NextPlanFilter {
            project: parse_id(Argument::ProjectId, project_id)?,
            feature: feature_id
                .map(|feature| parse_id(Argument::FeatureId, feature))
                .transpose()?,
            include_stalled,
            skip_drifted,
        };
        self.claim_next_plan(viewer, filter, lease_seconds).await
    }

    /// Work sent back to the caller comes first ([`Self::sent_back_to`]);
    /// otherwise atomically claims for the caller the best claimable plan of
    /// the project (or feature): READY (or, when asked, STALLED with an
    /// expired lease), not blocked, most urgent first, then oldest. When
    /// there is none — not an error, a fleet's normal "nothing to do" — the
    /// open plans are counted by what holds them back.
    ///
    /// On PostgreSQL one `UPDATE … WHERE id IN (SELECT … FOR NO KEY UPDATE SKIP
    /// LOCKED LIMIT 1) RETURNING *`: concurrent callers skip each other's
    /// candidate rows instead of waiting on them, so none ever sees a
    /// CONFLICT. On SQLite the same statement runs under the write lock.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn claim_next_plan(
        &self,
        viewer: &Viewer,
        filter: NextPlanFilter,
        lease_seconds: Option<i32>,
    ) -> AppResult<NextPlan> {
        self.require_writer(viewer, filter.project).await?;
        if let Some(feature) = filter.feature {
            let found = feature::Entity::find_by_id(feature).one(&self.db).await?;
            if found.is_none_or(|found| found.project_id != filter.project) {
                return Err(AppError::NotFound(format!(
                    "No feature with id {feature} in this project"
                )));
            }
        }
        let lease = self.validate_lease(lease_seconds)?;
        if let Some(returned) = self.sent_back_to(viewer, &filter).await? {
            return Ok(returned);
        }
        match self.claim_best(viewer, &filter, lease).await? {
            Some(claimed) => Ok(claimed),
            None => Ok(NextPlan::Nothing(self.backlog(&filter).await?)),
        }
    }

    /// The oldest plan of the filter that the caller holds IN_PROGRESS
    /// because a reviewer sent it back, and that the caller has not touched
    /// since (its newest event is still the send-back).
    async fn sent_back_to(
        &self,
        viewer: &Viewer,
        filter: &NextPlanFilter,
    ) -> AppResult<Option<NextPlan>> {
        let newest_from = Query::select()
            .column((plan_event::Entity, plan_event::Column::FromStatus))
            .from(plan_event::Entity)
            .and_where(
                Expr::col((plan_event::Entity, plan_event::Column::PlanId))
                    .equals((plan::Entity, plan::Column::Id)),
            )
            .order_by(plan_event::Column::Id, sea_orm::Order::Desc)
            .limit(1)
            .to_owned();
        let newest_from = SimpleExpr::SubQuery(
            None,
            Box::new(SubQueryStatement::SelectStatement(newest_from)),
        );
        let mut query = plan::Entity::find()
            .filter(plan::Column::ProjectId.eq(filter.project))
            .filter(plan::Column::Status.eq(PlanStatus::InProgress))
            .filter(plan::Column::ClaimedBy.eq(viewer.id()))
            .filter(Expr::expr(newest_from).eq(PlanStatus::Review.as_str()))
            .order_by_asc(plan::Column::UpdatedAt)
            .order_by_asc(plan::Column::Id);
        if let Some(feature) = filter.feature {
            query = query.filter(plan::Column::FeatureId.eq(feature));
        }
        let Some(plan) = query.one(&self.db).await? else {
            return Ok(None);
        };
        let sent_back = plan_event::Entity::find()
            .filter(plan_event::Column::PlanId.eq(plan.id))
            .order_by_desc(plan_event::Column::Id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::internal("a sent-back plan without its event"))?;
        Ok(Some(NextPlan::Returned { plan, sent_back }))
    }

    /// Claims the best claimable plan for the caller; `None` when there is none.
    async fn claim_best(
        &self,
        viewer: &Viewer,
        filter: &NextPlanFilter,
        lease: i32,
    ) -> AppResult<Option<NextPlan>> {
        let postgres = self.db.get_database_backend() == DbBackend::Postgres;
        let txn = self.begin_write().await?;
        let at = now();
        let candidate = Alias::new("candidate").into_iden();
        let column = |name: plan::Column| Expr::col((candidate.clone(), name));
        let ready = column(plan::Column::Status).eq(PlanStatus::Ready.as_str());
        let claimable = if filter.include_stalled {
            ready.or(column(plan::Column::Status)
                .eq(PlanStatus::Stalled.as_str())
                .and(
                    column(plan::Column::LeaseExpiresAt)
                        .is_null()
                        .or(column(plan::Column::LeaseExpiresAt).lt(at)),
                ))
        } else {
            ready
        };
        let mut select = Query::select();
        select
            .column((candidate.clone(), plan::Column::Id))
            .from_as(plan::Entity, candidate.clone())
            .and_where(column(plan::Column::ProjectId).eq(filter.project))
            .and_where(claimable)
            .and_where(not_blocked(column(plan::Column::Id)))
            .order_by(
                (candidate.clone(), plan::Column::Priority),
                sea_orm::Order::Asc,
            )
            .order_by(
                (candidate.clone(), plan::Column::CreatedAt),
                sea_orm::Order::Asc,
            )
            .order_by((candidate.clone(), plan::Column::Id), sea_orm::Order::Asc)
            .limit(1);
        if let Some(feature) = filter.feature {
            select.and_where(column(plan::Column::FeatureId).eq(feature));
        }
        if filter.skip_drifted {
            select.and_where(Expr::exists(spec_changed_since(candidate.clone())).not());
        }
        if postgres {
            // FOR NO KEY UPDATE, not FOR UPDATE: a transaction that holds
            // the event-order lock may insert an event about this plan (a
            // SPEC_DRIFTED when the feature's spec changes), and that
            // foreign-key check takes KEY SHARE on the row. FOR UPDATE would
            // block it while this claim waits for the event-order lock: a
            // deadlock. Our UPDATE changes no key, so this is all it needs.
            select.lock_with_behavior(LockType::NoKeyUpdate, LockBehavior::SkipLocked);
        }
        // Only a take-over needs what it took over (for the event and the
        // answer); the plain READY case stays one statement.
        let (target, from, took_over) = if filter.include_stalled {
            let found = txn
                .query_one(
                    &select
                        .clone()
                        .column((candidate.clone(), plan::Column::Status))
                        .column((candidate.clone(), plan::Column::ClaimedBy))
                        .column((candidate.clone(), plan::Column::LastActivityAt))
                        .to_owned(),
                )
                .await?
                .map(|row| -> Result<_, sea_orm::DbErr> {
                    let id: Uuid = row.try_get("", "id")?;
                    let status: PlanStatus = row.try_get("", "status")?;
                    let take_over = TakeOver {
                        previous_holder: row.try_get("", "claimed_by")?,
                        last_activity_at: row.try_get("", "last_activity_at")?,
                    };
                    Ok((id, status, take_over))
                })
                .transpose()?;
            let Some((id, status, take_over)) = found else {
                txn.commit().await?;
                return Ok(None);
            };
            let took_over = (status == PlanStatus::Stalled).then_some(take_over);
            (plan::Column::Id.eq(id), status, took_over)
        } else {
            (
                plan::Column::Id.in_subquery(select),
                PlanStatus::Ready,
                None,
            )
        };
        let claimed = plan::Entity::update_many()
            .col_expr(plan::Column::Status, Expr::value(PlanStatus::Claimed))
            .col_expr(plan::Column::ClaimedBy, Expr::value(Some(viewer.id())))
            .col_expr(plan::Column::ClaimedAt, Expr::value(Some(at)))
            .col_expr(plan::Column::LastActivityAt, Expr::value(at))
            .col_expr(plan::Column::UpdatedAt, Expr::value(at))
            .col_expr(
                plan::Column::ClaimGeneration,
                Expr::col(plan::Column::ClaimGeneration).add(1),
            )
            .col_expr(plan::Column::LeaseSeconds, Expr::value(Some(lease)))
            .col_expr(
                plan::Column::LeaseExpiresAt,
                Expr::value(Some(lease_end(at, lease))),
            )
            .filter(target)
            .exec_with_returning(&*txn)
            .await?;
        let Some(plan) = claimed.into_iter().next() else {
            txn.commit().await?;
            return Ok(None);
        };
        let by = ChangedBy::user(viewer.id());
        let event = events::record(&*txn, &plan, EventKind::Claimed, Some(from), by).await?;
        let live = live_event(event, &plan, Some(viewer));
        txn.commit_and_publish(&self.events, vec![live]).await?;
        Ok(Some(NextPlan::Claimed { plan, took_over }))
    }

    /// The filter's open plans, counted by what holds each back from a claim
    /// (see [`Backlog`]), in one statement of conditional counts.
    async fn backlog(&self, filter: &NextPlanFilter) -> AppResult<Backlog> {
        let status = || Expr::col((plan::Entity, plan::Column::Status));
        let id = || Expr::col((plan::Entity, plan::Column::Id));
        let is = |wanted: PlanStatus| status().eq(wanted.as_str());
        let stalled = is(PlanStatus::Stalled);
        let expired = Expr::col((plan::Entity, plan::Column::LeaseExpiresAt))
            .is_null()
            .or(Expr::col((plan::Entity, plan::Column::LeaseExpiresAt)).lt(now()));
        let drifted = if filter.skip_drifted {
            Expr::exists(spec_changed_since(plan::Entity.into_iden()))
        } else {
            Expr::val(false)
        };
        let ready_and_free = || is(PlanStatus::Ready).and(has_blocker(id(), false).not());
        let counts: [(&str, SimpleExpr); 8] = [
            ("drafts", is(PlanStatus::Draft)),
            (
                "ready_blocked",
                is(PlanStatus::Ready).and(has_blocker(id(), false)),
            ),
            (
                "ready_blocked_by_failed",
                is(PlanStatus::Ready).and(has_blocker(id(), true)),
            ),
            (
                "ready_skipped_as_drifted",
                ready_and_free().and(drifted.clone()),
            ),
            (
                "held",
                status()
                    .is_in([
                        PlanStatus::Claimed.as_str(),
                        PlanStatus::InProgress.as_str(),
                    ])
                    // READY and free, yet the claim found nothing: another
                    // caller's claim holds its row and commits any moment.
                    .or(ready_and_free().and(drifted.not())),
            ),
            ("in_review", is(PlanStatus::Review)),
            ("stalled_expired", stalled.clone().and(expired.clone())),
            ("stalled_waiting", stalled.and(expired.not())),
        ];
        let mut query = Query::select();
        query
            .from(plan::Entity)
            .and_where(Expr::col((plan::Entity, plan::Column::ProjectId)).eq(filter.project));
        if let Some(feature) = filter.feature {
            query.and_where(Expr::col((plan::Entity, plan::Column::FeatureId)).eq(feature));
        }
        for (name, condition) in counts {
            // COUNT skips the NULL that CASE gives the other rows.
            let counted: SimpleExpr = Expr::case(condition, 1).into();
            query.expr_as(Func::count(counted), Alias::new(name));
        }
        let row = self
            .db
            .query_one(&query)
            .await?
            .ok_or_else(|| AppError::internal("a count without a row"))?;
        let count = |name: &str| -> AppResult<u64> {
            let value: i64 = row
                .try_get("", name)
                .map_err(|error| AppError::internal_from("cannot read a backlog count", error))?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        Ok(Backlog {
            drafts: count("drafts")?,
            ready_blocked: count("ready_blocked")?,
            ready_blocked_by_failed: count("ready_blocked_by_failed")?,
            ready_skipped_as_drifted: count("ready_skipped_as_drifted")?,
            held: count("held")?,
            in_review: count("in_review")?,
            stalled_expired: count("stalled_expired")?,
            stalled_waiting: count("stalled_waiting")?,
        })
    }
}
