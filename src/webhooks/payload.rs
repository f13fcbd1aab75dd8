//! The JSON body of a delivery. Names and values are spelled as GraphQL
//! spells them (`fromStatus`, `IN_PROGRESS`), so a receiver reads the same
//! vocabulary as a subscriber of `planEvents`.

use serde::Serialize;
use uuid::Uuid;

use crate::events::LiveEvent;
use crate::service::rfc3339;
use crate::workflow::EventKind;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    /// The event's id in the log: increases with every event, so a receiver
    /// can drop a repeated delivery (at least once) by remembering the last.
    cursor: String,
    kind: String,
    from_status: Option<String>,
    to_status: String,
    at: String,
    /// Null when the server made the change (a drift, an unblock, a stall).
    actor: Option<Actor<'a>>,
    /// Why: the cause of a change no person made, or a reviewer's reason
    /// for sending work back; null otherwise.
    note: Option<&'a str>,
    plan: Plan<'a>,
}

#[derive(Serialize)]
struct Actor<'a> {
    id: Uuid,
    email: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Plan<'a> {
    id: Uuid,
    title: &'a str,
    /// The plan's status when the event is sent (`toStatus` is the event's).
    status: String,
    feature_id: Uuid,
    project_id: Uuid,
}

/// `CLAIMED`, `STATUS_CHANGED`: the GraphQL enum's spelling.
pub fn kind(kind: EventKind) -> String {
    kind.as_str().to_ascii_uppercase()
}

pub fn body(live: &LiveEvent) -> Vec<u8> {
    let event = &live.event;
    let body = Body {
        cursor: event.id.to_string(),
        kind: kind(event.kind),
        from_status: event.from_status.map(|status| status.to_string()),
        to_status: event.to_status.to_string(),
        at: rfc3339(event.at),
        actor: live.actor.as_ref().map(|actor| Actor {
            id: actor.id,
            email: &actor.email,
        }),
        note: event.note.as_deref(),
        plan: Plan {
            id: live.plan.id,
            title: &live.plan.title,
            status: live.plan.status.to_string(),
            feature_id: live.plan.feature_id,
            project_id: live.plan.project_id,
        },
    };
    // Strings, numbers and ids only: serializing cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}
