//! Features and their versions.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, sea_query::Expr,
};
use uuid::Uuid;

use super::changes::{FeatureBefore, VersionOrigin, announce_drift, cut_version};
use super::pagination::{Page, Window, fetch_page, newest_of_each};
use super::{Services, Viewer, now, parse_id};
use crate::error::{AppError, AppResult, Argument};
use crate::storage::{SpecOwner, store_spec};
use entity::{feature, feature_version};

/// What `updateFeature` may change; `None` leaves a field as it is.
pub struct FeatureUpdate {
    pub title: Option<String>,
    pub description: Option<String>,
    pub spec_content: Option<String>,
    pub new_version: bool,
}

impl Services {
    /// Creates a feature with its first version, v1.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_feature(
        &self,
        viewer: &Viewer,
        project_id: &str,
        title: &str,
        description: Option<String>,
        spec_content: &str,
    ) -> AppResult<feature::Model> {
        let project = self.project(viewer, project_id).await?;
        self.require_writer(viewer, project.id).await?;
        let title = self.validate_title(Argument::Title, title)?;
        let description = self.validate_description(description)?;
        self.validate_markdown(Argument::SpecContent, spec_content)?;
        let id = Uuid::now_v7();
        let spec = store_spec(
            &*self.specs,
            project.id,
            SpecOwner::Feature(id),
            spec_content,
        )
        .await?;
        let at = now();
        let txn = self.begin_write().await?;
        let feature = feature::ActiveModel {
            id: Set(id),
            project_id: Set(project.id),
            title: Set(title),
            description: Set(description),
            current_version: Set(1),
            spec_key: Set(spec.key.clone()),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(&*txn)
        .await?;
        feature_version::ActiveModel {
            id: Set(Uuid::now_v7()),
            feature_id: Set(id),
            version: Set(1),
            spec_key: Set(spec.key),
            implemented_by_plan_id: Set(None),
            implemented_by: Set(None),
            created_at: Set(at),
        }
        .insert(&*txn)
        .await?;
        txn.commit().await?;
        Ok(feature)
    }

    /// Edits a feature. With `new_version` it cuts the next version (carrying
    /// the new spec if one is given); otherwise it amends the current version.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn update_feature(
        &self,
        viewer: &Viewer,
        feature_id: &str,
        update: FeatureUpdate,
    ) -> AppResult<feature::Model> {
        let feature = self.feature(viewer, feature_id).await?;
        self.require_writer(viewer, feature.project_id).await?;
        let title = update
            .title
            .as_deref()
            .map(|title| self.validate_title(Argument::Title, title))
            .transpose()?;
        let description = self.validate_description(update.description)?;
        let nothing_to_do = title.is_none()
            && description.is_none()
            && update.spec_content.is_none()
            && !update.new_version;
        if nothing_to_do {
            return Err(AppError::BadUserInput(
                "Nothing to update: give a title, description, specContent or newVersion: true"
                    .into(),
            ));
        }
        let spec = match &update.spec_content {
            Some(content) => {
                self.validate_markdown(Argument::SpecContent, content)?;
                let owner = SpecOwner::Feature(feature.id);
                Some(store_spec(&*self.specs, feature.project_id, owner, content).await?)
            }
            None => None,
        };
        let txn = self.begin_write().await?;
        let before = feature;
        let mut edit = feature::Entity::update_many()
            .col_expr(feature::Column::UpdatedAt, Expr::value(now()))
            .filter(feature::Column::Id.eq(before.id));
        if let Some(title) = title {
            edit = edit.col_expr(feature::Column::Title, Expr::value(title));
        }
        if let Some(description) = description {
            edit = edit.col_expr(feature::Column::Description, Expr::value(description));
        }
        if let (false, Some(spec)) = (update.new_version, &spec) {
            edit = edit.col_expr(feature::Column::SpecKey, Expr::value(spec.key.clone()));
        }
        let mut feature = edit
            .exec_with_returning(&*txn)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AppError::NotFound(format!("No feature with id {}", before.id)))?;
        // What open plans were written against may have moved: a new
        // version, or a different text for the current one.
        let mut moved = None;
        if update.new_version {
            moved = Some(FeatureBefore {
                version: feature.current_version,
                spec_key: feature.spec_key.clone(),
            });
            let origin = VersionOrigin {
                plan: None,
                implemented_by: None,
                spec_key: spec.map(|spec| spec.key),
            };
            feature = cut_version(&*txn, feature.id, origin).await?.0;
        } else if let Some(spec) = spec {
            moved = Some(FeatureBefore {
                version: feature.current_version,
                spec_key: before.spec_key.clone(),
            });
            feature_version::Entity::update_many()
                .col_expr(feature_version::Column::SpecKey, Expr::value(spec.key))
                .filter(feature_version::Column::FeatureId.eq(feature.id))
                .filter(feature_version::Column::Version.eq(feature.current_version))
                .exec(&*txn)
                .await?;
        }
        let drifted = match moved {
            Some(before) => {
                let cause = format!(
                    "{} changed the feature's spec (now v{})",
                    viewer.user.email, feature.current_version
                );
                announce_drift(&*txn, &before, &feature, &cause).await?
            }
            None => Vec::new(),
        };
        txn.commit_and_publish(&self.events, drifted).await?;
        Ok(feature)
    }

    /// A feature by id, for members of its project.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn feature(&self, viewer: &Viewer, id: &str) -> AppResult<feature::Model> {
        let id = parse_id(Argument::FeatureId, id)?;
        let feature = self.find_feature(id).await?;
        self.require_member(viewer, feature.project_id).await?;
        Ok(feature)
    }

    pub async fn find_feature(&self, id: Uuid) -> AppResult<feature::Model> {
        feature::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("No feature with id {id}")))
    }

    /// One page of a project's features, oldest first.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_features(
        &self,
        project: Uuid,
        window: &Window,
    ) -> AppResult<Page<feature::Model>> {
        let query = feature::Entity::find().filter(feature::Column::ProjectId.eq(project));
        let sort = feature::Column::CreatedAt;
        fetch_page(&self.db, query, sort, feature::Column::Id, window).await
    }

    pub async fn count_features(&self, project: Uuid) -> AppResult<u64> {
        Ok(feature::Entity::find()
            .filter(feature::Column::ProjectId.eq(project))
            .count(&self.db)
            .await?)
    }

    /// The newest `count` versions of each feature, oldest first, in one
    /// query.
    pub async fn versions_by_features(
        &self,
        features: &[Uuid],
        count: u64,
    ) -> AppResult<HashMap<Uuid, Vec<feature_version::Model>>> {
        newest_of_each::<feature_version::Entity>(
            &self.db,
            feature_version::Column::FeatureId,
            |version| version.feature_id,
            feature_version::Column::Version,
            features,
            count,
        )
        .await
    }

    pub async fn features_by_ids(&self, ids: &[Uuid]) -> AppResult<Vec<feature::Model>> {
        Ok(feature::Entity::find()
            .filter(feature::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?)
    }

    /// The newest `count` versions of a feature, oldest first.
    pub async fn versions_of(
        &self,
        feature: Uuid,
        count: u64,
    ) -> AppResult<Vec<feature_version::Model>> {
        let mut versions = self.versions_by_features(&[feature], count).await?;
        Ok(versions.remove(&feature).unwrap_or_default())
    }

    /// `featureVersions(featureId, last)`: versions for members of the project.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn feature_versions(
        &self,
        viewer: &Viewer,
        feature_id: &str,
        count: u64,
    ) -> AppResult<Vec<feature_version::Model>> {
        let feature = self.feature(viewer, feature_id).await?;
        self.versions_of(feature.id, count).await
    }

    /// The versions named by (feature, version number), in one query.
    pub async fn versions_by_numbers(
        &self,
        numbers: &[(Uuid, i32)],
    ) -> AppResult<Vec<feature_version::Model>> {
        let any_of = numbers
            .iter()
            .fold(sea_orm::Condition::any(), |any, (feature, version)| {
                any.add(
                    sea_orm::Condition::all()
                        .add(feature_version::Column::FeatureId.eq(*feature))
                        .add(feature_version::Column::Version.eq(*version)),
                )
            });
        Ok(feature_version::Entity::find()
            .filter(any_of)
            .all(&self.db)
            .await?)
    }
}
