//! GraphQL subscriptions over WebSocket at `/graphql/ws`.
//!
//! async-graphql speaks both protocols (graphql-transport-ws and the legacy
//! graphql-ws); this module adds what it leaves to the server: authentication
//! in `connection_init` with the close codes the protocol prescribes (4401
//! subscribe before init, 4403 bad key, 4408 no init in time), the checks
//! of every client message it leaves undone (4400 for a broken message, 4409
//! for an id in use; the legacy protocol's error messages), keep-alive
//! pings, a clean close on shutdown, and bounds: so many connections per API
//! key, and a connection whose key is revoked is closed at once (4403), on
//! every instance, since revocations travel the event bus.
//!
//! `planEvents` subscriptions that many sockets share are taken out of the
//! message stream before async-graphql sees them and served by [`fanout`]:
//! resolved once per group, the same bytes sent to each member.

mod fanout;
mod inbound;

pub use fanout::{Fanout, FanoutSettings};

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures::channel::mpsc::UnboundedReceiver;
use futures::stream::SplitSink;
use futures::{SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::StreamMap;
use tokio_util::task::task_tracker::TaskTrackerToken;
use uuid::Uuid;

use self::inbound::{FromClient, Inbound, OpenIds, Runner, completed_id};
use super::HttpState;
use crate::auth::bearer_token;
use crate::error::AppError;
use crate::graphql::guard::SocketSession;
use crate::service::{Services, Viewer};
use crate::shutdown::Shutdown;

/// How long a client has to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a client may send (a subscribe with its query).
const MAX_CLIENT_MESSAGE: usize = 256 * 1024;
/// Bytes read from a socket at a time, and the buffer each connection keeps.
const READ_BUFFER: usize = 1024;
/// How long a closing connection waits for its operations' last messages
/// (`complete` at shutdown, the errors of a revocation).
const CLOSE_FLUSH: Duration = Duration::from_millis(300);

pub async fn upgrade(
    State(state): State<HttpState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Clients name their protocol; one that names none gets the current one.
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|name| WebSocketProtocols::from_str(name.trim()).ok())
        })
        .unwrap_or(WebSocketProtocols::GraphQLWS);
    // Small buffers: an idle subscriber should cost kilobytes, not the
    // 128 KiB defaults; frames go out at once. The read buffer is kept for
    // the connection's life, so it is sized for the usual client message
    // (`connection_init`, a subscribe, a ping); a longer one is read into a
    // buffer grown to its length.
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_MESSAGE)
        // A frame over the limit is refused by its header, before it is
        // read into memory (the default would read up to 16 MiB first).
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            // Connections live on the fan-out thread (see `fanout.rs`), so that
            // delivering an event to thousands of them never queues ahead of
            // the requests on the main runtime.
            let runtime = state.fanout.runtime().clone();
            runtime.spawn(serve(state, socket, protocol));
            std::future::ready(())
        })
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// The bytes of a text or binary frame; `None` ends the conversation.
fn payload(message: Message) -> Option<Option<Vec<u8>>> {
    match message {
        Message::Text(text) => Some(Some(text.as_bytes().to_vec())),
        Message::Binary(bytes) => Some(Some(bytes.to_vec())),
        Message::Ping(_) | Message::Pong(_) => Some(None),
        Message::Close(_) => None,
    }
}

/// Authenticates the `connection_init` payload: `{"Authorization": "Bearer …"}`
/// (any capitalisation of the key).
async fn authenticate(state: &HttpState, init: &Value) -> Result<Viewer, AppError> {
    let header = init
        .get("payload")
        .and_then(Value::as_object)
        .and_then(|payload| {
            payload
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
                .and_then(|(_, value)| value.as_str())
        })
        .ok_or_else(|| {
            AppError::Unauthenticated(
                "connection_init needs a payload {\"Authorization\": \"Bearer <API key>\"}".into(),
            )
        })?;
    let token = bearer_token(header).unwrap_or(header);
    state.services.authenticate(token).await
}

/// Open connections per API key on this instance, so that one key (a leaked
/// one, or a runaway script) cannot hold every socket the server can keep.
#[derive(Clone)]
pub struct ConnectionsPerKey {
    limit: usize,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl ConnectionsPerKey {
    pub fn new(limit: usize) -> ConnectionsPerKey {
        ConnectionsPerKey {
            limit,
            open: Arc::default(),
        }
    }

    /// Counts a connection of `key` until the returned slot is dropped, or
    /// `None` when the key has its limit open already.
    fn open(&self, key: Uuid) -> Option<ConnectionSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            key,
            registry: self.clone(),
        })
    }
}

