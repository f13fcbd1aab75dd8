//! The transition engine: a change a client asks for is decided by
//! `workflow::decide` on the plan as read, then committed with a
//! conditional UPDATE that repeats every fact the decision rested on, with
//! its event, revision, version, drift and unblocking (`changes`), and
//! decided again on fresh state when another request changed the plan in
//! between.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::changes::{
    MAX_ATTEMPTS, VersionOrigin, check_token, cut_version, lease_end, live_event, not_blocked,
    parse_token, record_revision, same_user, unblock_waiters, unfinished_blockers,
};
use super::{Services, Viewer, WriteTransaction, now, parse_id};
use crate::error::{AppError, AppResult, Argument};
use crate::events::{self, ChangedBy};
use crate::storage::{SpecOwner, StoredSpec, store_spec};
use crate::workflow::{
    self, Action, Actor, ClaimEffect, ClaimToken, EventKind, PlanStatus, Refusal, ReviewPolicy,
    SubmitRetry, SubmitTarget, Transition,
};
use entity::{feature, feature_version, plan, plan_event};

/// A change's result: the plan as committed, the status it had just before
/// (the one the committed update matched, so it is right under races), and
/// the version it cut, if any.
pub struct Outcome {
    pub plan: plan::Model,
    pub previous: PlanStatus,
    pub version: Option<feature_version::Model>,
}

/// Inputs some actions carry.
#[derive(Default)]
pub(super) struct ChangeInput<'a> {
    pub(super) spec_content: Option<&'a str>,
    pub(super) artifacts: Option<&'a str>,
    /// `rebasePlan` with a spec: the plan is also based on the feature's
    /// current version, and the event is REBASED.
    pub(super) rebase: bool,
    /// A claim's lease (seconds), already validated.
    pub(super) lease_seconds: Option<i32>,
    /// The caller's claim token: the change applies only to that claim.
    pub(super) claim_token: Option<&'a str>,
    /// Why, in the caller's words (already validated): kept on the event; a
    /// send-back's note is what the worker reads.
    pub(super) note: Option<String>,
}

