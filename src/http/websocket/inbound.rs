//! What the client sends, sorted before async-graphql sees it: every
//! message checked against the protocol (async-graphql would end the
//! connection without a close code the client can act on), the open
//! operation ids kept, and groupable subscriptions taken out for the relay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::http::WebSocketProtocols;
use serde_json::{Value, json};
use uuid::Uuid;

use super::fanout::{self, Fanout};

/// Who runs an open operation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Runner {
    /// async-graphql's protocol handler.
    Handler,
    /// The relay, as a group member of this generation.
    Member(u64),
}

/// The operation ids open on one connection: the protocol forbids a second
/// `subscribe` with an id in use. Written by the filter that sees the
/// client's messages in order (an operation starts or is completed by the
/// client) and by the relay that sees operations end on their own.
#[derive(Clone, Default)]
pub(super) struct OpenIds(Arc<Mutex<HashMap<String, Runner>>>);

impl OpenIds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Runner>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The operation `id` of `runner` has ended by itself; a later one
    /// under the same id stays open.
    pub(super) fn ended(&self, id: &str, runner: Runner) {
        let mut open = self.lock();
        if open.get(id) == Some(&runner) {
            open.remove(id);
        }
    }
}

/// What the connection takes from the client's messages itself; async-graphql
/// gets the rest.
pub(super) enum FromClient {
    /// A groupable subscription, and its generation.
    Subscribe(Box<fanout::GroupedSubscribe>, u64),
    /// The client completed a grouped operation.
    Stop(String),
    /// A legacy `start` reused a grouped operation's id for one that is not
    /// groupable: the old one ends without a word, as the protocol replaces it.
    Replace(String),
    /// A message for the client (legacy protocol errors, which keep the
    /// connection open).
    Reply(String),
    /// The client broke the protocol: the connection closes with this code
    /// and reason.
    Close(u16, String),
    /// A message over `MAX_CLIENT_MESSAGE`: the socket is closed with 1009.
    TooLong,
}

/// Longest close reason a close frame may carry (125 bytes of payload less
/// the code).
const MAX_CLOSE_REASON: usize = 123;

/// Sorts the client's messages before async-graphql sees them: checks
/// each against the protocol (async-graphql would end the connection
/// without a close code the client can act on), keeps the open ids, and
/// takes groupable subscriptions out for the relay.
pub(super) struct Inbound {
    pub(super) protocol: WebSocketProtocols,
    pub(super) key_id: Uuid,
    pub(super) fanout: Fanout,
    pub(super) open: OpenIds,
    pub(super) to_relay: futures::channel::mpsc::UnboundedSender<FromClient>,
    pub(super) generations: u64,
    /// The connection is closing for a broken rule: nothing more is read.
    pub(super) ended: bool,
}

