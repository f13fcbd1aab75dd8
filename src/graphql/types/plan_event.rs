use std::sync::Arc;

use async_graphql::{Context, ID, Object};

use super::{DateTime, Plan, PlanEventKind, PlanStatus, User, at, optional_user};
use crate::error::{AppError, AppResult};
use crate::events::LiveEvent;
use crate::graphql::loaders;
use crate::graphql::loaders::PlanId;
use entity::plan_event;

/// An event read from the log, or a live one that arrives with its plan and
/// actor already loaded (shared by every subscriber, so fan-out costs no
/// queries per subscriber).
pub enum PlanEvent {
    Stored(plan_event::Model),
    Live(Arc<LiveEvent>),
}

impl PlanEvent {
    fn record(&self) -> &plan_event::Model {
        match self {
            PlanEvent::Stored(event) => event,
            PlanEvent::Live(live) => &live.event,
        }
    }
}

/// One recorded change of a plan.
#[Object]
impl PlanEvent {
    /// Unique among events (the same value as `cursor`), so normalized
    /// caches can key events as they key every other object.
    async fn id(&self) -> ID {
        ID(self.record().id.to_string())
    }
    /// Position in the event log; increases with every event. Pass the last one
    /// you received as `planEvents(after:)` to resume without gaps.
    async fn cursor(&self) -> String {
        self.record().id.to_string()
    }
    /// What happened.
    async fn kind(&self) -> PlanEventKind {
        self.record().kind.into()
    }
    /// Status before the change; null when the plan was created.
    async fn from_status(&self) -> Option<PlanStatus> {
        self.record().from_status.map(Into::into)
    }
    /// Status after the change.
    async fn to_status(&self) -> PlanStatus {
        self.record().to_status.into()
    }
    /// Who made the change; null when the server did (a stall, a drift, an
    /// unblock), and then `note` says what caused it.
    async fn actor(&self, ctx: &Context<'_>) -> AppResult<Option<User>> {
        match self {
            PlanEvent::Live(live) => Ok(live.actor.clone().map(User::from)),
            PlanEvent::Stored(event) => optional_user(ctx, event.actor_id).await,
        }
    }
    /// Why: for a change the server made (`actor` null) its cause, such as
    /// `plan "Login form" was completed` for an UNBLOCKED event; for work
    /// sent back from review, the reviewer's reason. Null otherwise.
    async fn note(&self) -> Option<&str> {
        self.record().note.as_deref()
    }
    /// When it happened.
    async fn at(&self) -> DateTime {
        at(self.record().at)
    }
    /// The plan as it is when the event is delivered (so a replayed or
    /// delayed event shows the plan's latest state, not a historical copy).
    async fn plan(&self, ctx: &Context<'_>) -> AppResult<Plan> {
        let event = match self {
            PlanEvent::Live(live) => return Ok(Plan::from(live.plan.clone())),
            PlanEvent::Stored(event) => event,
        };
        let plan = loaders(ctx).db.load_one(PlanId(event.plan_id)).await?;
        plan.map(Plan::from)
            .ok_or_else(|| AppError::internal("event without plan"))
    }
}
