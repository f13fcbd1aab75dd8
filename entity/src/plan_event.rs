use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plan_events")]
pub struct Model {
    /// Monotonic, so it doubles as the subscription cursor.
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: Uuid,
    pub feature_id: Uuid,
    pub plan_id: Uuid,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: String,
    /// `None` when the system (the stale sweeper) made the change.
    pub actor_id: Option<Uuid>,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
