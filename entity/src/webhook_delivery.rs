use sea_orm::entity::prelude::*;

/// One attempt to deliver one event to one webhook; the newest few per
/// webhook are kept.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    /// Also sent as `X-Plangraph-Delivery`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// The `plan_events` id delivered.
    pub event_id: i64,
    /// 1 for the first attempt at this event, 2 for the first retry, …
    pub attempt: i32,
    /// Asked for by an owner (`redeliverWebhookDelivery`), outside the
    /// webhook's ordered stream.
    pub redelivery: bool,
    /// The receiver's HTTP status; `None` when no response came.
    pub status: Option<i32>,
    /// Why the attempt failed; `None` on success.
    pub error: Option<String>,
    pub duration_ms: Option<i32>,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
