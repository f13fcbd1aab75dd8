use sea_orm::entity::prelude::*;

/// `plan_id` waits for `blocked_by_plan_id`: it cannot be claimed until the
/// blocker is COMPLETED. Both plans are in `project_id`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plan_dependencies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub plan_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub blocked_by_plan_id: Uuid,
    pub project_id: Uuid,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