/// The accepted result again when a submit repeats the one that put `plan`
/// where it is (`workflow::repeats_accepted_submit`); `None` otherwise.
async fn accepted_submit(
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

impl Services {
    /// Decides a change with `workflow::decide` and commits it with a
    /// conditional UPDATE.
    ///
    /// Why conditional updates rather than `SELECT … FOR UPDATE`: the same code
    /// must be correct on SQLite, which has no row locks. The UPDATE's WHERE
    /// repeats every fact the decision rested on (status, claimer, submitter),
    /// so if another request changed any of them in between, it matches no row
    /// and nothing is written; we then decide again on the fresh row. On
    /// PostgreSQL a concurrent UPDATE of the same row waits for the first to
    /// commit and re-checks the WHERE, so exactly one of N racing claims wins.
    pub(super) async fn change(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        action: Action,
        input: ChangeInput<'_>,
    ) -> AppResult<Outcome> {
        let plan_id = parse_id(Argument::PlanId, plan_id)?;
        if let Some(spec) = input.spec_content {
            self.validate_markdown(Argument::SpecContent, spec)?;
        }
        if let Some(artifacts) = input.artifacts {
            self.validate_markdown(Argument::ArtifactsMarkdown, artifacts)?;
        }
        let token = parse_token(plan_id, input.claim_token)?;
        let mut stored_spec: Option<StoredSpec> = None;
        for _ in 0..MAX_ATTEMPTS {
            let plan = self.find_plan(plan_id).await?;
            let role = self.require_member(viewer, plan.project_id).await?;
            if let (Action::Submit(target), Some(artifacts)) = (action, input.artifacts) {
                let repeat = accepted_submit(&self.db, &plan, viewer, target, artifacts, token);
                if let Some(accepted) = repeat.await? {
                    return Ok(accepted);
                }
            }
            // A fenced-out holder changes nothing, whatever it asks.
            check_token(&plan, token)?;
            let actor = Actor::User {
                role,
                is_claimer: plan.claimed_by == Some(viewer.id()),
                is_submitter: plan.submitted_by == Some(viewer.id()),
                review_policy: self.review_policy_for(action, plan.project_id).await?,
            };
            let transition = match workflow::decide(plan.status, action, actor) {
                Ok(transition) => transition,
                Err(refusal) => return Err(self.refused(refusal, &plan, viewer).await),
            };
            if action == Action::Claim {
                let blockers = unfinished_blockers(&self.db, plan.id).await?;
                if !blockers.is_empty() {
                    return Err(AppError::Blocked { blockers });
                }
            }
            if let (true, Some(content), None) =
                (transition.replaces_spec, input.spec_content, &stored_spec)
            {
                // The object goes first; the row pointing at it commits after.
                let owner = SpecOwner::Plan(plan.id);
                stored_spec =
                    Some(store_spec(&*self.specs, plan.project_id, owner, content).await?);
            }
            // A rebase is based on the feature as read now; should the
            // feature move before the commit, the plan is drifted again and
            // that move announced it.
            let rebase_onto = match input.rebase {
                true => Some(self.find_feature(plan.feature_id).await?),
                false => None,
            };
            let txn = self.begin_write().await?;
            let committed = self
                .commit_transition(
                    txn,
                    &plan,
                    &transition,
                    viewer,
                    &input,
                    stored_spec.as_ref(),
                    rebase_onto.as_ref(),
                )
                .await?;
            if let Some(outcome) = committed {
                return Ok(outcome);
            }
        }
        Err(AppError::Conflict(
            "The plan kept changing while this request was applied; reload it and retry".into(),
        ))
    }

    /// Applies a decided transition; `None` when the plan changed since it was read.
    #[allow(clippy::too_many_arguments)]
    async fn commit_transition(
        &self,
        txn: WriteTransaction,
        before: &plan::Model,
        transition: &Transition,
        viewer: &Viewer,
        input: &ChangeInput<'_>,
        spec: Option<&StoredSpec>,
        rebase_onto: Option<&feature::Model>,
    ) -> AppResult<Option<Outcome>> {
        use plan::Column;
        let at = now();
        let mut update = plan::Entity::update_many()
            .col_expr(Column::Status, Expr::value(transition.to))
            .col_expr(Column::UpdatedAt, Expr::value(at))
            .filter(Column::Id.eq(before.id))
            .filter(Column::Status.eq(before.status))
            .filter(same_user(Column::ClaimedBy, before.claimed_by))
            .filter(same_user(Column::SubmittedBy, before.submitted_by))
            // A re-claim by the same user changes only the generation.
            .filter(Column::ClaimGeneration.eq(before.claim_generation));
        if transition.records_activity {
            update = update.col_expr(Column::LastActivityAt, Expr::value(at));
        }
        let claim = match transition.claim {
            ClaimEffect::Keep => None,
            ClaimEffect::TakeByCaller => Some((Some(viewer.id()), Some(at))),
            ClaimEffect::ReturnToSubmitter => {
                Some((before.submitted_by.or(Some(viewer.id())), Some(at)))
            }
            ClaimEffect::Clear => Some((None, None)),
        };
        if let Some((claimer, claimed_at)) = claim {
            update = update
                .col_expr(Column::ClaimedBy, Expr::value(claimer))
                .col_expr(Column::ClaimedAt, Expr::value(claimed_at));
        }
        // The lease: a new claim starts one (and a new token); activity on
        // a held claim renews it; a cleared claim has none.
        // Work sent back from review gets the lease its claim asked for
        // (kept through the review), not the server's default.
        let lease = match transition.claim {
            ClaimEffect::TakeByCaller | ClaimEffect::ReturnToSubmitter => {
                update = update.col_expr(
                    Column::ClaimGeneration,
                    Expr::col(Column::ClaimGeneration).add(1),
                );
                let asked = input.lease_seconds.or(before.lease_seconds);
                Some(asked.unwrap_or(self.default_lease_seconds))
            }
            ClaimEffect::Keep if before.claimed_by.is_some() && transition.records_activity => {
                Some(before.lease_seconds.unwrap_or(self.default_lease_seconds))
            }
            ClaimEffect::Keep => None,
            ClaimEffect::Clear => {
                if transition.to != PlanStatus::Review {
                    update =
                        update.col_expr(Column::LeaseSeconds, Expr::value(Option::<i32>::None));
                }
                update = update.col_expr(
                    Column::LeaseExpiresAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                );
                None
            }
        };
        if let Some(seconds) = lease {
            update = update
                .col_expr(Column::LeaseSeconds, Expr::value(Some(seconds)))
                .col_expr(
                    Column::LeaseExpiresAt,
                    Expr::value(Some(lease_end(at, seconds))),
                );
        }
        if transition.claim == ClaimEffect::TakeByCaller {
            update = update.filter(not_blocked(Expr::col((plan::Entity, Column::Id))));
        }
        if transition.records_submission {
            update = update
                .col_expr(
                    Column::WorkArtifacts,
                    Expr::value(input.artifacts.map(str::to_owned)),
                )
                .col_expr(Column::SubmittedBy, Expr::value(Some(viewer.id())));
        }
        if let (true, Some(spec)) = (transition.replaces_spec, spec) {
            update = update
                .col_expr(Column::SpecKey, Expr::value(spec.key.clone()))
                .col_expr(Column::SpecSha256, Expr::value(spec.sha256.clone()))
                .col_expr(Column::SpecSize, Expr::value(spec.size));
        }
        if let Some(feature) = rebase_onto {
            update = update
                .col_expr(Column::BasedOnVersion, Expr::value(feature.current_version))
                .col_expr(
                    Column::BasedOnSpecKey,
                    Expr::value(feature.spec_key.clone()),
                );
        }
        let Some(mut plan) = update.exec_with_returning(&*txn).await?.into_iter().next() else {
            return Ok(None);
        };
        if let (true, Some(spec)) = (transition.replaces_spec, spec) {
            record_revision(&*txn, plan.id, spec, viewer.id(), at).await?;
        }
        let version = if transition.creates_version {
            // The worker who did the work is credited; an approval of a plan
            // nobody submitted credits the approver.
            let implemented_by = plan.submitted_by.unwrap_or(viewer.id());
            let origin = VersionOrigin {
                plan: Some(plan.id),
                implemented_by: Some(implemented_by),
                spec_key: None,
            };
            let (feature, version) = cut_version(&*txn, plan.feature_id, origin).await?;
            let mut active: plan::ActiveModel = plan.into();
            active.implemented_version = Set(Some(version.version));
            plan = active.update(&*txn).await?;
            Some((feature, version))
        } else {
            None
        };
        let kind = match rebase_onto {
            Some(_) => EventKind::Rebased,
            None => transition.event,
        };
        let by = ChangedBy::user(viewer.id()).with_note(input.note.clone());
        let event = events::record(&*txn, &plan, kind, Some(transition.from), by).await?;
        let mut live = vec![live_event(event, &plan, Some(viewer))];
        // A completion moves the feature's number and keeps its text, which
        // drifts no plan (`crate::drift::drift_of`): nothing to announce.
        let version = version.map(|(_, version)| version);
        if plan.status == PlanStatus::Completed {
            let cause = format!("plan \"{}\" was completed", plan.title);
            live.extend(unblock_waiters(&txn, plan.id, None, &cause).await?);
        }
        txn.commit_and_publish(&self.events, live).await?;
        Ok(Some(Outcome {
            plan,
            previous: transition.from,
            version,
        }))
    }

    /// The error for a refused change; a claim of a plan someone else holds
    /// names them and their lease, so the caller knows whom to ask and
    /// whether waiting helps.
    async fn refused(&self, refusal: Refusal, plan: &plan::Model, viewer: &Viewer) -> AppError {
        match refusal {
            Refusal::InvalidTransition {
                from,
                requested,
                allowed,
            } => AppError::InvalidTransition {
                current: from,
                requested,
                allowed,
            },
            Refusal::NotClaimable { from } => {
                let claimed_by_caller = plan.claimed_by == Some(viewer.id());
                let holder = match plan.claimed_by.filter(|_| !claimed_by_caller) {
                    Some(holder) => match self.users_by_ids(&[holder]).await {
                        Ok(users) => users
                            .into_iter()
                            .next()
                            .map(|user| (user.email, plan.lease_expires_at)),
                        Err(error) => return error,
                    },
                    None => None,
                };
                metrics::counter!("plangraph_claim_refusals_total", "reason" => "claimed")
                    .increment(1);
                AppError::NotClaimable {
                    current: from,
                    claimed_by: plan.claimed_by,
                    claimed_by_caller,
                    holder,
                }
            }
            Refusal::Forbidden(message) => AppError::Forbidden(message),
        }
    }

    /// The project's review policy when `action` completes work (the only
    /// actions it decides), so that other changes read no project row.
    async fn review_policy_for(&self, action: Action, project: Uuid) -> AppResult<ReviewPolicy> {
        let completes = matches!(
            action,
            Action::SetStatus(PlanStatus::Completed) | Action::Submit(SubmitTarget::Completed)
        );
        if !completes {
            return Ok(ReviewPolicy::default());
        }
        Ok(self.find_project(project).await?.review_policy)
    }
}
