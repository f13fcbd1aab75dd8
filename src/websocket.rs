//! GraphQL subscriptions over WebSocket at `/graphql/ws`.
//!
//! async-graphql speaks both protocols (graphql-transport-ws and the legacy
//! graphql-ws); this module adds what it leaves to the server: authentication
//! in `connection_init` with the close codes the protocol prescribes (4401
//! subscribe before init, 4403 bad key, 4408 no init in time), keep-alive
//! pings, and a clean close on shutdown.

use std::str::FromStr;
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::auth::bearer_token;
use crate::error::AppError;
use crate::graphql::loaders::Loaders;
use crate::http::HttpState;
use crate::service::Viewer;

/// How long a client has to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a client may send (a subscribe with its query).
const MAX_CLIENT_MESSAGE: usize = 256 * 1024;
/// How long pending `complete` messages get to flush at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(300);

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
    // 128 KiB defaults; client messages are tiny and frames go out at once.
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(state, socket, protocol))
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

async fn serve(state: HttpState, socket: WebSocket, protocol: WebSocketProtocols) {
    let _connection = state.shutdown.track_connection();
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
    let viewer = match authenticate(&state, &init).await {
        Ok(viewer) => viewer,
        Err(error) => {
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

    let mut data = Data::default();
    data.insert(viewer);
    data.insert(Loaders::new(&state.services));
    let incoming = futures::stream::iter([init_bytes]).chain(
        source
            .take_while(|message| {
                std::future::ready(
                    matches!(message, Ok(message) if !matches!(message, Message::Close(_))),
                )
            })
            .filter_map(|message| std::future::ready(message.ok().and_then(payload).flatten())),
    );
    let mut outgoing =
        async_graphql::http::WebSocket::new(state.schema.clone(), incoming, protocol)
            .connection_data(data)
            .on_connection_init(|_| async { Ok(Data::default()) });

    let keepalive_message = match protocol {
        WebSocketProtocols::GraphQLWS => json!({ "type": "ping" }),
        WebSocketProtocols::SubscriptionsTransportWS => json!({ "type": "ka" }),
    }
    .to_string();
    let mut keepalive = tokio::time::interval(state.ws_keepalive);
    keepalive.tick().await;
    let shutdown = state.shutdown.clone();
    let shutting_down = shutdown.begun();
    tokio::pin!(shutting_down);
    loop {
        let message = tokio::select! {
            message = outgoing.next() => message,
            _ = keepalive.tick() => Some(WsMessage::Text(keepalive_message.clone())),
            () = &mut shutting_down => {
                // Subscriptions end on shutdown; let their `complete` messages out.
                while let Ok(Some(message)) = tokio::time::timeout(SHUTDOWN_FLUSH, outgoing.next()).await {
                    if send(&mut sink, message).await.is_err() {
                        return;
                    }
                }
                let _ = sink.send(close(1001, "Server shutting down")).await;
                return;
            }
        };
        let Some(message) = message else {
            let _ = sink.send(close(1000, "Normal closure")).await;
            return;
        };
        if send(&mut sink, message).await.is_err() {
            return;
        }
    }
}

async fn send(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: WsMessage,
) -> Result<(), axum::Error> {
    let frame = match message {
        WsMessage::Text(text) => Message::Text(text.into()),
        WsMessage::Close(code, reason) => close(code, &reason),
    };
    sink.send(frame).await
}
