//! Plans: the eight seed tools, listing, and stale detection.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, JoinType, LikeExpr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IdenStatic, Iterable, PaginatorTrait, QueryFilter,
    QueryResult, QuerySelect, QueryTrait, Select, Set,
};
use uuid::Uuid;

use super::drift::{drifted_condition, record_revision};
use super::features::{VersionOrigin, cut_version};
use super::fleet::{
    accepted_submit, check_token, has_blocker, lease_end, not_blocked, parse_token,
    unblock_waiters, unfinished_blockers, validate_priority,
};
use super::pagination::{Page, Position, SortValue, Window, newest_of_each, page_of, windowed};
use super::plan_rows::{JoinColumns, JoinedRows, PlanColumns};
use super::projects::member_projects;
use super::{Services, Viewer, WriteTransaction, now, parse_id};
use crate::error::{AppError, AppResult, Argument, InputProblem};
use crate::events::{self, ChangedBy, LiveEvent};
use crate::storage::{SpecOwner, StoredSpec, store_spec};
use crate::workflow::{
    self, Action, Actor, ClaimEffect, EventKind, PlanStatus, Refusal, ReviewPolicy, SubmitTarget,
    Transition,
};
use entity::{feature, feature_version, plan, plan_event, project, user};

/// A change's result: the plan as committed, the status it had just before
/// (the one the committed update matched, so it is right under races), and
/// the version it cut, if any.
pub struct Outcome {
    pub plan: plan::Model,
    pub previous: PlanStatus,
    pub version: Option<feature_version::Model>,
}

/// Filters of `plans(...)`; every list is further limited to the viewer's projects.
#[derive(Debug, Default, Clone)]
pub struct PlanFilter {
    pub project: Option<Uuid>,
    pub feature: Option<Uuid>,
    pub statuses: Vec<PlanStatus>,
    pub claimed_by: Option<Uuid>,
    pub updated_since: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the title.
    pub search: Option<String>,
    /// Only plans whose spec is stale (`true`) or not (`false`); see `crate::drift`.
    pub drifted: Option<bool>,
    /// Only these priorities (none: any).
    pub priorities: Vec<i32>,
    /// Only plans that wait for an unfinished plan (`true`) or for none.
    pub blocked: Option<bool>,
    /// Only plans that wait for a FAILED plan (`true`) or for none: the
    /// plans a person must unblock by removing or replacing a dependency.
    pub blocked_by_failed: Option<bool>,
}

impl PlanFilter {
    /// The filter of a plan list's arguments as a client sends them (GraphQL
    /// `plans` and `Feature.plans`, MCP `list_plans`): ids still strings, a
    /// malformed one BAD_USER_INPUT naming its argument; statuses of any of
    /// the interfaces' status types. The rest is set on the result.
    pub fn parse<S: Into<PlanStatus>>(
        project_id: Option<&str>,
        feature_id: Option<&str>,
        claimed_by: Option<&str>,
        statuses: impl IntoIterator<Item = S>,
    ) -> AppResult<PlanFilter> {
        let id = |argument, value: Option<&str>| {
            value.map(|value| parse_id(argument, value)).transpose()
        };
        Ok(PlanFilter {
            project: id(Argument::ProjectId, project_id)?,
            feature: id(Argument::FeatureId, feature_id)?,
            claimed_by: id(Argument::ClaimedBy, claimed_by)?,
            statuses: distinct(statuses.into_iter().map(Into::into)),
            ..PlanFilter::default()
        })
    }

    /// Only plans with these priorities, each a priority plans can have: a
    /// value outside 0..=4 is refused rather than matched by nothing, and
    /// repeats are dropped, so the filter's statement stays small however
    /// long the list sent.
    pub fn with_priorities(self, priorities: Vec<i32>) -> AppResult<PlanFilter> {
        for priority in &priorities {
            super::fleet::validate_priority(*priority)?;
        }
        Ok(PlanFilter {
            priorities: distinct(priorities),
            ..self
        })
    }
}

/// `values` without repeats, in their first order.
fn distinct<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut kept = Vec::new();
    for value in values {
        if !kept.contains(&value) {
            kept.push(value);
        }
    }
    kept
}

/// The rows related to a page of plans that its fields will show. Fetched
/// in the page's own statement (LEFT JOINs): a dashboard page then costs one
/// round trip to the database instead of one per relation.
#[derive(Debug, Clone, Copy)]
pub struct PlanJoins {
    pub feature: JoinColumns,
    pub project: JoinColumns,
    pub claimer: JoinColumns,
}

