//! Read operations.

use async_graphql::{Context, ID, Object};

use super::connection::PageArguments;
use super::types::{
    ApiKey, DateTime, Feature, FeatureVersion, Node, Plan, PlanConnection, PlanOrder, PlanStatus,
    Project, User, load_plans,
};
use super::{services, viewer};
use crate::error::{AppResult, Argument};
use crate::service::pagination::newest;
use crate::service::parse_id;
use crate::service::plan_lists::PlanFilter;

pub struct QueryRoot;

/// Reads. Everything is limited to projects you are a member of.
// Arguments are flat, each filter its own (the pinned API), so `plans` has many of them.
#[allow(clippy::too_many_arguments)]
#[Object(name = "Query")]
impl QueryRoot {
    /// You: the user the API key belongs to.
    async fn viewer(&self, ctx: &Context<'_>) -> AppResult<User> {
        Ok(User::from(viewer(ctx)?.user.clone()))
    }

    /// Your API keys (without secrets), oldest first.
    #[graphql(complexity = "crate::graphql::limits::unpaged_cost(child_complexity)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> AppResult<Vec<ApiKey>> {
        let keys = services(ctx).api_keys_of(viewer(ctx)?).await?;
        Ok(keys.into_iter().map(ApiKey).collect())
    }

    /// Projects you are a member of, oldest first.
    #[graphql(complexity = "crate::graphql::limits::unpaged_cost(child_complexity)")]
    async fn projects(&self, ctx: &Context<'_>) -> AppResult<Vec<Project>> {
        let projects = services(ctx).projects_of(viewer(ctx)?).await?;
        Ok(projects.into_iter().map(Project::from).collect())
    }

    /// One project; FORBIDDEN unless you are a member.
    async fn project(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] id: ID,
    ) -> AppResult<Project> {
        let project = services(ctx).project(viewer(ctx)?, &id).await?;
        Ok(Project::from(project))
    }

    /// One feature; FORBIDDEN unless you are a member of its project.
    async fn feature(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The feature's id.")] id: ID,
    ) -> AppResult<Feature> {
        let feature = services(ctx).feature(viewer(ctx)?, &id).await?;
        Ok(Feature::from(feature))
    }

    /// Any object you may see by its id alone — a plan, feature, project,
    /// user or feature version (Relay's global object identification). Null
    /// when there is none, or it belongs to a project you are not a member of.
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The object's id.")] id: ID,
    ) -> AppResult<Option<Node>> {
        Ok(find_nodes(ctx, &[id]).await?.pop().flatten())
    }

    /// Several objects by id, in the order asked, each as `node(id:)` gives
    /// it: in one read for each type, however many ids (at most 100).
    #[graphql(complexity = "ids.len().saturating_mul(child_complexity).saturating_add(1)")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The objects' ids; at most 100.")] ids: Vec<ID>,
    ) -> AppResult<Vec<Option<Node>>> {
        find_nodes(ctx, &ids).await
    }

    /// One plan with everything about it (ask for `spec` to get the markdown).
    async fn plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan's id.")] id: ID,
    ) -> AppResult<Plan> {
        let plan = services(ctx).plan(viewer(ctx)?, &id).await?;
        Ok(Plan::from(plan))
    }

    /// Plans of your projects, filtered, ordered and paged (default: oldest
    /// first, 20 per page). Plans of projects you are not a member of never appear.
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, last, child_complexity)")]
    async fn plans(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only plans of this project.")] project_id: Option<ID>,
        #[graphql(desc = "Only plans of this feature.")] feature_id: Option<ID>,
        #[graphql(desc = "Only plans in any of these statuses.")] status: Option<Vec<PlanStatus>>,
        #[graphql(desc = "Only plans claimed by this user.")] claimed_by: Option<ID>,
        #[graphql(desc = "Only plans changed at or after this time.")] updated_since: Option<
            DateTime,
        >,
        #[graphql(desc = "Only plans whose title contains this text (any case).")] search: Option<
            String,
        >,
        #[graphql(
            desc = "Only plans whose spec is stale (true: open plans written against an older or amended feature spec) or not (false); see Plan.specDrift."
        )]
        drifted: Option<bool>,
        #[graphql(desc = "Only plans with any of these priorities (0 = most urgent … 4).")]
        priority: Option<Vec<i32>>,
        #[graphql(
            desc = "Only plans that wait for an unfinished plan (true) or for none (false); see Plan.blockedBy."
        )]
        blocked: Option<bool>,
        #[graphql(
            desc = "Only plans that wait for a FAILED plan (true) or for none (false). A failed blocker never completes: such a plan stays blocked until someone removes the dependency (removePlanDependency) or the failed plan is replaced."
        )]
        blocked_by_failed: Option<bool>,
        #[graphql(desc = "Sort order; default oldest first.")] order_by: Option<PlanOrder>,
        #[graphql(desc = "Page size from the start: 0 to 100, default 20.")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (a previous page's endCursor).")]
        after: Option<String>,
        #[graphql(desc = "Page size from the end: 0 to 100.")] last: Option<i32>,
        #[graphql(desc = "Continue before this cursor (a previous page's startCursor).")]
        before: Option<String>,
    ) -> AppResult<PlanConnection> {
        let filter = PlanFilter {
            updated_since: updated_since.map(|since| since.0),
            search,
            drifted,
            blocked,
            blocked_by_failed,
            ..PlanFilter::parse(
                project_id.as_deref().map(String::as_str),
                feature_id.as_deref().map(String::as_str),
                claimed_by.as_deref().map(String::as_str),
                status.unwrap_or_default(),
            )?
        }
        .with_priorities(priority.unwrap_or_default())?;
        let arguments = PageArguments {
            first,
            after,
            last,
            before,
        };
        load_plans(ctx, filter, order_by.unwrap_or_default(), arguments).await
    }

    /// A feature's newest `last` versions, oldest first, each linked to the
    /// plan and person that produced it.
    #[graphql(complexity = "crate::graphql::limits::page_cost(None, last, child_complexity)")]
    async fn feature_versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The feature's id.")] feature_id: ID,
        #[graphql(desc = "How many of the newest versions: 0 to 100, default 20.")] last: Option<
            i32,
        >,
    ) -> AppResult<Vec<FeatureVersion>> {
        let versions = services(ctx)
            .feature_versions(viewer(ctx)?, &feature_id, newest(last)?)
            .await?;
        Ok(versions.into_iter().map(FeatureVersion).collect())
    }
}

/// `node` and `nodes`: each id's object, or null.
async fn find_nodes(ctx: &Context<'_>, ids: &[ID]) -> AppResult<Vec<Option<Node>>> {
    let ids = ids
        .iter()
        .map(|id| parse_id(Argument::Id, id))
        .collect::<AppResult<Vec<_>>>()?;
    let found = services(ctx).nodes(viewer(ctx)?, &ids).await?;
    Ok(ids
        .iter()
        .map(|id| found.get(id).cloned().map(Node::from))
        .collect())
}
