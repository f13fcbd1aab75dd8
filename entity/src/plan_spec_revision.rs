use sea_orm::entity::prelude::*;

/// One spec a plan had: written at creation, by each `updatePlan` and by a
/// `rebasePlan` that replaced it. The object is immutable, so the row is
/// enough to read or diff any past revision.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plan_spec_revisions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub plan_id: Uuid,
    pub spec_key: String,
    pub spec_size: i64,
    /// `None` for revisions recorded before authors were (the migration's backfill).
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