impl Inbound {
    /// The message for async-graphql, if it gets one.
    pub(super) fn sort(&mut self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        if self.ended {
            return None;
        }
        let mut message = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(message)) => message,
            Ok(_) => return self.invalid(None, "Invalid message received: not a JSON object"),
            Err(error) => {
                return self.invalid(None, &format!("Invalid message received: {error}"));
            }
        };
        let Some(Value::String(kind)) = message.remove("type") else {
            return self.invalid(None, "Message is missing the 'type' property");
        };
        let legacy = self.protocol == WebSocketProtocols::SubscriptionsTransportWS;
        let (subscribe, complete) = if legacy {
            ("start", "stop")
        } else {
            ("subscribe", "complete")
        };
        match kind.as_str() {
            "connection_init" => Some(bytes),
            "ping" | "pong" if !legacy => Some(bytes),
            "connection_terminate" if legacy => Some(bytes),
            kind if kind == subscribe => {
                let id = match operation_id(&message, kind) {
                    Ok(id) => id,
                    Err(reason) => return self.invalid(None, &reason),
                };
                let request = match operation_request(message.remove("payload"), kind) {
                    Ok(request) => request,
                    Err(reason) => return self.invalid(Some(&id), &reason),
                };
                self.subscribe(id, request, bytes)
            }
            kind if kind == complete => match operation_id(&message, kind) {
                Ok(id) => self.complete(&id).then_some(bytes),
                Err(reason) => self.invalid(None, &reason),
            },
            other => {
                let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
                let reason = format!("Invalid message type {:?} received", clip(other, 40));
                self.invalid(id.as_deref(), &reason)
            }
        }
    }

    /// A valid subscribe (start) of operation `id`.
    fn subscribe(
        &mut self,
        id: String,
        request: async_graphql::Request,
        bytes: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let mut open = self.open.lock();
        let previous = open.get(&id).copied();
        if previous.is_some() && self.protocol == WebSocketProtocols::GraphQLWS {
            drop(open);
            let reason = format!("Subscriber for {} already exists", clip(&id, 90));
            return self.end(4409, reason);
        }
        // The legacy protocol replaces an operation whose id is used again
        // (subscriptions-transport-ws stops the old one first). A runner
        // replaces its own operation; one the handler runs stays with it.
        let grouped = match previous {
            Some(Runner::Handler) => None,
            _ => self.fanout.group(self.key_id, &id, request),
        };
        match grouped {
            Some(grouped) => {
                self.generations += 1;
                open.insert(id, Runner::Member(self.generations));
                let _ = self
                    .to_relay
                    .unbounded_send(FromClient::Subscribe(Box::new(grouped), self.generations));
                None
            }
            None => {
                if matches!(previous, Some(Runner::Member(_))) {
                    let _ = self
                        .to_relay
                        .unbounded_send(FromClient::Replace(id.clone()));
                }
                open.insert(id, Runner::Handler);
                Some(bytes)
            }
        }
    }

    /// The client completes operation `id`; whether async-graphql is to hear of it.
    fn complete(&mut self, id: &str) -> bool {
        match self.open.lock().remove(id) {
            Some(Runner::Handler) => true,
            Some(Runner::Member(_)) => {
                let _ = self
                    .to_relay
                    .unbounded_send(FromClient::Stop(id.to_owned()));
                false
            }
            // Already over: the protocol asks for nothing.
            None => false,
        }
    }

    /// A message that breaks the protocol. graphql-transport-ws closes
    /// with 4400; the legacy protocol answers with an error and reads on:
    /// `error` when the message names its operation, else `connection_error`.
    fn invalid(&mut self, id: Option<&str>, reason: &str) -> Option<Vec<u8>> {
        match self.protocol {
            WebSocketProtocols::GraphQLWS => self.end(4400, clip(reason, MAX_CLOSE_REASON).into()),
            WebSocketProtocols::SubscriptionsTransportWS => {
                let reply = match id {
                    Some(id) => {
                        json!({ "type": "error", "id": id, "payload": { "message": reason } })
                    }
                    None => json!({ "type": "connection_error", "payload": { "message": reason } }),
                };
                let _ = self
                    .to_relay
                    .unbounded_send(FromClient::Reply(reply.to_string()));
                None
            }
        }
    }

    fn end(&mut self, code: u16, reason: String) -> Option<Vec<u8>> {
        self.ended = true;
        let _ = self
            .to_relay
            .unbounded_send(FromClient::Close(code, reason));
        None
    }
}

/// The non-empty string `id` that a `kind` message must carry.
fn operation_id(message: &serde_json::Map<String, Value>, kind: &str) -> Result<String, String> {
    match message.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(format!(
            "{kind:?} message requires a non-empty 'id' property"
        )),
    }
}

/// The request a subscribe (start) message carries in its payload.
fn operation_request(payload: Option<Value>, kind: &str) -> Result<async_graphql::Request, String> {
    let Some(payload @ Value::Object(_)) = payload else {
        return Err(format!(
            "{kind:?} message expects the 'payload' property to be an object"
        ));
    };
    if !payload.get("query").is_some_and(Value::is_string) {
        return Err(format!(
            "{kind:?} message expects the 'query' property in the payload to be a string"
        ));
    }
    serde_json::from_value(payload)
        .map_err(|error| format!("{kind:?} message has an invalid payload: {error}"))
}

/// `text` cut to at most `limit` bytes, on a character boundary.
fn clip(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The id of a `complete` message (the same in both protocols), if `text`
/// is one.
pub(super) fn completed_id(text: &str) -> Option<String> {
    if !text.starts_with(r#"{"type":"complete""#) {
        return None;
    }
    let message: Value = serde_json::from_str(text).ok()?;
    message.get("id")?.as_str().map(str::to_owned)
}