/// What a page's statement reads besides its plans' keys.
#[derive(Debug, Clone, Copy)]
pub struct PageReads {
    /// The plans' columns (those their selected fields show).
    pub columns: PlanColumns,
    /// The related rows to join in.
    pub joins: PlanJoins,
    /// The length of the whole list (`totalCount`), counted by the same statement.
    pub count: bool,
}

impl PageReads {
    /// Every column of the plans and their list's length, nothing joined.
    pub const PLANS_AND_COUNT: PageReads = PageReads {
        columns: PlanColumns::ALL,
        joins: PlanJoins::NONE,
        count: true,
    };
}

/// A plan of a page with the related rows its [`PlanJoins`] asked for; a
/// related row shared by several plans of the page (their feature) is one
/// row shared between them.
pub struct PlanRow {
    pub plan: plan::Model,
    pub feature: Option<Arc<feature::Model>>,
    pub project: Option<Arc<project::Model>>,
    pub claimer: Option<Arc<user::Model>>,
}

/// Column prefixes of the joined tables; the double underscore keeps them
/// apart from the plan's own columns (`feature_id` is one).
const FEATURE_PREFIX: &str = "feature__";
const PROJECT_PREFIX: &str = "project__";
const CLAIMER_PREFIX: &str = "claimer__";
/// The column of a page's statement that counts the whole list.
const TOTAL_COLUMN: &str = "total__count";

impl PlanJoins {
    pub const NONE: PlanJoins = PlanJoins {
        feature: JoinColumns::NONE,
        project: JoinColumns::NONE,
        claimer: JoinColumns::NONE,
    };

    fn apply(self, mut query: Select<plan::Entity>) -> Select<plan::Entity> {
        if self.feature.joined() {
            query = also_select::<feature::Entity>(
                query,
                plan::Column::FeatureId,
                feature::Column::Id,
                FEATURE_PREFIX,
                self.feature,
            );
        }
        if self.project.joined() {
            query = also_select::<project::Entity>(
                query,
                plan::Column::ProjectId,
                project::Column::Id,
                PROJECT_PREFIX,
                self.project,
            );
        }
        if self.claimer.joined() {
            query = also_select::<user::Entity>(
                query,
                plan::Column::ClaimedBy,
                user::Column::Id,
                CLAIMER_PREFIX,
                self.claimer,
            );
        }
        query
    }

    /// Decodes the page's rows. A related row repeats on every plan that
    /// refers to it (fifty plans of one feature carry that feature fifty
    /// times); it is decoded once, with the first of them, and shared.
    fn decode(
        self,
        rows: &[QueryResult],
        columns: PlanColumns,
    ) -> Result<Vec<PlanRow>, sea_orm::DbErr> {
        let mut features = JoinedRows::new(FEATURE_PREFIX, self.feature);
        let mut projects = JoinedRows::new(PROJECT_PREFIX, self.project);
        let mut claimers = JoinedRows::new(CLAIMER_PREFIX, self.claimer);
        let plans = super::plan_rows::decode_plans(rows, columns)?;
        let mut page = Vec::with_capacity(plans.len());
        for (row, plan) in rows.iter().zip(plans) {
            page.push(PlanRow {
                feature: features.shared(Some(plan.feature_id), row)?,
                project: projects.shared(Some(plan.project_id), row)?,
                claimer: claimers.shared(plan.claimed_by, row)?,
                plan,
            });
        }
        Ok(page)
    }
}

/// Joins the row of `R` that `from` points to, under the alias `prefix`,
/// and selects its `columns` as `prefix` + column name.
fn also_select<R: EntityTrait>(
    query: Select<plan::Entity>,
    from: plan::Column,
    to: R::Column,
    prefix: &'static str,
    columns: JoinColumns,
) -> Select<plan::Entity> {
    let relation = plan::Entity::belongs_to(R::default())
        .from(from)
        .to(to)
        .into();
    let mut query = query.join_as(JoinType::LeftJoin, relation, Alias::new(prefix));
    for (_, column) in R::Column::iter()
        .enumerate()
        .filter(|(index, _)| columns.contains(*index))
    {
        query = query.column_as(
            Expr::col((Alias::new(prefix), column)),
            format!("{prefix}{}", column.as_str()),
        );
    }
    query
}