struct ConnectionSlot {
    key: Uuid,
    registry: ConnectionsPerKey,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .registry
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The grouped subscriptions of one connection, by operation id.
type Members = StreamMap<MemberKey, futures::stream::BoxStream<'static, String>>;

/// A grouped subscription's id, and which subscription under that id it is
/// (ids may be used again once an operation has ended).
#[derive(Clone)]
struct MemberKey {
    id: String,
    generation: u64,
}

impl PartialEq for MemberKey {
    fn eq(&self, other: &MemberKey) -> bool {
        self.id == other.id
    }
}

impl Eq for MemberKey {}

impl std::hash::Hash for MemberKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl std::borrow::Borrow<str> for MemberKey {
    fn borrow(&self) -> &str {
        &self.id
    }
}

/// What the connection loop reacts to next.
enum Step {
    Outgoing(Option<WsMessage>),
    Member(MemberKey, String),
    FromClient(Option<FromClient>),
    KeepAlive,
    AccessChanged(Result<Option<Uuid>, RecvError>),
    ShuttingDown,
}

async fn serve(state: HttpState, socket: WebSocket, protocol: WebSocketProtocols) {
    let connection = state.shutdown.track_connection();
    let (mut sink, mut source) = socket.split();

    // The first message must be connection_init with a valid key.
    let first = tokio::time::timeout(INIT_TIMEOUT, async {
        while let Some(Ok(message)) = source.next().await {
            match payload(message) {
                Some(Some(bytes)) => return Some(bytes),
                Some(None) => continue,
                None => return None,
            }
        }
        None
    })
    .await;
    let init_bytes = match first {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return,
        Err(_) => {
            let _ = sink
                .send(close(4408, "Connection initialisation timeout"))
                .await;
            return;
        }
    };
    let init: Value = serde_json::from_slice(&init_bytes).unwrap_or(Value::Null);
    if init.get("type").and_then(Value::as_str) != Some("connection_init") {
        let _ = sink.send(close(4401, "Unauthorized")).await;
        return;
    }
    // Boxed, as the other rare steps below: a task is as large as its
    // largest state, and every idle connection would pay for a database
    // query's future otherwise.
    let viewer = match Box::pin(authenticate(&state, &init)).await {
        Ok(viewer) => viewer,
        Err(error) => {
            error.log_if_internal("websocket connection_init");
            let (code, reason) = match error {
                AppError::Unauthenticated(_) => (4403, "Forbidden"),
                _ => (1011, "Server unavailable; try again shortly"),
            };
            if protocol == WebSocketProtocols::SubscriptionsTransportWS {
                let refusal = json!({ "type": "connection_error", "payload": { "message": error.message() } });
                let _ = sink.send(Message::Text(refusal.to_string().into())).await;
            }
            let _ = sink.send(close(code, reason)).await;
            return;
        }
    };

    let Some(slot) = state.connections_per_key.open(viewer.key_id) else {
        let reason = format!(
            "Too many connections for this API key; the limit is {}",
            state.connections_per_key.limit
        );
        let _ = sink.send(close(1008, &reason)).await;
        return;
    };
    // Before anything else can happen on this connection: a revocation
    // committed from here on is seen by the loop below.
    let access_changes = state.services.events.access_changes();
    let key_id = viewer.key_id;
    let mut data = Data::default();
    data.insert(viewer.clone());
    let session = SocketSession::new(viewer);
    // Groupable subscriptions (and the `complete`s that may end them),
    // broken rules and a message over the limit are handed to the relay;
    // the rest goes on to async-graphql.
    let (from_client, taken) = futures::channel::mpsc::unbounded();
    let refusals = from_client.clone();
    let open = OpenIds::default();
    let mut inbound = Inbound {
        protocol,
        key_id,
        fanout: state.fanout.clone(),
        open: open.clone(),
        to_relay: from_client,
        generations: 0,
        ended: false,
    };
    let incoming = futures::stream::iter([init_bytes])
        .chain(
            source
                .take_while(move |message| {
                    let open = match message {
                        Ok(message) => !matches!(message, Message::Close(_)),
                        Err(error) => {
                            if too_long(error) {
                                let _ = refusals.unbounded_send(FromClient::TooLong);
                            }
                            false
                        }
                    };
                    std::future::ready(open)
                })
                .filter_map(|message| std::future::ready(message.ok().and_then(payload).flatten())),
        )
        .filter_map(move |bytes| std::future::ready(inbound.sort(bytes)));
    let outgoing = async_graphql::http::WebSocket::new(
        state
            .schema
            .for_socket(session.clone(), state.requests.clone()),
        incoming,
        protocol,
    )
    .connection_data(data)
    .on_connection_init(|_| async { Ok(Data::default()) });
    let relay = Relay {
        sink,
        outgoing,
        taken,
        open,
        access_changes,
        session,
        fanout: state.fanout.clone(),
        services: state.services.clone(),
        protocol,
        keepalive: state.ws_keepalive,
        shutdown: state.shutdown.clone(),
        _slot: slot,
        _connection: connection,
    };
    // A task of its own, so that what only the handshake needed (this
    // function's state, the `HttpState`, the init message) is not kept for
    // the life of the connection.
    tokio::spawn(relay.run());
}

/// What an authenticated connection keeps for its life.
struct Relay<Outgoing> {
    sink: SplitSink<WebSocket, Message>,
    /// async-graphql's protocol handler: every message but the grouped
    /// subscriptions.
    outgoing: Outgoing,
    /// What the relay takes from the client's messages itself.
    taken: UnboundedReceiver<FromClient>,
    open: OpenIds,
    access_changes: broadcast::Receiver<Option<Uuid>>,
    session: SocketSession,
    fanout: Fanout,
    services: Services,
    protocol: WebSocketProtocols,
    keepalive: Duration,
    shutdown: Shutdown,
    _slot: ConnectionSlot,
    _connection: TaskTrackerToken,
}

impl<Outgoing: Stream<Item = WsMessage> + Unpin> Relay<Outgoing> {
    /// Relays messages between the socket and the connection's operations
    /// until either side ends, the key is revoked or the server shuts down.
    ///
    /// Not an `async fn`: one would keep `self` twice (as its argument and
    /// as the local it moves the argument into), and this future is what an
    /// idle connection costs.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would store its argument twice; see above"
    )]
    fn run(mut self) -> impl Future<Output = ()> {
        async move {
            // The relay as a whole, so that the block keeps its guards
            // (`_slot`, `_connection`) too: a block would otherwise take
            // only the fields it reads and drop the others at once.
            let this = &mut self;
            let mut members = Members::new();
            let mut taking = true;
            let mut watching_access = true;
            let mut keepalive = tokio::time::interval(this.keepalive);
            keepalive.tick().await;
            let shutting_down = this.shutdown.begun();
            tokio::pin!(shutting_down);
            loop {
                // In this order, not at random: most wake-ups of a busy
                // connection are a grouped result to forward, which the first
                // poll then finds, instead of one after a poll of the protocol
                // handler and its socket. Every branch is still polled (and
                // registers its wake-up) whenever no earlier one is ready, and
                // members cannot starve the rest for long (each group's ring is
                // bounded).
                let step = tokio::select! {
                    biased;
                    Some((key, text)) = members.next(), if !members.is_empty() => Step::Member(key, text),
                    change = this.access_changes.recv(), if watching_access => Step::AccessChanged(change),
                    () = &mut shutting_down => Step::ShuttingDown,
                    taken = this.taken.next(), if taking => Step::FromClient(taken),
                    message = this.outgoing.next() => Step::Outgoing(message),
                    _ = keepalive.tick() => Step::KeepAlive,
                };
                let message = match step {
                    Step::Outgoing(Some(message)) => {
                        if let WsMessage::Text(text) = &message
                            && let Some(id) = completed_id(text)
                        {
                            this.open.ended(&id, Runner::Handler);
                        }
                        message
                    }
                    Step::Outgoing(None) => {
                        let _ = this.sink.send(end_of_input(&mut this.taken)).await;
                        return;
                    }
                    Step::Member(key, text) => {
                        // A member's last message is its `complete`.
                        if completed_id(&text).is_some() {
                            this.open.ended(&key.id, Runner::Member(key.generation));
                        }
                        WsMessage::Text(text)
                    }
                    Step::FromClient(None) => {
                        taking = false;
                        continue;
                    }
                    Step::FromClient(Some(FromClient::Subscribe(subscribe, generation))) => {
                        let id = subscribe.id().to_owned();
                        let member =
                            this.fanout
                                .member(this.session.clone(), this.protocol, *subscribe);
                        members.insert(MemberKey { id, generation }, member);
                        continue;
                    }
                    Step::FromClient(Some(FromClient::Stop(id))) => {
                        if members.remove(id.as_str()).is_none() {
                            continue;
                        }
                        WsMessage::Text(fanout::complete_message(&id))
                    }
                    Step::FromClient(Some(FromClient::Replace(id))) => {
                        members.remove(id.as_str());
                        continue;
                    }
                    Step::FromClient(Some(FromClient::Reply(text))) => WsMessage::Text(text),
                    Step::FromClient(Some(FromClient::Close(code, reason))) => {
                        let _ = this.sink.send(close(code, &reason)).await;
                        return;
                    }
                    Step::FromClient(Some(FromClient::TooLong)) => {
                        let _ = this.sink.send(message_too_long()).await;
                        return;
                    }
                    Step::KeepAlive => WsMessage::Text(keepalive_message(this.protocol)),
                    Step::AccessChanged(Ok(Some(user))) if user != this.session.viewer.id() => {
                        continue;
                    }
                    Step::AccessChanged(Err(RecvError::Closed)) => {
                        // The server is going away; nothing more will be announced.
                        watching_access = false;
                        continue;
                    }
                    Step::AccessChanged(_) => {
                        if Box::pin(key_revoked(&this.services, &this.session.viewer)).await {
                            // The subscriptions end with UNAUTHENTICATED by
                            // themselves; let those errors out before closing.
                            let reason = "Forbidden: the API key was revoked";
                            Box::pin(flush_and_close(
                                &mut this.sink,
                                &mut this.outgoing,
                                &mut members,
                                close(4403, reason),
                            ))
                            .await;
                            return;
                        }
                        continue;
                    }
                    Step::ShuttingDown => {
                        // Subscriptions end on shutdown; let their `complete` messages out.
                        let closing = close(1001, "Server shutting down");
                        Box::pin(flush_and_close(
                            &mut this.sink,
                            &mut this.outgoing,
                            &mut members,
                            closing,
                        ))
                        .await;
                        return;
                    }
                };
                // After a close frame (async-graphql's own) nothing more may be sent.
                let closing = matches!(message, WsMessage::Close(..));
                if send(&mut this.sink, message).await.is_err() || closing {
                    return;
                }
            }
        }
    }
}

