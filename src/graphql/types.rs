//! GraphQL object types. Each wraps a row and resolves relations through the
//! request's loaders; none of them decides anything.

use std::sync::Arc;

use async_graphql::{
    Context, Enum, ID, InputValueError, Object, Scalar, ScalarType, SimpleObject, Value,
};
use chrono::Utc;

use super::connection::{
    FeatureConnection, PageArguments, PlanConnection, PlanOrder, load_features, load_plans,
};
use super::loaders::{
    FeatureId, FeaturePlanCounts, FeatureVersions, PlanId, ProjectId, ProjectPlanCounts, UserId,
};
use super::{loaders, services, viewer};
use crate::error::{AppError, AppResult};
use crate::events::LiveEvent;
use crate::service::plans::PlanFilter;
use crate::service::{parse_rfc3339, rfc3339};
use crate::workflow;
use entity::{api_key, feature, feature_version, plan, plan_event, project, project_member, user};

#[derive(Clone, Copy, Debug)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// A point in time: an RFC 3339 string in UTC with microseconds,
/// e.g. `2026-11-25T18:21:07.123456Z`.
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> async_graphql::InputValueResult<Self> {
        match &value {
            Value::String(text) => parse_rfc3339(text)
                .map(DateTime)
                .ok_or_else(|| InputValueError::custom("expected an RFC 3339 timestamp")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(rfc3339(self.0))
    }
}

fn at(value: chrono::DateTime<Utc>) -> DateTime {
    DateTime(value)
}

/// Where a plan is in the workflow:
/// DRAFT → READY → CLAIMED → IN_PROGRESS → REVIEW → COMPLETED, or STALLED / FAILED.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "PlanStatus", remote = "crate::workflow::PlanStatus")]
pub enum PlanStatus {
    /// Being written; not yet offered to workers.
    Draft,
    /// Published and waiting for a worker to claim it.
    Ready,
    /// A worker claimed it and has not reported progress yet.
    Claimed,
    /// The claimer is working on it (each updatePlan moves it here).
    InProgress,
    /// No activity for longer than the stale threshold; the claim is kept.
    Stalled,
    /// Work submitted and awaiting approval.
    Review,
    /// Done; a feature version records the implementation. Final.
    Completed,
    /// Abandoned as failed; artifacts are kept. Final.
    Failed,
}

/// Where `submitWork` sends a plan.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::workflow::SubmitTarget")]
pub enum SubmitStatus {
    /// Needs approval: the plan waits in REVIEW.
    Review,
    /// Work is already on main: the plan completes and a feature version is cut.
    Completed,
}

/// A member's rights in a project.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::workflow::Role")]
pub enum ProjectRole {
    /// Everything a member can do, plus managing members, releasing others'
    /// claims and failing others' plans.
    Owner,
    /// Creates and works on features and plans.
    Member,
    /// Reads only.
    Viewer,
}

/// What happened to a plan, as recorded in its audit trail.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::workflow::EventKind")]
pub enum PlanEventKind {
    /// The plan was created.
    Created,
    /// The spec was replaced (updatePlan).
    Updated,
    /// A status change without a more specific kind (e.g. DRAFT → READY).
    StatusChanged,
    /// A worker claimed the plan.
    Claimed,
    /// The claim was released and the plan is READY again.
    Released,
    /// Work was submitted for review.
    Submitted,
    /// The plan completed and a feature version was cut.
    Completed,
    /// The stale sweeper marked the plan STALLED.
    Stalled,
    /// The plan was marked FAILED.
    Failed,
}

fn status(value: &str) -> AppResult<PlanStatus> {
    workflow::PlanStatus::parse(value)
        .map(Into::into)
        .ok_or_else(|| AppError::Internal(format!("unknown status {value:?} in the database")))
}

async fn user_by_id(ctx: &Context<'_>, id: uuid::Uuid) -> AppResult<User> {
    loaders(ctx)
        .db
        .load_one(UserId(id))
        .await?
        .map(User)
        .ok_or_else(|| AppError::Internal(format!("user {id} is referenced but missing")))
}

async fn optional_user(ctx: &Context<'_>, id: Option<uuid::Uuid>) -> AppResult<Option<User>> {
    match id {
        Some(id) => Ok(Some(user_by_id(ctx, id).await?)),
        None => Ok(None),
    }
}

async fn spec_text(ctx: &Context<'_>, key: &str) -> AppResult<String> {
    loaders(ctx)
        .spec(services(ctx).specs.as_ref(), key)
        .await?
        .ok_or_else(|| AppError::Internal(format!("spec object {key} is missing")))
}

pub struct User(pub Arc<user::Model>);

impl From<user::Model> for User {
    fn from(row: user::Model) -> Self {
        User(Arc::new(row))
    }
}

/// A person or agent with API keys.
#[Object]
impl User {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Email address; unique, lower-case.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// Name to show; falls back to nothing, so show the email then.
    async fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }
    /// Server administrators can create users.
    async fn is_admin(&self) -> bool {
        self.0.is_admin
    }
    /// When the user was created.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
}

