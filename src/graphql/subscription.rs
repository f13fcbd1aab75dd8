//! `planEvents`: replay from the event log, then live, with no gap and no
//! duplicate at the seam (see `events.rs` for why ids make that possible).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{Context, ID, Subscription};
use futures::Stream;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::types::PlanEvent;
use super::{document_budget, loaders, services, viewer};
use crate::error::{AppError, AppResult};
use crate::events::{BusMessage, latest_event_id};
use crate::observability::ActiveSubscription;
use crate::service::subscriptions::{EventFilters, EventScope, parse_cursor};
use crate::service::{Services, Viewer};
use crate::shutdown::Shutdown;

/// Events read from the log per query while replaying.
const REPLAY_PAGE: u64 = 200;
/// Retries of a scope re-check while the database is unreachable: with
/// doubling pauses from 100 ms, about three seconds in all.
const RESCOPE_RETRIES: usize = 5;

pub struct SubscriptionRoot;

/// How one execution of `planEvents` takes part in a subscriber group of the
/// WebSocket layer (`fanout.rs`); absent, it is a subscription of its own.
/// The replay and the live part run in different executions: the replay is
/// per subscriber (its own cursor), the live part is shared by the group.
pub enum PlanEventsRole {
    /// The group's shared live execution.
    Group(GroupFeed),
    /// One member's start: authorize, replay after `after` if given, note
    /// where it stopped, and end.
    Setup(Arc<SetupOutcome>),
}

/// What a group's live execution reads from and reports.
pub struct GroupFeed {
    /// Taken when the group is created, before any member computes where it
    /// starts, so no event committed after that point can be missed.
    live: Mutex<Option<broadcast::Receiver<BusMessage>>>,
    /// The id of the event whose result is being yielded, or
    /// [`ALWAYS_DELIVERED`] for an error that ends the subscription.
    position: Arc<AtomicI64>,
}

/// The `position` of a result that every member receives, whatever its start.
pub const ALWAYS_DELIVERED: i64 = i64::MAX;

impl GroupFeed {
    pub fn new(live: broadcast::Receiver<BusMessage>, position: Arc<AtomicI64>) -> GroupFeed {
        GroupFeed {
            live: Mutex::new(Some(live)),
            position,
        }
    }
}

/// Where a member's setup stopped.
#[derive(Default)]
pub struct SetupOutcome {
    /// The setup ran to its end without an error: the member goes live.
    pub handed_over: AtomicBool,
    /// Every event up to this id was delivered by the setup or is not for
    /// this subscriber.
    pub last_seen: AtomicI64,
}

