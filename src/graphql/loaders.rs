//! Per-request DataLoaders: every relation a list row shows is fetched once per
//! batch of rows, not once per row. Loaders live for one request only, so
//! they never serve another user's data or anything stale.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::error::AppError;
use crate::service::Services;
use crate::storage::{SpecStore, spec_text};
use crate::workflow::{PlanStatus, Role};
use entity::{
    feature, feature_version, plan, plan_event, plan_spec_revision, project, project_member, user,
};

/// Keys name what they load, so one loader can serve several tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserId(pub Uuid);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureId(pub Uuid);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProjectId(pub Uuid);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanId(pub Uuid);

/// A feature's newest `last` versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureVersions {
    pub feature: Uuid,
    pub last: u64,
}
/// Plan counts per status of a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeaturePlanCounts(pub Uuid);
/// Plan counts per status of a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProjectPlanCounts(pub Uuid);
/// A project's members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProjectMembers(pub Uuid);
/// A user's role in a project, if they belong to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RoleIn {
    pub project: Uuid,
    pub user: Uuid,
}
/// One version of a feature, by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionNumber {
    pub feature: Uuid,
    pub version: i32,
}
/// The newest `last` events of a plan's audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanEvents {
    pub plan: Uuid,
    pub last: u64,
}
/// A plan's spec revisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanSpecRevisions(pub Uuid);
/// How many open plans of a feature are drifted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureDriftCount(pub Uuid);
/// The ids of the plans a plan waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanBlockers(pub Uuid);
/// The ids of the plans waiting for a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanWaiters(pub Uuid);

/// A spec object key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpecKey(pub String);

/// The diff from one spec object to another, with the labels of its headers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DiffKey {
    pub from: String,
    pub to: String,
    pub from_label: String,
    pub to_label: String,
}

pub struct DbLoader {
    services: Services,
}

pub struct SpecLoader {
    services: Services,
}

/// Diffs between specs: the plans of one feature drifted from the same
/// version share one diff, computed once per request; the specs of a batch
/// of diffs are one read from the store. At most
/// [`crate::drift::MAX_DIFFS_PER_OPERATION`] are computed for one operation,
/// one after another, each in a turn of the instance's diff bound; and none
/// starts once the operation is gone (the client left, or it timed out).
pub struct DiffLoader {
    services: Services,
    /// Diffs this operation has started.
    started: AtomicUsize,
    /// Cancelled when the operation's loaders are dropped. DataLoader runs
    /// batches on tasks of their own, which outlive the request otherwise.
    operation_gone: CancellationToken,
}

/// A diff as a field gets it: computed, or refused because the operation
/// asked for more than its share.
pub type DiffOutcome = Result<Arc<crate::drift::SpecDiff>, AppError>;

/// The loaders of one request. Each caches what it loaded for the rest of
/// the request, so a list can load every row's relations in one batch up
/// front (see `connection.rs`) and the rows' fields then read from the cache.
pub struct Loaders {
    pub db: DataLoader<DbLoader, HashMapCache>,
    specs: DataLoader<SpecLoader, HashMapCache>,
    pub diffs: DataLoader<DiffLoader, HashMapCache>,
    /// A list of this request put its specs into `specs` (see [`Loaders::prime_specs`]).
    specs_primed: AtomicBool,
    /// Stops the operation's pending diffs when it ends.
    _stop_diffs: DropGuard,
}

impl Loaders {
    pub fn new(services: &Services) -> Loaders {
        let db = DbLoader {
            services: services.clone(),
        };
        let specs = SpecLoader {
            services: services.clone(),
        };
        let operation_gone = CancellationToken::new();
        let diffs = DiffLoader {
            services: services.clone(),
            started: AtomicUsize::new(0),
            operation_gone: operation_gone.clone(),
        };
        Loaders {
            db: DataLoader::with_cache(db, tokio::spawn, HashMapCache::default()),
            specs: DataLoader::with_cache(specs, tokio::spawn, HashMapCache::default()),
            diffs: DataLoader::with_cache(diffs, tokio::spawn, HashMapCache::default()),
            specs_primed: AtomicBool::new(false),
            _stop_diffs: operation_gone.drop_guard(),
        }
    }