/// What a plan list is sorted by (then by id, so the order is total).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum PlanSort {
    #[default]
    CreatedAt,
    UpdatedAt,
    LastActivityAt,
    Title,
    /// Most urgent first (ascending), then by id: ids are time-ordered
    /// (UUID v7), so within a priority the oldest comes first.
    Priority,
}

impl PlanSort {
    fn column(self) -> plan::Column {
        match self {
            PlanSort::CreatedAt => plan::Column::CreatedAt,
            PlanSort::UpdatedAt => plan::Column::UpdatedAt,
            PlanSort::LastActivityAt => plan::Column::LastActivityAt,
            PlanSort::Title => plan::Column::Title,
            PlanSort::Priority => plan::Column::Priority,
        }
    }

    /// The position of `plan` in a list sorted this way.
    pub fn position(self, plan: &plan::Model) -> Position {
        let value = match self {
            PlanSort::CreatedAt => SortValue::Time(plan.created_at),
            PlanSort::UpdatedAt => SortValue::Time(plan.updated_at),
            PlanSort::LastActivityAt => SortValue::Time(plan.last_activity_at),
            PlanSort::Title => SortValue::Text(plan.title.clone()),
            PlanSort::Priority => SortValue::Int(i64::from(plan.priority)),
        };
        Position { value, id: plan.id }
    }
}

/// Inputs some actions carry.
#[derive(Default)]
struct ChangeInput<'a> {
    spec_content: Option<&'a str>,
    artifacts: Option<&'a str>,
    /// `rebasePlan` with a spec: the plan is also based on the feature's
    /// current version, and the event is REBASED.
    rebase: bool,
    /// A claim's lease (seconds), already validated.
    lease_seconds: Option<i32>,
    /// The caller's claim token: the change applies only to that claim.
    claim_token: Option<&'a str>,
    /// Why, in the caller's words (already validated): kept on the event; a
    /// send-back's note is what the worker reads.
    note: Option<String>,
}