pub struct ApiKey(pub api_key::Model);

/// An API key's public record. The secret is shown only once, when created.
#[Object]
impl ApiKey {
    /// Id to revoke the key with.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// What the owner called the key.
    async fn label(&self) -> &str {
        &self.0.label
    }
    /// The public part of the key (`pg_<prefix>_…`), to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    /// When the key was created.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
    /// Last successful use, accurate to about a minute.
    async fn last_used_at(&self) -> Option<DateTime> {
        self.0.last_used_at.map(at)
    }
    /// When the key was revoked; a revoked key no longer authenticates.
    async fn revoked_at(&self) -> Option<DateTime> {
        self.0.revoked_at.map(at)
    }
}

/// A new user and their first API key.
#[derive(SimpleObject)]
pub struct CreatedUser {
    /// The user.
    pub user: User,
    /// Their first key's public record.
    pub api_key: ApiKey,
    /// The full key (`pg_…`): shown this once, never again.
    pub secret: String,
}

/// A new API key.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The key's public record.
    pub api_key: ApiKey,
    /// The full key (`pg_…`): shown this once, never again.
    pub secret: String,
}

pub struct Project(pub Arc<project::Model>);

impl From<project::Model> for Project {
    fn from(row: project::Model) -> Self {
        Project(Arc::new(row))
    }
}

/// A team's space: features, plans and members.
#[Object]
impl Project {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Project name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What the project is about.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Who created the project.
    async fn created_by(&self, ctx: &Context<'_>) -> AppResult<User> {
        user_by_id(ctx, self.0.created_by).await
    }
    /// When the project was created.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
    /// When the project itself was last changed.
    async fn updated_at(&self) -> DateTime {
        at(self.0.updated_at)
    }
    /// Your role in this project.
    async fn viewer_role(&self, ctx: &Context<'_>) -> AppResult<Option<ProjectRole>> {
        let viewer = viewer(ctx)?;
        let role = services(ctx).role_in(self.0.id, viewer.id()).await?;
        Ok(role.map(Into::into))
    }
    /// Everyone with access, oldest membership first.
    async fn members(&self, ctx: &Context<'_>) -> AppResult<Vec<ProjectMember>> {
        let members = services(ctx).members(self.0.id).await?;
        Ok(members.into_iter().map(ProjectMember).collect())
    }
    /// The project's features, oldest first, one page at a time.
    async fn features(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size from the start: 0 to 100, default 20.")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (a previous page's endCursor).")]
        after: Option<String>,
        #[graphql(desc = "Page size from the end: 0 to 100.")] last: Option<i32>,
        #[graphql(desc = "Continue before this cursor (a previous page's startCursor).")]
        before: Option<String>,
    ) -> AppResult<FeatureConnection> {
        let arguments = PageArguments {
            first,
            after,
            last,
            before,
        };
        load_features(ctx, self.0.id, arguments).await
    }
    /// How many of the project's plans are in each status.
    async fn plan_counts(&self, ctx: &Context<'_>) -> AppResult<PlanCounts> {
        let counts = loaders(ctx)
            .db
            .load_one(ProjectPlanCounts(self.0.id))
            .await?;
        Ok(PlanCounts::from(counts.unwrap_or_default()))
    }
}

pub struct ProjectMember(pub project_member::Model);