/// Live updates over WebSocket (`/graphql/ws`, protocols graphql-transport-ws
/// and graphql-ws). Authenticate in `connection_init`:
/// `{"Authorization": "Bearer <API key>"}`.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Plan changes in your projects: creation, spec updates, every status
    /// change. With `after`, first replays every event committed after that
    /// cursor, then continues live. Without it, only new events. A subscriber
    /// that falls too far behind gets a RESUME_REQUIRED error naming the cursor
    /// to resubscribe from. Without filters the subscription follows your
    /// memberships as they change; one filtered to a project you are removed
    /// from ends with an error, and revoking the connection's API key ends
    /// every subscription on it with UNAUTHENTICATED.
    // Each event is a response of its own, so one event's selection is the
    // price; a replay is paged, and the socket's operations are bounded.
    #[graphql(complexity = "1 + child_complexity")]
    async fn plan_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only events of this project.")] project_id: Option<ID>,
        #[graphql(desc = "Only events of plans of this feature.")] feature_id: Option<ID>,
        #[graphql(desc = "Only events of this plan.")] plan_id: Option<ID>,
        #[graphql(desc = "Cursor of the last event you received; replays everything after it.")]
        after: Option<String>,
    ) -> Result<impl Stream<Item = AppResult<PlanEvent>> + use<>, AppError> {
        let services = services(ctx).clone();
        let viewer = viewer(ctx)?.clone();
        let role = ctx.data_opt::<PlanEventsRole>();
        let filters = EventFilters {
            project_id: project_id.map(|id| id.0),
            feature_id: feature_id.map(|id| id.0),
            plan_id: plan_id.map(|id| id.0),
        };
        let after = after.as_deref().map(parse_cursor).transpose()?;
        let shutdown = ctx.data_unchecked::<Shutdown>().clone();
        // Each event is resolved afresh: what the previous one loaded is
        // forgotten and its document budget starts over.
        let loaders = loaders(ctx).clone();
        let budget = document_budget(ctx).clone();
        let fresh = move || {
            loaders.forget_all();
            budget.reset();
        };
        // Subscribe before anything is read: an event committed during the
        // replay is then both replayed and buffered, and the id check drops
        // the copy; an access change after the scope below is seen in the loop.
        let (mut live, position, setup) = match role {
            Some(PlanEventsRole::Group(feed)) => {
                let taken = feed
                    .live
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .take();
                let live = taken.unwrap_or_else(|| services.events.subscribe());
                (Some(live), Some(Arc::clone(&feed.position)), None)
            }
            // A setup ends before going live; its group listens instead.
            Some(PlanEventsRole::Setup(outcome)) => (None, None, Some(Arc::clone(outcome))),
            None => (Some(services.events.subscribe()), None, None),
        };
        let mut scope = services.event_scope(&viewer, &filters).await?;
        // Without `after`, "new" means after the newest event right now. A
        // group takes everything its receiver got: its members drop what is
        // older than their own start.
        let start = match after {
            Some(cursor) => cursor,
            None if position.is_some() => 0,
            None => latest_event_id(&services.db).await?,
        };
        let mark = move |id: i64| {
            if let Some(position) = &position {
                position.store(id, Ordering::Release);
            }
        };
        // A group's members are counted by the WebSocket layer, one each.
        let counted = role.is_none() || setup.is_some();
        Ok(async_stream::stream! {
            let _open = counted.then(ActiveSubscription::open);
            // Every event up to here was delivered or filtered out.
            let mut last_seen = start;
            if after.is_some() {
                loop {
                    let page = match services.replay_events(&scope, last_seen, REPLAY_PAGE).await {
                        Ok(page) => page,
                        Err(error) => {
                            mark(ALWAYS_DELIVERED);
                            yield Err(error);
                            return;
                        }
                    };
                    let complete = (page.len() as u64) < REPLAY_PAGE;
                    for event in page {
                        last_seen = event.id;
                        fresh();
                        yield Ok(PlanEvent::Stored(event));
                    }
                    if complete {
                        break;
                    }
                    // A long replay re-checks access between pages.
                    match rescope(&services, &viewer, &filters).await {
                        Ok(current) => scope = current,
                        Err(error) => {
                            mark(ALWAYS_DELIVERED);
                            yield Err(error);
                            return;
                        }
                    }
                }
            }
            if let Some(outcome) = setup {
                outcome.last_seen.store(last_seen, Ordering::Release);
                outcome.handed_over.store(true, Ordering::Release);
                return;
            }
            let Some(mut live) = live.take() else {
                return;
            };
            loop {
                let received = tokio::select! {
                    received = live.recv() => received,
                    () = shutdown.begun() => return,
                };
                match received {
                    Ok(BusMessage::Event(event)) => {
                        if event.event.id <= last_seen {
                            continue;
                        }
                        last_seen = event.event.id;
                        if scope.matches(&event.event) {
                            fresh();
                            mark(last_seen);
                            yield Ok(PlanEvent::Live(event));
                        }
                    }
                    Ok(BusMessage::AccessChanged(user)) => {
                        if user.is_some_and(|user| user != viewer.id()) {
                            continue;
                        }
                        // Everything after this message was committed after
                        // the change: the new scope applies to all of it.
                        match rescope(&services, &viewer, &filters).await {
                            Ok(current) => scope = current,
                            Err(error) => {
                                mark(ALWAYS_DELIVERED);
                                yield Err(error);
                                return;
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let last_cursor = last_seen.to_string();
                        mark(ALWAYS_DELIVERED);
                        yield Err(AppError::ResumeRequired { last_cursor });
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }
}

/// Re-resolves a live subscription's scope. Re-checks come in bursts right
/// after a database blip (the listener reconnected), when a pooled
/// connection may still be a dead one from before it; a subscription should
/// not end over that, so an unreachable database is retried for a few
/// seconds before the subscriber is told to come back later.
async fn rescope(
    services: &Services,
    viewer: &Viewer,
    filters: &EventFilters,
) -> AppResult<EventScope> {
    let mut pause = Duration::from_millis(100);
    for _ in 0..RESCOPE_RETRIES {
        match services.event_scope(viewer, filters).await {
            Err(AppError::DatabaseUnavailable) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            result => return result,
        }
    }
    services.event_scope(viewer, filters).await
}
