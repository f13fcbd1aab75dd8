use sea_orm::entity::prelude::*;

use crate::enums::PlanStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plans")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Copied from the feature so dashboard filters by project need no join.
    pub project_id: Uuid,
    pub feature_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    /// Stored lower-case, e.g. `in_progress`.
    pub status: PlanStatus,
    pub spec_key: String,
    pub spec_sha256: String,
    pub spec_size: i64,
    pub work_artifacts: Option<String>,
    pub claimed_by: Option<Uuid>,
    pub claimed_at: Option<DateTimeUtc>,
    pub submitted_by: Option<Uuid>,
    pub implemented_version: Option<i32>,
    pub last_activity_at: DateTimeUtc,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The feature version current when the plan was written (or last rebased).
    pub based_on_version: i32,
    /// The feature spec object of that version at that moment: a later
    /// amendment of the version gives it another key, so the plan still
    /// knows the text it was written against.
    pub based_on_spec_key: String,
    /// 0 = most urgent … 4 = someday; 2 by default.
    pub priority: i32,
    /// How many times the plan was claimed; the claim token carries it, so a
    /// token from an earlier claim no longer matches (fencing).
    pub claim_generation: i64,
    /// The current claim's lease; null when unclaimed (or claimed before leases).
    pub lease_seconds: Option<i32>,
    /// Last activity + lease: when the sweeper stalls the claim. Null when
    /// unclaimed, or for a claim taken before leases (the global threshold applies).
    pub lease_expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