/// A user's membership in a project.
#[Object]
impl ProjectMember {
    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> AppResult<User> {
        user_by_id(ctx, self.0.user_id).await
    }
    /// What the member may do.
    async fn role(&self) -> AppResult<ProjectRole> {
        workflow::Role::parse(&self.0.role)
            .map(Into::into)
            .ok_or_else(|| AppError::Internal(format!("unknown role {:?}", self.0.role)))
    }
    /// When the user joined the project.
    async fn added_at(&self) -> DateTime {
        at(self.0.created_at)
    }
}

#[derive(Clone)]
pub struct Feature(pub Arc<feature::Model>);

impl From<feature::Model> for Feature {
    fn from(row: feature::Model) -> Self {
        Feature(Arc::new(row))
    }
}

/// Something to build. Its spec says what; plans say how. Every completed plan
/// cuts a new version.
#[Object]
impl Feature {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Short title.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// Longer description.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// The latest version number (v1 on creation).
    async fn current_version(&self) -> i32 {
        self.0.current_version
    }
    /// The current spec (markdown), fetched from the spec store only when asked for.
    /// Null, with a `STORAGE_UNAVAILABLE` error at this path, while the store is down.
    async fn spec(&self, ctx: &Context<'_>) -> AppResult<Option<String>> {
        spec_text(ctx, &self.0.spec_key).await.map(Some)
    }
    /// The project this feature belongs to.
    async fn project(&self, ctx: &Context<'_>) -> AppResult<Project> {
        let project = loaders(ctx)
            .db
            .load_one(ProjectId(self.0.project_id))
            .await?;
        project
            .map(Project)
            .ok_or_else(|| AppError::Internal("feature without project".into()))
    }
    /// This feature's plans, filtered, ordered and paged.
    #[allow(clippy::too_many_arguments)]
    async fn plans(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only plans in any of these statuses.")] status: Option<Vec<PlanStatus>>,
        #[graphql(desc = "Only plans whose title contains this text (any case).")] search: Option<
            String,
        >,
        #[graphql(desc = "Sort order; default oldest first.")] order_by: Option<PlanOrder>,
        #[graphql(desc = "Page size from the start: 0 to 100, default 20.")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (a previous page's endCursor).")]
        after: Option<String>,
        #[graphql(desc = "Page size from the end: 0 to 100.")] last: Option<i32>,
        #[graphql(desc = "Continue before this cursor (a previous page's startCursor).")]
        before: Option<String>,
    ) -> AppResult<PlanConnection> {
        let filter = PlanFilter {
            feature: Some(self.0.id),
            search,
            ..PlanFilter::parse(None, None, None, status.unwrap_or_default())?
        };
        let arguments = PageArguments {
            first,
            after,
            last,
            before,
        };
        load_plans(ctx, filter, order_by.unwrap_or_default(), arguments).await
    }
    /// How many of this feature's plans are in each status.
    async fn plan_counts(&self, ctx: &Context<'_>) -> AppResult<PlanCounts> {
        let counts = loaders(ctx)
            .db
            .load_one(FeaturePlanCounts(self.0.id))
            .await?;
        Ok(PlanCounts::from(counts.unwrap_or_default()))
    }
    /// Every version, oldest first.
    async fn versions(&self, ctx: &Context<'_>) -> AppResult<Vec<FeatureVersion>> {
        let versions = loaders(ctx).db.load_one(FeatureVersions(self.0.id)).await?;
        Ok(versions
            .unwrap_or_default()
            .into_iter()
            .map(FeatureVersion)
            .collect())
    }
    /// When the feature was created.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
    /// When the feature last changed (including a new version).
    async fn updated_at(&self) -> DateTime {
        at(self.0.updated_at)
    }
}

pub struct FeatureVersion(pub feature_version::Model);

