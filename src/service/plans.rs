//! Plans: the seed's plan tools (create, update, status, claim, release, submit) and
//! stale detection, each a transition (`transition.rs`); lists are `plan_lists.rs`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::changes::{live_event, record_revision};
use super::fleet::validate_priority;
use super::transition::{ChangeInput, Outcome};
use super::{Services, Viewer, now, parse_id};
use crate::error::{AppError, AppResult, Argument, InputProblem};
use crate::events::{self, ChangedBy};
use crate::storage::{SpecOwner, store_spec};
use crate::workflow::{self, Action, Actor, EventKind, PlanStatus, SubmitTarget};
use entity::plan;

impl Services {
    #[tracing::instrument(level = "debug", skip_all)]
    #[allow(clippy::too_many_arguments)]
    pub async fn create_plan(
        &self,
        viewer: &Viewer,
        feature_id: &str,
        title: &str,
        description: Option<String>,
        spec_content: &str,
        status: PlanStatus,
        priority: Option<i32>,
    ) -> AppResult<plan::Model> {
        let feature = self.feature(viewer, feature_id).await?;
        self.require_writer(viewer, feature.project_id).await?;
        if !matches!(status, PlanStatus::Draft | PlanStatus::Ready) {
            return Err(AppError::invalid(
                Argument::Status,
                InputProblem::NotAnInitialStatus(status),
            ));
        }
        let title = self.validate_title(Argument::Title, title)?;
        let description = self.validate_description(description)?;
        self.validate_markdown(Argument::SpecContent, spec_content)?;
        let priority = validate_priority(priority.unwrap_or(workflow::DEFAULT_PRIORITY))?;
        let id = Uuid::now_v7();
        let spec = store_spec(
            &*self.specs,
            feature.project_id,
            SpecOwner::Plan(id),
            spec_content,
        )
        .await?;
        let at = now();
        let txn = self.begin_write().await?;
        let plan = plan::ActiveModel {
            id: Set(id),
            project_id: Set(feature.project_id),
            feature_id: Set(feature.id),
            title: Set(title),
            description: Set(description),
            status: Set(status),
            spec_key: Set(spec.key.clone()),
            spec_sha256: Set(spec.sha256.clone()),
            spec_size: Set(spec.size),
            work_artifacts: Set(None),
            claimed_by: Set(None),
            claimed_at: Set(None),
            submitted_by: Set(None),
            implemented_version: Set(None),
            last_activity_at: Set(at),
            created_by: Set(viewer.id()),
            created_at: Set(at),
            updated_at: Set(at),
            based_on_version: Set(feature.current_version),
            based_on_spec_key: Set(feature.spec_key.clone()),
            priority: Set(priority),
            claim_generation: Set(0),
            lease_seconds: Set(None),
            lease_expires_at: Set(None),
        }
        .insert(&*txn)
        .await?;
        record_revision(&*txn, plan.id, &spec, viewer.id(), at).await?;
        let event = events::record(
            &*txn,
            &plan,
            EventKind::Created,
            None,
            ChangedBy::user(viewer.id()),
        )
        .await?;
        let live = live_event(event, &plan, Some(viewer));
        txn.commit_and_publish(&self.events, vec![live]).await?;
        Ok(plan)
    }

