//! Per-request DataLoaders: every relation a list row shows is fetched once per
//! batch of rows, not once per row. Loaders live for one request only, so
//! they never serve another user's data or anything stale.

use std::collections::HashMap;
use std::hash::Hash;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use uuid::Uuid;

use crate::error::AppError;
use crate::service::Services;
use crate::workflow::PlanStatus;
use entity::{feature, feature_version, plan, project, user};

/// Keys name what they load, so one loader can serve several tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserId(pub Uuid);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureId(pub Uuid);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProjectId(pub Uuid);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanId(pub Uuid);

/// A feature's versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureVersions(pub Uuid);
/// Plan counts per status of a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeaturePlanCounts(pub Uuid);
/// Plan counts per status of a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProjectPlanCounts(pub Uuid);

/// A spec object key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpecKey(pub String);

pub struct DbLoader {
    services: Services,
}

pub struct SpecLoader {
    services: Services,
}

/// The loaders of one request. Each caches what it loaded for the rest of
/// the request, so a list can load every row's relations in one batch up
/// front (see `connection.rs`) and the rows' fields then read from the cache.
pub struct Loaders {
    pub db: DataLoader<DbLoader, HashMapCache>,
    pub specs: DataLoader<SpecLoader, HashMapCache>,
}

impl Loaders {
    pub fn new(services: &Services) -> Loaders {
        let db = DbLoader {
            services: services.clone(),
        };
        let specs = SpecLoader {
            services: services.clone(),
        };
        Loaders {
            db: DataLoader::with_cache(db, tokio::spawn, HashMapCache::default()),
            specs: DataLoader::with_cache(specs, tokio::spawn, HashMapCache::default()),
        }
    }

    /// Rows may change when a mutation runs: forget them, so that the
    /// mutation's own response (and any later one in the same request) is
    /// read fresh. Specs are immutable and stay cached.
    pub fn forget_rows(&self) {
        self.db.clear::<UserId>();
        self.db.clear::<FeatureId>();
        self.db.clear::<ProjectId>();
        self.db.clear::<PlanId>();
        self.db.clear::<FeatureVersions>();
        self.db.clear::<FeaturePlanCounts>();
        self.db.clear::<ProjectPlanCounts>();
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

impl Loader<FeatureVersions> for DbLoader {
    type Value = Vec<feature_version::Model>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[FeatureVersions],
    ) -> Result<HashMap<FeatureVersions, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let grouped = self.services.versions_by_features(&ids).await?;
        Ok(grouped
            .into_iter()
            .map(|(id, versions)| (FeatureVersions(id), versions))
            .collect())
    }
}

impl Loader<FeaturePlanCounts> for DbLoader {
    type Value = HashMap<PlanStatus, u64>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[FeaturePlanCounts],
    ) -> Result<HashMap<FeaturePlanCounts, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let counts = self.services.plan_counts_by_feature(&ids).await?;
        Ok(counts
            .into_iter()
            .map(|(id, counts)| (FeaturePlanCounts(id), counts))
            .collect())
    }
}

impl Loader<ProjectPlanCounts> for DbLoader {
    type Value = HashMap<PlanStatus, u64>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[ProjectPlanCounts],
    ) -> Result<HashMap<ProjectPlanCounts, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let counts = self.services.plan_counts_by_project(&ids).await?;
        Ok(counts
            .into_iter()
            .map(|(id, counts)| (ProjectPlanCounts(id), counts))
            .collect())
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