    /// Loads the specs of a list's rows at once into the request's cache
    /// (cached objects from memory, the rest in one concurrent batch).
    pub async fn prime_specs(&self, keys: Vec<SpecKey>) -> Result<(), AppError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.specs_primed.store(true, Ordering::Relaxed);
        prime(&self.specs, keys).await
    }

    /// The text of one spec field. Once a list has primed the request's
    /// specs they are read from its cache; otherwise an object already in
    /// the store's memory is answered at once, without waiting out the
    /// DataLoader's batch window, and only the rest are batched.
    pub async fn spec(&self, store: &dyn SpecStore, key: &str) -> Result<Option<String>, AppError> {
        if !self.specs_primed.load(Ordering::Relaxed)
            && let Some(bytes) = store.cached(key).await
        {
            return Ok(Some(spec_text(&bytes)));
        }
        self.specs.load_one(SpecKey(key.to_owned())).await
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
        self.db.clear::<ProjectMembers>();
        self.db.clear::<RoleIn>();
        self.db.clear::<VersionNumber>();
        self.db.clear::<PlanEvents>();
        self.db.clear::<PlanSpecRevisions>();
        self.db.clear::<FeatureDriftCount>();
        self.db.clear::<PlanBlockers>();
        self.db.clear::<PlanWaiters>();
    }

    /// Forgets everything, specs included: a subscription resolves each event
    /// with fresh loaders, so neither its memory nor the age of what it shows
    /// grows with the number of events.
    pub fn forget_all(&self) {
        self.forget_rows();
        self.specs.clear::<SpecKey>();
        self.diffs.clear::<DiffKey>();
        self.specs_primed.store(false, Ordering::Relaxed);
    }
}

/// Loads `keys` at once into `loader`'s request cache, so the fields that
/// ask for them next are answered from it. A list knows every key its rows
/// need as soon as it has the rows; going through `load_many` would wait out
/// the DataLoader's batch window (1 ms) for nothing.
pub async fn prime<L, K>(
    loader: &DataLoader<L, HashMapCache>,
    keys: impl IntoIterator<Item = K>,
) -> Result<(), L::Error>
where
    L: Loader<K>,
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    let keys: Vec<K> = keys
        .into_iter()
        .collect::<HashSet<K>>()
        .into_iter()
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let values = loader.loader().load(&keys).await?;
    loader.feed_many(values).await;
    Ok(())
}

/// Keys of a history loader grouped by how many newest items they ask for:
/// one statement for each count (a request nearly always uses one).
fn by_count<K>(keys: &[K], split: impl Fn(&K) -> (u64, Uuid)) -> HashMap<u64, Vec<Uuid>> {
    let mut groups: HashMap<u64, Vec<Uuid>> = HashMap::new();
    for key in keys {
        let (count, id) = split(key);
        groups.entry(count).or_default().push(id);
    }
    groups
}

fn index_by<K: Eq + Hash, V>(rows: Vec<V>, key: impl Fn(&V) -> K) -> HashMap<K, V> {
    rows.into_iter().map(|row| (key(&row), row)).collect()
}

/// Rows that many fields of a page show (the feature of fifty plans) are
/// shared, not copied for each field that asks.
fn shared_by<K: Eq + Hash, V>(rows: Vec<V>, key: impl Fn(&V) -> K) -> HashMap<K, Arc<V>> {
    rows.into_iter()
        .map(|row| (key(&row), Arc::new(row)))
        .collect()
}

impl Loader<UserId> for DbLoader {
    type Value = Arc<user::Model>;
    type Error = AppError;

    async fn load(&self, keys: &[UserId]) -> Result<HashMap<UserId, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let rows = self.services.users_by_ids(&ids).await?;
        Ok(shared_by(rows, |row| UserId(row.id)))
    }
}

impl Loader<FeatureId> for DbLoader {
    type Value = Arc<feature::Model>;
    type Error = AppError;

    async fn load(&self, keys: &[FeatureId]) -> Result<HashMap<FeatureId, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let rows = self.services.features_by_ids(&ids).await?;
        Ok(shared_by(rows, |row| FeatureId(row.id)))
    }
}

impl Loader<ProjectId> for DbLoader {
    type Value = Arc<project::Model>;
    type Error = AppError;

    async fn load(&self, keys: &[ProjectId]) -> Result<HashMap<ProjectId, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let rows = self.services.projects_by_ids(&ids).await?;
        Ok(shared_by(rows, |row| ProjectId(row.id)))
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
        let mut loaded = HashMap::new();
        for (last, features) in by_count(keys, |key| (key.last, key.feature)) {
            let grouped = self.services.versions_by_features(&features, last).await?;
            loaded.extend(
                grouped
                    .into_iter()
                    .map(|(feature, versions)| (FeatureVersions { feature, last }, versions)),
            );
        }
        Ok(loaded)
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

impl Loader<ProjectMembers> for DbLoader {
    type Value = Vec<project_member::Model>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[ProjectMembers],
    ) -> Result<HashMap<ProjectMembers, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let grouped = self.services.members_of(&ids).await?;
        Ok(grouped
            .into_iter()
            .map(|(id, members)| (ProjectMembers(id), members))
            .collect())
    }
}

impl Loader<RoleIn> for DbLoader {
    type Value = Role;
    type Error = AppError;

    /// One query per user asked about; an operation asks about its viewer.
    async fn load(&self, keys: &[RoleIn]) -> Result<HashMap<RoleIn, Role>, AppError> {
        let mut by_user: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for key in keys {
            by_user.entry(key.user).or_default().push(key.project);
        }
        let mut roles = HashMap::new();
        for (user, projects) in by_user {
            let found = self.services.roles_in(user, Some(&projects)).await?;
            roles.extend(
                found
                    .into_iter()
                    .map(|(project, role)| (RoleIn { project, user }, role)),
            );
        }
        Ok(roles)
    }
}

