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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
