use std::sync::Arc;

use async_graphql::{Context, ID, Object};

use super::{
    DateTime, FeatureConnection, PlanCounts, ProjectRole, ReviewPolicy, User, at, load_features,
    user_by_id,
};
use crate::error::AppResult;
use crate::graphql::connection::PageArguments;
use crate::graphql::inline::PureFields;
use crate::graphql::loaders::{ProjectMembers, ProjectPlanCounts, RoleIn};
use crate::graphql::{loaders, viewer};
use entity::{project, project_member};

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
    pub(crate) async fn id(&self) -> ID {
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
    /// Who may approve work in REVIEW; owners change it with
    /// `setProjectReviewPolicy`.
    async fn review_policy(&self) -> ReviewPolicy {
        self.0.review_policy.into()
    }
    /// Your role in this project.
    async fn viewer_role(&self, ctx: &Context<'_>) -> AppResult<Option<ProjectRole>> {
        let key = RoleIn {
            project: self.0.id,
            user: viewer(ctx)?.id(),
        };
        let role = loaders(ctx).db.load_one(key).await?;
        Ok(role.map(Into::into))
    }
    /// Everyone with access, oldest membership first.
    #[graphql(complexity = "crate::graphql::limits::unpaged_cost(child_complexity)")]
    async fn members(&self, ctx: &Context<'_>) -> AppResult<Vec<ProjectMember>> {
        let members = loaders(ctx).db.load_one(ProjectMembers(self.0.id)).await?;
        Ok(members
            .unwrap_or_default()
            .into_iter()
            .map(ProjectMember)
            .collect())
    }
    /// The project's features, oldest first, one page at a time.
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, last, child_complexity)")]
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
        // Boxed: see `Feature.plans`.
        Box::pin(load_features(ctx, self.0.id, arguments)).await
    }
    /// How many of the project's plans are in each status.
    async fn plan_counts(&self, ctx: &Context<'_>) -> AppResult<PlanCounts> {
        let counts = loaders(ctx)
            .db
            .load_one(ProjectPlanCounts(self.0.id))
            .await?;
        Ok(PlanCounts::from(counts.unwrap_or_default()))
    }
    /// The project's webhooks, oldest first. Owners only: FORBIDDEN for others.
    #[graphql(complexity = "crate::graphql::limits::unpaged_cost(child_complexity)")]
    async fn webhooks(&self, ctx: &Context<'_>) -> AppResult<Vec<super::Webhook>> {
        let webhooks = crate::graphql::services(ctx)
            .webhooks_of(viewer(ctx)?, self.0.id)
            .await?;
        Ok(webhooks.into_iter().map(super::Webhook).collect())
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
    async fn role(&self) -> ProjectRole {
        self.0.role.into()
    }
    /// When the user joined the project.
    async fn added_at(&self) -> DateTime {
        at(self.0.created_at)
    }
}

/// Read straight off the row (see `graphql/inline.rs`).
impl PureFields for Project {
    const PURE: &'static [&'static str] = &[
        "id",
        "name",
        "description",
        "createdAt",
        "updatedAt",
        "reviewPolicy",
    ];
}