impl Loader<VersionNumber> for DbLoader {
    type Value = feature_version::Model;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[VersionNumber],
    ) -> Result<HashMap<VersionNumber, Self::Value>, AppError> {
        let numbers: Vec<(Uuid, i32)> = keys.iter().map(|key| (key.feature, key.version)).collect();
        let versions = self.services.versions_by_numbers(&numbers).await?;
        Ok(index_by(versions, |version| VersionNumber {
            feature: version.feature_id,
            version: version.version,
        }))
    }
}

impl Loader<PlanEvents> for DbLoader {
    type Value = Vec<plan_event::Model>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[PlanEvents],
    ) -> Result<HashMap<PlanEvents, Self::Value>, AppError> {
        let mut loaded = HashMap::new();
        for (last, plans) in by_count(keys, |key| (key.last, key.plan)) {
            let grouped = self.services.events_of(&plans, last).await?;
            loaded.extend(
                grouped
                    .into_iter()
                    .map(|(plan, events)| (PlanEvents { plan, last }, events)),
            );
        }
        Ok(loaded)
    }
}

impl Loader<PlanSpecRevisions> for DbLoader {
    type Value = Arc<Vec<plan_spec_revision::Model>>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[PlanSpecRevisions],
    ) -> Result<HashMap<PlanSpecRevisions, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let grouped = self.services.spec_revisions_of(&ids).await?;
        Ok(grouped
            .into_iter()
            .map(|(id, revisions)| (PlanSpecRevisions(id), Arc::new(revisions)))
            .collect())
    }
}

impl Loader<FeatureDriftCount> for DbLoader {
    type Value = u64;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[FeatureDriftCount],
    ) -> Result<HashMap<FeatureDriftCount, u64>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let counts = self.services.drifted_counts_by_feature(&ids).await?;
        Ok(counts
            .into_iter()
            .map(|(id, count)| (FeatureDriftCount(id), count))
            .collect())
    }
}

impl Loader<PlanBlockers> for DbLoader {
    type Value = Vec<Uuid>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[PlanBlockers],
    ) -> Result<HashMap<PlanBlockers, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let grouped = self.services.blockers_by_plans(&ids).await?;
        Ok(grouped
            .into_iter()
            .map(|(id, blockers)| (PlanBlockers(id), blockers))
            .collect())
    }
}

impl Loader<PlanWaiters> for DbLoader {
    type Value = Vec<Uuid>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[PlanWaiters],
    ) -> Result<HashMap<PlanWaiters, Self::Value>, AppError> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let grouped = self.services.waiters_by_plans(&ids).await?;
        Ok(grouped
            .into_iter()
            .map(|(id, waiters)| (PlanWaiters(id), waiters))
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
            .map(|(key, bytes)| (SpecKey(key), spec_text(&bytes)))
            .collect())
    }
}

impl Loader<DiffKey> for DiffLoader {
    type Value = DiffOutcome;
    type Error = AppError;

    /// Every spec of the batch in one read, then the diffs, one after the
    /// other (each bounded by its deadline), while the operation lasts.
    async fn load(&self, keys: &[DiffKey]) -> Result<HashMap<DiffKey, Self::Value>, AppError> {
        let mut specs: Vec<String> = keys
            .iter()
            .flat_map(|key| [key.from.clone(), key.to.clone()])
            .collect();
        specs.sort_unstable();
        specs.dedup();
        let objects: HashMap<String, String> = self
            .services
            .specs
            .get_many(&specs)
            .await?
            .into_iter()
            .map(|(key, bytes)| (key, spec_text(&bytes)))
            .collect();
        let text = |key: &str| {
            objects
                .get(key)
                .cloned()
                .ok_or_else(|| AppError::SpecMissing {
                    key: key.to_owned(),
                })
        };
        let mut diffs = HashMap::with_capacity(keys.len());
        for key in keys {
            let started = self.started.fetch_add(1, Ordering::Relaxed);
            if started >= crate::drift::MAX_DIFFS_PER_OPERATION {
                diffs.insert(key.clone(), Err(too_many_diffs()));
                continue;
            }
            let labels = (key.from_label.clone(), key.to_label.clone());
            let comparison = self
                .services
                .compare(text(&key.from)?, text(&key.to)?, labels);
            let diff = tokio::select! {
                biased;
                () = self.operation_gone.cancelled() => {
                    return Err(AppError::internal("the operation ended before its diffs"));
                }
                diff = comparison => diff?,
            };
            diffs.insert(key.clone(), Ok(Arc::new(diff)));
        }
        Ok(diffs)
    }
}

fn too_many_diffs() -> AppError {
    AppError::BadUserInput(format!(
        "This operation asks for more than {} diffs, the most one operation computes; ask for the others in another request",
        crate::drift::MAX_DIFFS_PER_OPERATION
    ))
}