/// One version of a feature: v1 at creation, then one per completed plan (or
/// per `updateFeature(newVersion: true)`).
#[Object]
impl FeatureVersion {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Version number, unique within the feature and without gaps.
    async fn version(&self) -> i32 {
        self.0.version
    }
    /// The feature.
    async fn feature(&self, ctx: &Context<'_>) -> AppResult<Feature> {
        let feature = loaders(ctx)
            .db
            .load_one(FeatureId(self.0.feature_id))
            .await?;
        feature
            .map(Feature)
            .ok_or_else(|| AppError::Internal("version without feature".into()))
    }
    /// The feature's spec (markdown) as of this version.
    /// Null, with a `STORAGE_UNAVAILABLE` error at this path, while the store is down.
    async fn spec(&self, ctx: &Context<'_>) -> AppResult<Option<String>> {
        spec_text(ctx, &self.0.spec_key).await.map(Some)
    }
    /// The plan whose completion cut this version; null for v1 and manual versions.
    async fn implemented_by_plan(&self, ctx: &Context<'_>) -> AppResult<Option<Plan>> {
        let Some(id) = self.0.implemented_by_plan_id else {
            return Ok(None);
        };
        Ok(loaders(ctx).db.load_one(PlanId(id)).await?.map(Plan))
    }
    /// Who implemented it: the worker who submitted, else the approver.
    async fn implemented_by(&self, ctx: &Context<'_>) -> AppResult<Option<User>> {
        optional_user(ctx, self.0.implemented_by).await
    }
    /// When the version was cut.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
}

#[derive(Clone)]
pub struct Plan(pub plan::Model);

/// How to build (part of) a feature, and where that work stands.
#[Object]
impl Plan {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Short title.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// Brief description of the approach.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Workflow status.
    async fn status(&self) -> AppResult<PlanStatus> {
        status(&self.0.status)
    }
    /// The technical spec (markdown), fetched from the spec store only when asked for.
    /// Null, with a `STORAGE_UNAVAILABLE` error at this path, while the store is down.
    async fn spec(&self, ctx: &Context<'_>) -> AppResult<Option<String>> {
        spec_text(ctx, &self.0.spec_key).await.map(Some)
    }
    /// SHA-256 (hex) of the current spec.
    async fn spec_sha256(&self) -> &str {
        &self.0.spec_sha256
    }
    /// Size of the current spec in bytes.
    async fn spec_size(&self) -> i64 {
        self.0.spec_size
    }
    /// What the worker submitted (PR links, notes), as markdown.
    async fn work_artifacts(&self) -> Option<&str> {
        self.0.work_artifacts.as_deref()
    }
    /// Who holds the plan; null when nobody does.
    async fn claimed_by(&self, ctx: &Context<'_>) -> AppResult<Option<User>> {
        optional_user(ctx, self.0.claimed_by).await
    }
    /// When the current claim was taken.
    async fn claimed_at(&self) -> Option<DateTime> {
        self.0.claimed_at.map(at)
    }
    /// Who submitted the work.
    async fn submitted_by(&self, ctx: &Context<'_>) -> AppResult<Option<User>> {
        optional_user(ctx, self.0.submitted_by).await
    }
    /// The feature version number this plan's completion created.
    async fn implemented_version(&self) -> Option<i32> {
        self.0.implemented_version
    }
    /// The feature version this plan's completion created.
    async fn implemented_feature_version(
        &self,
        ctx: &Context<'_>,
    ) -> AppResult<Option<FeatureVersion>> {
        let Some(version) = self.0.implemented_version else {
            return Ok(None);
        };
        let found = services(ctx).version_of(self.0.feature_id, version).await?;
        Ok(found.map(FeatureVersion))
    }
    /// Last claimer activity; the stale sweeper compares against it.
    async fn last_activity_at(&self) -> DateTime {
        at(self.0.last_activity_at)
    }
    /// Who created the plan.
    async fn created_by(&self, ctx: &Context<'_>) -> AppResult<User> {
        user_by_id(ctx, self.0.created_by).await
    }
    /// When the plan was created.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
    /// When anything about the plan last changed.
    async fn updated_at(&self) -> DateTime {
        at(self.0.updated_at)
    }
    /// The feature this plan implements.
    async fn feature(&self, ctx: &Context<'_>) -> AppResult<Feature> {
        let feature = loaders(ctx)
            .db
            .load_one(FeatureId(self.0.feature_id))
            .await?;
        feature
            .map(Feature)
            .ok_or_else(|| AppError::Internal("plan without feature".into()))
    }
    /// The project the plan belongs to.
    async fn project(&self, ctx: &Context<'_>) -> AppResult<Project> {
        let project = loaders(ctx)
            .db
            .load_one(ProjectId(self.0.project_id))
            .await?;
        project
            .map(Project)
            .ok_or_else(|| AppError::Internal("plan without project".into()))
    }
    /// The plan's audit trail, oldest first.
    async fn events(&self, ctx: &Context<'_>) -> AppResult<Vec<PlanEvent>> {
        let events = services(ctx).events_of(self.0.id).await?;
        Ok(events.into_iter().map(PlanEvent::Stored).collect())
    }
}

