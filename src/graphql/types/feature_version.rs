use async_graphql::{Context, ID, Object};

use super::{DateTime, Feature, Plan, SpecDiff, User, at, diff_specs, optional_user, spec_text};
use crate::error::{AppError, AppResult};
use crate::graphql::loaders;
use crate::graphql::loaders::{FeatureId, PlanId, VersionNumber};
use entity::feature_version;

pub struct FeatureVersion(pub feature_version::Model);

/// One version of a feature: v1 at creation, then one per completed plan (or
/// per `updateFeature(newVersion: true)`).
#[Object]
impl FeatureVersion {
    /// Stable id (UUID).
    pub(crate) async fn id(&self) -> ID {
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
            .ok_or_else(|| AppError::internal("version without feature"))
    }
    /// The feature's spec (markdown) as of this version.
    /// Null, with a `STORAGE_UNAVAILABLE` error at this path, while the store is down.
    #[graphql(complexity = "crate::graphql::limits::DOCUMENT_COMPLEXITY")]
    async fn spec(&self, ctx: &Context<'_>) -> AppResult<Option<String>> {
        spec_text(ctx, &self.0.spec_key).await.map(Some)
    }
    /// The plan whose completion cut this version; null for v1 and manual versions.
    async fn implemented_by_plan(&self, ctx: &Context<'_>) -> AppResult<Option<Plan>> {
        let Some(id) = self.0.implemented_by_plan_id else {
            return Ok(None);
        };
        Ok(loaders(ctx).db.load_one(PlanId(id)).await?.map(Plan::from))
    }
    /// Who implemented it: the worker who submitted, else the approver.
    async fn implemented_by(&self, ctx: &Context<'_>) -> AppResult<Option<User>> {
        optional_user(ctx, self.0.implemented_by).await
    }
    /// The diff of the spec from version `from` (default: the version
    /// before) to this one; null for v1 without `from`.
    #[graphql(complexity = "super::drift::DIFF_COMPLEXITY")]
    async fn diff(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version to compare from; default the previous one.")] from: Option<
            i32,
        >,
    ) -> AppResult<Option<SpecDiff>> {
        let from = match from {
            Some(from) => from,
            None if self.0.version > 1 => self.0.version - 1,
            None => return Ok(None),
        };
        let key = VersionNumber {
            feature: self.0.feature_id,
            version: from,
        };
        let base =
            loaders(ctx).db.load_one(key).await?.ok_or_else(|| {
                AppError::BadUserInput(format!("The feature has no version {from}"))
            })?;
        let labels = (format!("v{from}"), format!("v{}", self.0.version));
        diff_specs(ctx, &base.spec_key, &self.0.spec_key, labels.0, labels.1)
            .await
            .map(Some)
    }
    /// When the version was cut.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
}
