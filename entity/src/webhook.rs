use std::fmt;

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    /// The stored spellings of the event kinds sent, comma-separated; `None`
    /// sends every kind.
    pub event_kinds: Option<String>,
    pub secret: WebhookSecret,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Id of the last `plan_events` row this webhook is done with (delivered,
    /// refused by the receiver, or filtered out): delivery resumes after it.
    pub event_cursor: i64,
    /// Failed attempts at the event after `event_cursor`.
    pub attempts: i32,
    /// Failed attempts in a row, across events; reset by a success.
    pub consecutive_failures: i32,
    /// When the current run of failures began.
    pub failing_since: Option<DateTimeUtc>,
    /// No attempt before this time (the backoff after a failure).
    pub next_attempt_at: Option<DateTimeUtc>,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// The key deliveries are signed with. It is kept in clear because signing
/// needs it (a hash could only verify); its `Debug` hides it, so a logged row
/// never shows it.
#[derive(Clone, PartialEq, Eq, DeriveValueType)]
pub struct WebhookSecret(pub String);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("WebhookSecret(…)")
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