/// An event read from the log, or a live one that arrives with its plan and
/// actor already loaded (shared by every subscriber, so fan-out costs no
/// queries per subscriber).
pub enum PlanEvent {
    Stored(plan_event::Model),
    Live(Arc<LiveEvent>),
}

impl PlanEvent {
    fn record(&self) -> &plan_event::Model {
        match self {
            PlanEvent::Stored(event) => event,
            PlanEvent::Live(live) => &live.event,
        }
    }
}

/// One recorded change of a plan.
#[Object]
impl PlanEvent {
    /// Position in the event log; increases with every event. Pass the last one
    /// you received as `planEvents(after:)` to resume without gaps.
    async fn cursor(&self) -> String {
        self.record().id.to_string()
    }
    /// What happened.
    async fn kind(&self) -> AppResult<PlanEventKind> {
        let kind = &self.record().kind;
        workflow::EventKind::parse(kind)
            .map(Into::into)
            .ok_or_else(|| AppError::Internal(format!("unknown event kind {kind:?}")))
    }
    /// Status before the change; null when the plan was created.
    async fn from_status(&self) -> AppResult<Option<PlanStatus>> {
        self.record().from_status.as_deref().map(status).transpose()
    }
    /// Status after the change.
    async fn to_status(&self) -> AppResult<PlanStatus> {
        status(&self.record().to_status)
    }
    /// Who made the change; null when the system did (the stale sweeper).
    async fn actor(&self, ctx: &Context<'_>) -> AppResult<Option<User>> {
        match self {
            PlanEvent::Live(live) => Ok(live.actor.clone().map(User::from)),
            PlanEvent::Stored(event) => optional_user(ctx, event.actor_id).await,
        }
    }
    /// When it happened.
    async fn at(&self) -> DateTime {
        at(self.record().at)
    }
    /// The plan as it is when the event is delivered (so a replayed or
    /// delayed event shows the plan's latest state, not a historical copy).
    async fn plan(&self, ctx: &Context<'_>) -> AppResult<Plan> {
        let event = match self {
            PlanEvent::Live(live) => return Ok(Plan(live.plan.clone())),
            PlanEvent::Stored(event) => event,
        };
        let plan = loaders(ctx).db.load_one(PlanId(event.plan_id)).await?;
        plan.map(Plan)
            .ok_or_else(|| AppError::Internal("event without plan".into()))
    }
}

/// What `submitWork` did.
#[derive(SimpleObject)]
pub struct SubmitWorkResult {
    /// The plan after submission.
    pub plan: Plan,
    /// The feature version created, when the plan was submitted as COMPLETED.
    pub feature_version: Option<FeatureVersion>,
}

/// Plans per status, for a dashboard's column headers.
#[derive(SimpleObject, Default)]
pub struct PlanCounts {
    /// DRAFT plans.
    pub draft: u64,
    /// READY plans.
    pub ready: u64,
    /// CLAIMED plans.
    pub claimed: u64,
    /// IN_PROGRESS plans.
    pub in_progress: u64,
    /// STALLED plans.
    pub stalled: u64,
    /// REVIEW plans.
    pub review: u64,
    /// COMPLETED plans.
    pub completed: u64,
    /// FAILED plans.
    pub failed: u64,
    /// All plans.
    pub total: u64,
}

impl From<std::collections::HashMap<workflow::PlanStatus, u64>> for PlanCounts {
    fn from(counts: std::collections::HashMap<workflow::PlanStatus, u64>) -> PlanCounts {
        use workflow::PlanStatus as Status;
        let of = |status| counts.get(&status).copied().unwrap_or(0);
        PlanCounts {
            draft: of(Status::Draft),
            ready: of(Status::Ready),
            claimed: of(Status::Claimed),
            in_progress: of(Status::InProgress),
            stalled: of(Status::Stalled),
            review: of(Status::Review),
            completed: of(Status::Completed),
            failed: of(Status::Failed),
            total: counts.values().sum(),
        }
    }
}
