use sea_orm::entity::prelude::*;

use crate::enums::{EventKind, PlanStatus};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plan_events")]
pub struct Model {
    /// Monotonic, so it doubles as the subscription cursor.
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: Uuid,
    pub feature_id: Uuid,
    pub plan_id: Uuid,
    pub kind: EventKind,
    pub from_status: Option<PlanStatus>,
    pub to_status: PlanStatus,
    /// `None` when the system (the stale sweeper) made the change.
    pub actor_id: Option<Uuid>,
    pub at: DateTimeUtc,
    /// Why: the server's cause for a change no person made (drift, unblock,
    /// stall), or the reviewer's reason for sending work back.
    pub note: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