    /// A plan by id, for members of its project.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn plan(&self, viewer: &Viewer, id: &str) -> AppResult<plan::Model> {
        let plan = self.find_plan(parse_id(Argument::PlanId, id)?).await?;
        self.require_member(viewer, plan.project_id).await?;
        Ok(plan)
    }

    pub async fn find_plan(&self, id: Uuid) -> AppResult<plan::Model> {
        plan::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("No plan with id {id}")))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn update_plan(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        spec_content: &str,
        claim_token: Option<&str>,
    ) -> AppResult<plan::Model> {
        self.update_plan_spec(viewer, plan_id, spec_content, false, claim_token)
            .await
    }

    /// `updatePlan`, or `rebasePlan` with a spec when `rebase`.
    pub(super) async fn update_plan_spec(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        spec_content: &str,
        rebase: bool,
        claim_token: Option<&str>,
    ) -> AppResult<plan::Model> {
        let input = ChangeInput {
            spec_content: Some(spec_content),
            rebase,
            claim_token,
            ..ChangeInput::default()
        };
        Ok(self
            .change(viewer, plan_id, Action::Update, input)
            .await?
            .plan)
    }

    /// `note` says why, for the plan's history; work sent back from review
    /// (REVIEW → IN_PROGRESS) hands it to the worker.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn set_plan_status(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        status: PlanStatus,
        note: Option<String>,
    ) -> AppResult<Outcome> {
        let input = ChangeInput {
            note: self.validate_prose(Argument::Note, note)?,
            ..ChangeInput::default()
        };
        self.change(viewer, plan_id, Action::SetStatus(status), input)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn claim_plan(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        lease_seconds: Option<i32>,
    ) -> AppResult<plan::Model> {
        let input = ChangeInput {
            lease_seconds: Some(self.validate_lease(lease_seconds)?),
            ..ChangeInput::default()
        };
        let outcome = self.change(viewer, plan_id, Action::Claim, input);
        Ok(outcome.await?.plan)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn release_plan(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        claim_token: Option<&str>,
    ) -> AppResult<Outcome> {
        let input = ChangeInput {
            claim_token,
            ..ChangeInput::default()
        };
        self.change(viewer, plan_id, Action::Release, input).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn submit_work(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        artifacts_markdown: &str,
        target: SubmitTarget,
        claim_token: Option<&str>,
    ) -> AppResult<Outcome> {
        let input = ChangeInput {
            artifacts: Some(artifacts_markdown),
            claim_token,
            ..ChangeInput::default()
        };
        self.change(viewer, plan_id, Action::Submit(target), input)
            .await
    }

    /// The stale sweeper: claimed or in-progress plans with no activity since
    /// `cutoff` become STALLED (claim kept). Returns how many it marked.
    ///
    /// Each plan is moved by its own conditional UPDATE that re-checks status
    /// and `last_activity_at < cutoff`: a plan updated a moment before the
    /// sweep no longer matches and stays as it is, and when two instances sweep
    /// at once only one UPDATE matches, so each plan gets one STALLED event.
    ///
    /// A claim with a lease stalls when its lease ran out (`lease_expires_at`
    /// before now); a claim from before leases, when its last activity is
    /// older than `cutoff` (the global `--stale-after`).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn mark_stale_plans(&self, cutoff: DateTime<Utc>) -> AppResult<usize> {
        let watched = [PlanStatus::Claimed, PlanStatus::InProgress];
        let expired = plan::Column::LeaseExpiresAt
            .lt(now())
            .or(plan::Column::LeaseExpiresAt
                .is_null()
                .and(plan::Column::LastActivityAt.lt(cutoff)));
        let candidates = plan::Entity::find()
            .filter(plan::Column::Status.is_in(watched))
            .filter(expired)
            .all(&self.db)
            .await?;
        let mut marked = 0;
        for candidate in candidates {
            let from = candidate.status;
            let Ok(transition) = workflow::decide(from, Action::MarkStale, Actor::System) else {
                continue;
            };
            let txn = self.begin_write().await?;
            let updated = plan::Entity::update_many()
                .col_expr(plan::Column::Status, Expr::value(transition.to))
                .col_expr(plan::Column::UpdatedAt, Expr::value(now()))
                .filter(plan::Column::Id.eq(candidate.id))
                .filter(plan::Column::Status.eq(from))
                // Any activity since the candidate was read moves these.
                .filter(plan::Column::LastActivityAt.eq(candidate.last_activity_at))
                .filter(plan::Column::ClaimGeneration.eq(candidate.claim_generation))
                .exec_with_returning(&*txn)
                .await?;
            let Some(plan) = updated.into_iter().next() else {
                continue;
            };
            let cause = "the claim's lease ran out with no activity from its claimer";
            let event = events::record(
                &*txn,
                &plan,
                transition.event,
                Some(from),
                ChangedBy::system(cause),
            )
            .await?;
            let live = live_event(event, &plan, None);
            txn.commit_and_publish(&self.events, vec![live]).await?;
            marked += 1;
        }
        Ok(marked)
    }
}