/// The protocol's keep-alive message.
fn keepalive_message(protocol: WebSocketProtocols) -> String {
    let kind = match protocol {
        WebSocketProtocols::GraphQLWS => "ping",
        WebSocketProtocols::SubscriptionsTransportWS => "ka",
    };
    json!({ "type": kind }).to_string()
}

/// How the connection closes once the client's messages have ended: with
/// 1009 when the last one was over the limit, or the code of a broken rule
/// (the notice is taken just before the end), else normally.
fn end_of_input(taken: &mut UnboundedReceiver<FromClient>) -> Message {
    while let Ok(taken) = taken.try_recv() {
        match taken {
            FromClient::TooLong => return message_too_long(),
            FromClient::Close(code, reason) => return close(code, &reason),
            _ => {}
        }
    }
    close(1000, "Normal closure")
}

fn message_too_long() -> Message {
    let reason = format!(
        "Message too big: the limit is {} KiB",
        MAX_CLIENT_MESSAGE / 1024
    );
    close(1009, &reason)
}

/// Whether a read failed because the client's message is over the limit.
fn too_long(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|error| matches!(error, tungstenite::Error::Capacity(_)))
}

/// Sends what the operations still have to say (until they fall quiet for a
/// moment), then the close frame.
async fn flush_and_close(
    sink: &mut SplitSink<WebSocket, Message>,
    outgoing: &mut (impl futures::Stream<Item = WsMessage> + Unpin),
    members: &mut Members,
    closing: Message,
) {
    let mut next = async || {
        tokio::select! {
            Some(message) = outgoing.next() => Some(message),
            Some((_, text)) = members.next(), if !members.is_empty() => Some(WsMessage::Text(text)),
            else => None,
        }
    };
    while let Ok(Some(message)) = tokio::time::timeout(CLOSE_FLUSH, next()).await {
        if send(sink, message).await.is_err() {
            return;
        }
    }
    let _ = sink.send(closing).await;
}

/// Whether the connection's key is known to be revoked now. A database
/// error keeps the connection: every operation re-checks the key anyway.
async fn key_revoked(services: &Services, viewer: &Viewer) -> bool {
    match services.require_active_key(viewer).await {
        Err(AppError::Unauthenticated(_)) => true,
        Err(error) => {
            tracing::warn!(?error, "cannot re-check a WebSocket's API key");
            false
        }
        Ok(()) => false,
    }
}

async fn send(
    sink: &mut SplitSink<WebSocket, Message>,
    message: WsMessage,
) -> Result<(), axum::Error> {
    let frame = match message {
        WsMessage::Text(text) => Message::Text(text.into()),
        WsMessage::Close(code, reason) => close(code, &reason),
    };
    sink.send(frame).await
}
