//! A webhook receiver on 127.0.0.1 inside the test process: a real HTTP
//! server that records every request it gets and answers as the test
//! scripts it (a status per request, or holding a request until released),
//! so tests can check the signatures, order and completeness of what the
//! server under test sends. Scripted never to answer, it is a dead receiver
//! that counts the requests it holds open.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Notify;

use super::eventually;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// As sent: a path, or the whole URL when the request came to a proxy.
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub json: Value,
    /// What the receiver answered; `None` while a held request waits.
    pub answered: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("no header {name} in {:?}", self.headers))
    }

    /// The event's cursor, from the body.
    pub fn cursor(&self) -> i64 {
        self.json["cursor"]
            .as_str()
            .and_then(|cursor| cursor.parse().ok())
            .unwrap_or_else(|| panic!("no cursor in {}", self.json))
    }

    /// Whether `X-Plangraph-Signature` is the HMAC-SHA256 of `t.body` under
    /// `secret`, with a timestamp within five minutes of now.
    pub fn signed_with(&self, secret: &str) -> bool {
        let header = self.header("x-plangraph-signature");
        let mut timestamp = None;
        let mut signature = None;
        for part in header.split(',') {
            match part.split_once('=') {
                Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
                Some(("v1", value)) => signature = hex::decode(value).ok(),
                _ => {}
            }
        }
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return false;
        };
        let fresh = (chrono::Utc::now().timestamp() - timestamp).abs() <= 300;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&self.body);
        fresh && mac.verify_slice(&signature).is_ok()
    }
}

/// How the receiver answers the next requests.
enum Answer {
    Status(u16),
    /// Wait until released, then answer 200.
    Hold(Arc<Held>),
}

/// A request the receiver holds without answering.
pub struct Held {
    arrived: Notify,
    release: Notify,
}

impl Held {
    /// Waits until the held request has arrived.
    pub async fn arrived(&self) {
        tokio::time::timeout(Duration::from_secs(30), self.arrived.notified())
            .await
            .expect("the held request arrived within 30 s");
    }

    pub fn release(&self) {
        self.release.notify_one();
    }
}

#[derive(Default)]
struct Script {
    next: VecDeque<Answer>,
    /// The answer once `next` is used up; 200 unless set.
    otherwise: Option<u16>,
    /// Once `next` is used up, hold every request until the receiver stops.
    never_answer: bool,
}

#[derive(Default)]
struct Inner {
    requests: Mutex<Vec<Received>>,
    script: Mutex<Script>,
    /// Requests whose answer is still being waited for, their senders
    /// connected.
    open: AtomicUsize,
    /// The most `open` has been.
    most_open: AtomicUsize,
}

/// Counts a request as open while its handler runs: hyper drops the handler
/// when the sender hangs up.
struct OpenRequest(Arc<Inner>);

impl OpenRequest {
    fn new(inner: &Arc<Inner>) -> OpenRequest {
        let open = inner.open.fetch_add(1, Ordering::SeqCst) + 1;
        inner.most_open.fetch_max(open, Ordering::SeqCst);
        OpenRequest(Arc::clone(inner))
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    pub url: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let address = listener.local_addr().expect("receiver address");
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{address}/hooks"),
            inner,
            server,
        }
    }

    /// The next requests get these statuses, one each, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        let mut script = self.inner.script.lock().expect("script");
        script
            .next
            .extend(statuses.iter().map(|status| Answer::Status(*status)));
    }

    /// Every request after the scripted ones gets `status`.
    pub fn answer_otherwise(&self, status: u16) {
        self.inner.script.lock().expect("script").otherwise = Some(status);
    }

    /// Every request after the scripted ones is held, unanswered, for as
    /// long as the receiver runs: a receiver that never answers.
    pub fn never_answer(&self) {
        self.inner.script.lock().expect("script").never_answer = true;
    }

    /// Requests arrived and not answered whose senders still wait.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// The most requests ever open at once.
    pub fn most_open(&self) -> usize {
        self.inner.most_open.load(Ordering::SeqCst)
    }

    /// The first request after the scripted ones is held until released.
    pub fn hold_next(&self) -> Arc<Held> {
        let held = Arc::new(Held {
            arrived: Notify::new(),
            release: Notify::new(),
        });
        let mut script = self.inner.script.lock().expect("script");
        script.next.push_back(Answer::Hold(Arc::clone(&held)));
        held
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.inner.requests.lock().expect("requests").clone()
    }

    /// The cursors of the requests answered with 2xx, in arrival order.
    pub fn accepted_cursors(&self) -> Vec<i64> {
        self.requests()
            .iter()
            .filter(|request| request.answered.is_some_and(|status| status < 300))
            .map(Received::cursor)
            .collect()
    }

    /// Waits until every one of `cursors` was accepted (answered 2xx).
    pub async fn wait_for_accepted(&self, cursors: &[i64]) {
        eventually(Duration::from_secs(30), async || {
            let accepted = self.accepted_cursors();
            cursors
                .iter()
                .all(|cursor| accepted.contains(cursor))
                .then_some(())
        })
        .await;
    }
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let _open = OpenRequest::new(&inner);
    let answer = {
        let mut script = inner.script.lock().expect("script");
        match script.next.pop_front() {
            Some(answer) => Some(answer),
            None if script.never_answer => None,
            None => Some(Answer::Status(script.otherwise.unwrap_or(200))),
        }
    };
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut requests = inner.requests.lock().expect("requests");
        requests.push(Received {
            uri,
            headers,
            body: body.to_vec(),
            json,
            answered: None,
        });
        requests.len() - 1
    };
    let status = match answer {
        None => std::future::pending().await,
        Some(Answer::Status(status)) => status,
        Some(Answer::Hold(held)) => {
            held.arrived.notify_one();
            held.release.notified().await;
            200
        }
    };
    inner.requests.lock().expect("requests")[index].answered = Some(status);
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
