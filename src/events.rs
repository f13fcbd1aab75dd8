//! The event log and its live fan-out.
//!
//! `plan_events` is the source of truth: every change writes its row in the same
//! transaction as the change itself, so the audit trail can never disagree with
//! the plans table. Live listeners are told only after the commit.

use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::error::AppResult;
use crate::workflow::{EventKind, PlanStatus};
use entity::{plan, plan_event};

/// In-process fan-out of committed events. Sending never blocks the writer:
/// a receiver that lags loses its place and must resume from the table.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<plan_event::Model>,
}

impl EventBus {
    pub fn new(capacity: usize) -> EventBus {
        let (sender, _) = broadcast::channel(capacity);
        EventBus { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<plan_event::Model> {
        self.sender.subscribe()
    }

    /// Announces events whose transaction has committed.
    pub fn publish(&self, events: impl IntoIterator<Item = plan_event::Model>) {
        for event in events {
            // No receivers is normal: nobody is watching.
            let _ = self.sender.send(event);
        }
    }
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus::new(1024)
    }
}

/// Inserts the audit row for a change of `plan`, inside the caller's transaction.
pub async fn record(
    connection: &impl ConnectionTrait,
    plan: &plan::Model,
    kind: EventKind,
    from: Option<PlanStatus>,
    actor: Option<Uuid>,
) -> AppResult<plan_event::Model> {
    let event = plan_event::ActiveModel {
        project_id: Set(plan.project_id),
        feature_id: Set(plan.feature_id),
        plan_id: Set(plan.id),
        kind: Set(kind.as_str().to_owned()),
        from_status: Set(from.map(|status| status.as_str().to_owned())),
        to_status: Set(plan.status.clone()),
        actor_id: Set(actor),
        at: Set(plan.updated_at),
        ..Default::default()
    };
    Ok(event.insert(connection).await?)
}
