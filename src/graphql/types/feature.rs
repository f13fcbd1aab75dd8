use std::sync::Arc;

use async_graphql::{Context, ID, Object};

use super::{
    DateTime, FeatureVersion, PlanConnection, PlanCounts, PlanOrder, PlanStatus, Project, SpecDiff,
    at, diff_specs, load_plans, spec_text,
};
use crate::error::{AppError, AppResult};
use crate::graphql::connection::PageArguments;
use crate::graphql::inline::PureFields;
use crate::graphql::loaders;
use crate::graphql::loaders::{
    FeatureDriftCount, FeaturePlanCounts, FeatureVersions, ProjectId, VersionNumber,
};
use crate::service::pagination::newest;
use crate::service::plan_lists::PlanFilter;
use entity::feature;

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
    pub(crate) async fn id(&self) -> ID {
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
    #[graphql(complexity = "crate::graphql::limits::DOCUMENT_COMPLEXITY")]
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
            .ok_or_else(|| AppError::internal("feature without project"))
    }
    /// This feature's plans, filtered, ordered and paged.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, last, child_complexity)")]
    async fn plans(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only plans in any of these statuses.")] status: Option<Vec<PlanStatus>>,
        #[graphql(desc = "Only plans whose title contains this text (any case).")] search: Option<
            String,
        >,
        #[graphql(
            desc = "Only plans whose spec is stale (true) or up to date (false); see Plan.specDrift."
        )]
        drifted: Option<bool>,
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
            drifted,
            ..PlanFilter::parse(None, None, None, status.unwrap_or_default())?
        };
        let arguments = PageArguments {
            first,
            after,
            last,
            before,
        };
        // Boxed, as the other large field futures of row types: an object's
        // fields share one future as large as its largest field, and every
        // field of every row (a title too) is moved into a box of that size.
        Box::pin(load_plans(
            ctx,
            filter,
            order_by.unwrap_or_default(),
            arguments,
        ))
        .await
    }
    /// How many of this feature's plans are in each status.
    async fn plan_counts(&self, ctx: &Context<'_>) -> AppResult<PlanCounts> {
        let counts = loaders(ctx)
            .db
            .load_one(FeaturePlanCounts(self.0.id))
            .await?;
        Ok(PlanCounts::from(counts.unwrap_or_default()))
    }
    /// How many of this feature's open plans (DRAFT … REVIEW) are drifted:
    /// written against an older version or an amended spec.
    async fn drifted_plan_count(&self, ctx: &Context<'_>) -> AppResult<u64> {
        let count = loaders(ctx)
            .db
            .load_one(FeatureDriftCount(self.0.id))
            .await?;
        Ok(count.unwrap_or(0))
    }
    /// The diff of the spec from version `fromVersion` to `toVersion` (default
    /// the current one), each as it is now (amendments included).
    #[graphql(complexity = "super::drift::DIFF_COMPLEXITY")]
    async fn spec_diff(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version to compare from.")] from_version: i32,
        #[graphql(desc = "The version to compare to; default the current version.")]
        to_version: Option<i32>,
    ) -> AppResult<Option<SpecDiff>> {
        let to_version = to_version.unwrap_or(self.0.current_version);
        let version = |version| async move {
            let key = VersionNumber {
                feature: self.0.id,
                version,
            };
            loaders(ctx).db.load_one(key).await?.ok_or_else(|| {
                AppError::BadUserInput(format!(
                    "The feature has no version {version}; its versions are 1 to {}",
                    self.0.current_version
                ))
            })
        };
        Box::pin(async move {
            let (from, to) = futures::try_join!(version(from_version), version(to_version))?;
            let labels = (format!("v{from_version}"), format!("v{to_version}"));
            diff_specs(ctx, &from.spec_key, &to.spec_key, labels.0, labels.1)
                .await
                .map(Some)
        })
        .await
    }
    /// The feature's versions, oldest first: its newest `last` versions
    /// (`currentVersion` tells how many there are).
    #[graphql(complexity = "crate::graphql::limits::page_cost(None, last, child_complexity)")]
    async fn versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many of the newest versions: 0 to 100, default 20.")] last: Option<
            i32,
        >,
    ) -> AppResult<Vec<FeatureVersion>> {
        let key = FeatureVersions {
            feature: self.0.id,
            last: newest(last)?,
        };
        let versions = loaders(ctx).db.load_one(key).await?;
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

/// Read straight off the row (see `graphql/inline.rs`).
impl PureFields for Feature {
    const PURE: &'static [&'static str] = &[
        "id",
        "title",
        "description",
        "currentVersion",
        "createdAt",
        "updatedAt",
    ];
}
