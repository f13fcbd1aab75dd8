use async_graphql::{Context, ID, Object};

use super::{DateTime, Feature, Plan, User, at, optional_user, spec_text};
use crate::error::{AppError, AppResult};
use crate::graphql::loaders;
use crate::graphql::loaders::{FeatureId, PlanId};
use entity::feature_version;

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
    #[graphql(complexity = "crate::graphql::limits::DOCUMENT_COMPLEXITY")]
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
