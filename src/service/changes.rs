//! What every change of a plan is made of, whichever use case makes it:
//! its conditional update (`same_user`, retried [`MAX_ATTEMPTS`] times), its
//! claim token's check, its event for subscribers and webhooks
//! ([`live_event`]), the spec revision it records, the feature version a
//! completion cuts, the drift a new feature spec announces and the waiters
//! a finished blocker unblocks. The use cases (`plans`, `fleet`, `drift`,
//! `features`, `claim_next`) and the transition engine (`transition`) build
//! on these and never on each other's internals.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, DynIden, Expr, ExprTrait, IntoIden, Query, SelectStatement, SimpleExpr,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, JoinType,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::{Viewer, WriteTransaction, now};
use crate::drift::becomes_drifted;
use crate::error::{AppError, AppResult, Argument, Blocker, InputProblem};
use crate::events::{self, ChangedBy, LiveEvent};
use crate::storage::StoredSpec;
use crate::workflow::{self, ClaimToken, EventKind, PlanStatus};
use entity::{feature, feature_version, plan, plan_dependency, plan_event, plan_spec_revision};

/// A conditional update that lost a race is retried on fresh state this many
/// times before the caller is asked to retry.
pub(super) const MAX_ATTEMPTS: usize = 4;

/// `column = value`, or `column IS NULL` when there is no value.
pub(super) fn same_user(column: plan::Column, value: Option<Uuid>) -> SimpleExpr {
    match value {
        Some(id) => column.eq(id),
        None => column.is_null(),
    }
}

/// The live copy of a recorded event, for subscribers and webhooks.
pub(super) fn live_event(
    event: plan_event::Model,
    plan: &plan::Model,
    actor: Option<&Viewer>,
) -> LiveEvent {
    LiveEvent {
        event,
        plan: plan.clone(),
        actor: actor.map(|viewer| viewer.user.clone()),
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
pub(super) async fn blockers_of(
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
pub(super) async fn record_in_place(
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

/// Statuses whose plans can drift: every one but COMPLETED and FAILED.
pub(super) fn open_statuses() -> impl Iterator<Item = PlanStatus> {
    PlanStatus::ALL
        .into_iter()
        .filter(|status| !status.is_terminal())
}

/// The feature's version and spec just before a change.
pub(super) struct FeatureBefore {
    pub version: i32,
    pub spec_key: String,
}

/// Records one `SPEC_DRIFTED` event for every open plan of `feature` that
/// this move of the feature (a new spec, in a new version or amending the
/// current one) makes drifted, inside the caller's transaction, and returns
/// them for publishing after the commit. Plans that were already drifted get
/// none (see `crate::drift::becomes_drifted`), and a move that kept the text
/// drifts nothing. The server records these events, with `cause` as their
/// note: the plans' own people did nothing.
pub(super) async fn announce_drift(
    connection: &impl ConnectionTrait,
    before: &FeatureBefore,
    feature: &feature::Model,
    cause: &str,
) -> AppResult<Vec<LiveEvent>> {
    if before.spec_key == feature.spec_key {
        return Ok(Vec::new());
    }
    let plans = plan::Entity::find()
        .filter(plan::Column::FeatureId.eq(feature.id))
        .filter(plan::Column::Status.is_in(open_statuses()))
        .order_by_asc(plan::Column::Id)
        .all(connection)
        .await?;
    let at = now();
    let mut live = Vec::new();
    for plan in plans {
        if !becomes_drifted(&plan, before.version, &before.spec_key, feature) {
            continue;
        }
        let event = events::record_at(
            connection,
            &plan,
            EventKind::SpecDrifted,
            Some(plan.status),
            ChangedBy::system(cause),
            at,
        )
        .await?;
        live.push(LiveEvent {
            event,
            plan,
            actor: None,
        });
    }
    Ok(live)
}

/// Keeps a row for a spec a plan now has (created, updated or rebased).
pub(super) async fn record_revision(
    connection: &impl ConnectionTrait,
    plan: Uuid,
    spec: &StoredSpec,
    by: Uuid,
    at: DateTime<Utc>,
) -> AppResult<()> {
    plan_spec_revision::ActiveModel {
        id: Set(Uuid::now_v7()),
        plan_id: Set(plan),
        spec_key: Set(spec.key.clone()),
        spec_size: Set(spec.size),
        created_by: Set(Some(by)),
        created_at: Set(at),
    }
    .insert(connection)
    .await?;
    Ok(())
}

/// The plan's feature has another spec than the plan was written against:
/// the condition of `drifted: true` (negated for `false`), a correlated
/// EXISTS on the feature row, which holds the current version's spec key.
pub(super) fn drifted_condition(drifted: bool) -> SimpleExpr {
    let spec_changed = Expr::exists(spec_changed_since(plan::Entity.into_iden()));
    let open = plan::Column::Status.is_in(open_statuses());
    if drifted {
        open.and(spec_changed)
    } else {
        open.not().or(spec_changed.not())
    }
}

/// The feature of the plan row `plans` (the table or an alias of it) has
/// another spec than the one the plan was written against (see
/// `crate::drift::drift_of`: a version cut with the same text is no drift).
pub(super) fn spec_changed_since(plans: DynIden) -> SelectStatement {
    let features = feature::Entity;
    Query::select()
        .expr(Expr::val(1))
        .from(features)
        .and_where(
            Expr::col((features, feature::Column::Id))
                .eq(Expr::col((plans.clone(), plan::Column::FeatureId))),
        )
        .and_where(
            Expr::col((features, feature::Column::SpecKey))
                .ne(Expr::col((plans, plan::Column::BasedOnSpecKey))),
        )
        .to_owned()
}

/// Who and what a new version records.
pub(super) struct VersionOrigin {
    pub plan: Option<Uuid>,
    pub implemented_by: Option<Uuid>,
    /// `None` keeps the feature's current spec.
    pub spec_key: Option<String>,
}

/// Cuts the next version of a feature inside the caller's transaction.
///
/// The number comes from `UPDATE … SET current_version = current_version + 1
/// RETURNING`, not from reading the maximum first: the UPDATE takes the
/// feature's row lock, so two completions of one feature at the same instant
/// queue behind each other and get consecutive numbers. The unique index on
/// (feature_id, version) backs this up.
pub(super) async fn cut_version(
    connection: &impl ConnectionTrait,
    feature_id: Uuid,
    origin: VersionOrigin,
) -> AppResult<(feature::Model, feature_version::Model)> {
    let at = now();
    let mut bump = feature::Entity::update_many()
        .col_expr(
            feature::Column::CurrentVersion,
            Expr::col(feature::Column::CurrentVersion).add(1),
        )
        .col_expr(feature::Column::UpdatedAt, Expr::value(at))
        .filter(feature::Column::Id.eq(feature_id));
    if let Some(key) = &origin.spec_key {
        bump = bump.col_expr(feature::Column::SpecKey, Expr::value(key.clone()));
    }
    let feature = bump
        .exec_with_returning(connection)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound(format!("No feature with id {feature_id}")))?;
    let version = feature_version::ActiveModel {
        id: Set(Uuid::now_v7()),
        feature_id: Set(feature.id),
        version: Set(feature.current_version),
        spec_key: Set(feature.spec_key.clone()),
        implemented_by_plan_id: Set(origin.plan),
        implemented_by: Set(origin.implemented_by),
        created_at: Set(at),
    }
    .insert(connection)
    .await?;
    Ok((feature, version))
}
