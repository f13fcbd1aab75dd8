//! A small GraphQL-over-WebSocket client speaking graphql-transport-ws (and the
//! legacy graphql-ws), enough to drive the server as a live board would.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

pub const PLAN_EVENTS: &str = "subscription($projectId: ID, $featureId: ID, $planId: ID, $after: String) {
    planEvents(projectId: $projectId, featureId: $featureId, planId: $planId, after: $after) {
      cursor kind fromStatus toStatus at actor { email } note plan { id title status claimedBy { email } } } }";

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Subscriber {
    socket: Socket,
    protocol: &'static str,
    next_id: u64,
}

/// What the server did instead of accepting a connection.
#[derive(Debug)]
pub struct Refused {
    pub close_code: Option<u16>,
    pub messages: Vec<Value>,
}

/// One message for a subscription: a result, or the end of it.
#[derive(Debug)]
pub enum Delivery {
    Data(Value),
    Errors(Vec<Value>),
    Complete,
}

impl Subscriber {
    /// Opens a socket; `init_payload` None sends no `connection_init` at all.
    pub async fn open(base_url: &str, protocol: &'static str) -> Socket {
        let url = format!("{}/graphql/ws", base_url.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|value| value.to_str().unwrap_or_default()),
            Some(protocol),
            "the server agrees on the protocol"
        );
        socket
    }

    pub async fn connect(base_url: &str, key: &str) -> Subscriber {
        Subscriber::connect_with(
            base_url,
            TRANSPORT_WS,
            json!({ "Authorization": format!("Bearer {key}") }),
        )
        .await
        .expect("connection accepted")
    }

    pub async fn connect_with(
        base_url: &str,
        protocol: &'static str,
        payload: Value,
    ) -> Result<Subscriber, Refused> {
        let mut socket = Subscriber::open(base_url, protocol).await;
        socket
            .send(Message::text(
                json!({ "type": "connection_init", "payload": payload }).to_string(),
            ))
            .await
            .expect("send init");
        let mut messages = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("init answer in time")
            {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).expect("json");
                    match message["type"].as_str() {
                        Some("connection_ack") => {
                            return Ok(Subscriber {
                                socket,
                                protocol,
                                next_id: 0,
                            });
                        }
                        Some("ka") | Some("ping") => continue,
                        _ => messages.push(message),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Refused {
                        close_code: frame.map(|frame| u16::from(frame.code)),
                        messages,
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Err(Refused {
                        close_code: None,
                        messages,
                    });
                }
            }
        }
    }

    /// Starts a subscription and returns its id.
    pub async fn subscribe(&mut self, query: &str, variables: Value) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let kind = if self.protocol == TRANSPORT_WS {
            "subscribe"
        } else {
            "start"
        };
        let message = json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } });
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send subscribe");
        id
    }

    /// Starts operation `id` (which the test chooses, e.g. to reuse one).
    pub async fn subscribe_as(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == TRANSPORT_WS {
            "subscribe"
        } else {
            "start"
        };
        let message = json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } });
        self.send_text(&message.to_string()).await;
    }

    /// Sends one text frame as it is, valid or not.
    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text.to_owned()))
            .await
            .expect("send a frame");
    }

    /// The next message the server sends (pings and keep-alives aside), as
    /// JSON; `None` once the socket closes or nothing comes within `limit`.
    pub async fn next_message(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??;
            let text = match frame {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            };
            let message: Value = serde_json::from_str(&text).expect("json");
            match message["type"].as_str().unwrap_or_default() {
                "ping" => {
                    let pong = json!({ "type": "pong" }).to_string();
                    self.socket.send(Message::text(pong)).await.expect("pong");
                }
                "ka" | "pong" => {}
                _ => return Some(message),
            }
        }
    }

    /// Reads until the server closes the socket; returns the close frame's
    /// code and reason, `None` when the socket ends without one (1006).
    pub async fn close_frame(&mut self, limit: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??
            {
                Ok(Message::Close(frame)) => {
                    return frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Ends operation `id` from the client's side.
    pub async fn complete(&mut self, id: &str) {
        let kind = if self.protocol == TRANSPORT_WS {
            "complete"
        } else {
            "stop"
        };
        let message = json!({ "id": id, "type": kind });
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send complete");
    }

    /// The next message for any subscription, answering pings on the way.
    pub async fn next_delivery(&mut self, limit: Duration) -> Option<(String, Delivery)> {
        let message = self.next_message(limit).await?;
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        let delivery = match message["type"].as_str().unwrap_or_default() {
            "next" | "data" => {
                let payload = &message["payload"];
                match payload["errors"]
                    .as_array()
                    .filter(|errors| !errors.is_empty())
                {
                    Some(errors) => Delivery::Errors(errors.clone()),
                    None => Delivery::Data(payload["data"].clone()),
                }
            }
            "error" => Delivery::Errors(
                message["payload"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![message["payload"].clone()]),
            ),
            "complete" => Delivery::Complete,
            other => panic!("unexpected message type {other}: {message}"),
        };
        Some((id, delivery))
    }

    /// The next `planEvents` event, or panics if none arrives in time.
    pub async fn next_event(&mut self) -> Value {
        match self.next_delivery(Duration::from_secs(15)).await {
            Some((_, Delivery::Data(data))) => data["planEvents"].clone(),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives for `quiet` (pings aside).
    pub async fn expect_nothing(&mut self, quiet: Duration) {
        if let Some(delivery) = self.next_delivery(quiet).await {
            panic!("expected nothing, got {delivery:?}");
        }
    }

    /// Reads until the server closes the socket; returns the close code.
    pub async fn close_code(&mut self, limit: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??
            {
                Ok(Message::Close(frame)) => return frame.map(|frame| u16::from(frame.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    pub async fn disconnect(mut self) {
        let _ = self
            .socket
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// The close code a raw socket receives, after sending `first` (if any).
pub async fn close_code_after(base_url: &str, first: Option<Value>) -> Option<u16> {
    let mut socket = Subscriber::open(base_url, TRANSPORT_WS).await;
    if let Some(message) = first {
        socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .ok()??
        {
            Ok(Message::Close(frame)) => return frame.map(|frame| u16::from(frame.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}
