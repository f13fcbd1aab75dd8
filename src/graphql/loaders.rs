//! Per-request DataLoaders: every relation a list row shows is fetched once per
//! batch of rows, not once per row. Loaders live for one request only, so
//! they never serve another user's data or anything stale.

use std::collections::HashMap;
use std::hash::Hash;

use async_graphql::dataloader::{DataLoader, Loader};
use uuid::Uuid;

use crate::error::AppError;
use crate::service::Services;
use entity::{feature, plan, project, user};

/// Keys name what they load, so one loader can serve several tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserId(pub Uuid);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureId(pub Uuid);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProjectId(pub Uuid);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanId(pub Uuid);

/// A spec object key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpecKey(pub String);

pub struct DbLoader {
    services: Services,
}

pub struct SpecLoader {
    services: Services,
}

/// The loaders of one request.
pub struct Loaders {
    pub db: DataLoader<DbLoader>,
    pub specs: DataLoader<SpecLoader>,
}

impl Loaders {
    pub fn new(services: &Services) -> Loaders {
        Loaders {
            db: DataLoader::new(
                DbLoader {
                    services: services.clone(),
                },
                tokio::spawn,
            ),
            specs: DataLoader::new(
                SpecLoader {
                    services: services.clone(),
                },
                tokio::spawn,
            ),
        }
    }
}

fn index_by<K: Eq + Hash, V>(rows: Vec<V>, key: impl Fn(&V) -> K) -> HashMap<K, V> {
    rows.into_iter().map(|row| (key(&row), row)).collect()
}

impl Loader<UserId> for DbLoader {
    type Value = user::Model;
    type Error = AppError;

    async fn load(&self, keys: &[UserId]) -> Result<HashMap<UserId, user::Model>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let rows = self.services.users_by_ids(&ids).await?;
        Ok(index_by(rows, |row| UserId(row.id)))
    }
}

impl Loader<FeatureId> for DbLoader {
    type Value = feature::Model;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[FeatureId],
    ) -> Result<HashMap<FeatureId, feature::Model>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let rows = self.services.features_by_ids(&ids).await?;
        Ok(index_by(rows, |row| FeatureId(row.id)))
    }
}

impl Loader<ProjectId> for DbLoader {
    type Value = project::Model;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[ProjectId],
    ) -> Result<HashMap<ProjectId, project::Model>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let rows = self.services.projects_by_ids(&ids).await?;
        Ok(index_by(rows, |row| ProjectId(row.id)))
    }
}

impl Loader<PlanId> for DbLoader {
    type Value = plan::Model;
    type Error = AppError;

    async fn load(&self, keys: &[PlanId]) -> Result<HashMap<PlanId, plan::Model>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let rows = self.services.plans_by_ids(&ids).await?;
        Ok(index_by(rows, |row| PlanId(row.id)))
    }
}

impl Loader<SpecKey> for SpecLoader {
    type Value = String;
    type Error = AppError;

    /// One batch, fetched concurrently by the store.
    async fn load(&self, keys: &[SpecKey]) -> Result<HashMap<SpecKey, String>, AppError> {
        let keys: Vec<String> = keys.iter().map(|key| key.0.clone()).collect();
        let objects = self.services.specs.get_many(&keys).await?;
        Ok(objects
            .into_iter()
            .map(|(key, bytes)| (SpecKey(key), String::from_utf8_lossy(&bytes).into_owned()))
            .collect())
    }
}