/// A conditional update that lost a race is retried on fresh state this many
/// times before the caller is asked to retry.
pub(super) const MAX_ATTEMPTS: usize = 4;

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
    async fn change(
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

    /// One page of the viewer's plans matching `filter`, each with the
    /// related rows `joins` asks for, all in one statement. With `count`, a
    /// first page (no cursor, not `first: 0`) also says how many plans match
    /// the filter, counted in the same statement; otherwise the count is
    /// `None` and [`Services::count_plans`] gives it.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_plans(
        &self,
        viewer: &Viewer,
        filter: &PlanFilter,
        sort: PlanSort,
        window: &Window,
        reads: PageReads,
    ) -> AppResult<(Page<PlanRow>, Option<u64>)> {
        self.validate_search(filter.search.as_deref())?;
        // `plan::Entity::find()` would list every column, each an expression
        // to build and drop again; a page starts from none.
        static NO_COLUMNS: LazyLock<Select<plan::Entity>> =
            LazyLock::new(|| plan::Entity::find().select_only());
        let mut query = windowed(
            visible_plans(NO_COLUMNS.clone(), viewer, filter),
            sort.column(),
            plan::Column::Id,
            window,
        );
        // The keys, and the sort column for the rows' cursors.
        let columns = reads
            .columns
            .and(PlanColumns::KEYS)
            .and(PlanColumns::of(&[sort.column()]));
        query = query.columns(columns.iter());
        // The window function sees every matching row before the LIMIT;
        // past a cursor the page's rows are no longer all of them.
        let count = reads.count && window.cursor.is_none();
        if count {
            query = query.column_as(Expr::cust("COUNT(*) OVER ()"), TOTAL_COLUMN);
        }
        let rows = self
            .reads
            .all(&reads.joins.apply(query).into_query())
            .await?;
        let total = match rows.first() {
            Some(row) if count => {
                Some(u64::try_from(row.try_get::<i64>("", TOTAL_COLUMN)?).unwrap_or(0))
            }
            // An empty first page is an empty list, seen by this statement:
            // counting again would be another snapshot, which may already
            // hold a plan created since.
            None if count && window.size > 0 => Some(0),
            _ => None,
        };
        Ok((page_of(reads.joins.decode(&rows, columns)?, window), total))
    }

    /// Plans per status for each feature, in one query.
    pub async fn plan_counts_by_feature(
        &self,
        features: &[Uuid],
    ) -> AppResult<HashMap<Uuid, HashMap<PlanStatus, u64>>> {
        self.plan_counts(plan::Column::FeatureId, features).await
    }

    /// Plans per status for each project, in one query.
    pub async fn plan_counts_by_project(
        &self,
        projects: &[Uuid],
    ) -> AppResult<HashMap<Uuid, HashMap<PlanStatus, u64>>> {
        self.plan_counts(plan::Column::ProjectId, projects).await
    }

    async fn plan_counts(
        &self,
        group: plan::Column,
        ids: &[Uuid],
    ) -> AppResult<HashMap<Uuid, HashMap<PlanStatus, u64>>> {
        let rows: Vec<(Uuid, PlanStatus, i64)> = plan::Entity::find()
            .select_only()
            .column(group)
            .column(plan::Column::Status)
            .column_as(plan::Column::Id.count(), "count")
            .filter(group.is_in(ids.iter().copied()))
            .group_by(group)
            .group_by(plan::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut counts: HashMap<Uuid, HashMap<PlanStatus, u64>> = HashMap::new();
        for (id, status, count) in rows {
            counts
                .entry(id)
                .or_default()
                .insert(status, u64::try_from(count).unwrap_or(0));
        }
        Ok(counts)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn count_plans(&self, viewer: &Viewer, filter: &PlanFilter) -> AppResult<u64> {
        self.validate_search(filter.search.as_deref())?;
        Ok(visible_plans(plan::Entity::find(), viewer, filter)
            .count(&self.db)
            .await?)
    }

    /// The newest `count` events of each plan's audit trail, oldest first,
    /// in one query.
    pub async fn events_of(
        &self,
        plans: &[Uuid],
        count: u64,
    ) -> AppResult<HashMap<Uuid, Vec<plan_event::Model>>> {
        newest_of_each::<plan_event::Entity>(
            &self.db,
            plan_event::Column::PlanId,
            |event| event.plan_id,
            plan_event::Column::Id,
            plans,
            count,
        )
        .await
    }

    pub async fn plans_by_ids(&self, ids: &[Uuid]) -> AppResult<Vec<plan::Model>> {
        Ok(plan::Entity::find()
            .filter(plan::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?)
    }
}

/// `plans` narrowed to the plans `viewer` may see that match `filter`.
fn visible_plans(
    plans: Select<plan::Entity>,
    viewer: &Viewer,
    filter: &PlanFilter,
) -> Select<plan::Entity> {
    let mut query = plans.filter(plan::Column::ProjectId.in_subquery(member_projects(viewer.id())));
    if let Some(project) = filter.project {
        query = query.filter(plan::Column::ProjectId.eq(project));
    }
    if let Some(feature) = filter.feature {
        query = query.filter(plan::Column::FeatureId.eq(feature));
    }
    if !filter.statuses.is_empty() {
        query = query.filter(plan::Column::Status.is_in(filter.statuses.iter().copied()));
    }
    if let Some(claimer) = filter.claimed_by {
        query = query.filter(plan::Column::ClaimedBy.eq(claimer));
    }
    if let Some(drifted) = filter.drifted {
        query = query.filter(drifted_condition(drifted));
    }
    if !filter.priorities.is_empty() {
        query = query.filter(plan::Column::Priority.is_in(filter.priorities.iter().copied()));
    }
    for (wanted, failed_only) in [(filter.blocked, false), (filter.blocked_by_failed, true)] {
        if let Some(wanted) = wanted {
            let blocked = has_blocker(Expr::col((plan::Entity, plan::Column::Id)), failed_only);
            query = query.filter(if wanted { blocked } else { blocked.not() });
        }
    }
    if let Some(since) = filter.updated_since {
        query = query.filter(plan::Column::UpdatedAt.gte(since));
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
    {
        // Lower-cased on both sides: SQLite's LIKE ignores ASCII case,
        // PostgreSQL's does not; this way both match the same rows.
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = LikeExpr::new(format!("%{escaped}%")).escape('\\');
        let title = Expr::col(plan::Column::Title.as_column_ref());
        query = query.filter(Func::lower(title).like(pattern));
    }
    query
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

impl Services {
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

/// `column = value`, or `column IS NULL` when there is no value.
pub(super) fn same_user(column: plan::Column, value: Option<Uuid>) -> SimpleExpr {
    match value {
        Some(id) => column.eq(id),
        None => column.is_null(),
    }
}
