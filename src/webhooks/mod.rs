//! Webhooks: every plan event of a project POSTed, signed, to the URLs its
//! owners registered — at least once and in event order per webhook.
//!
//! `plan_events` is the outbox. Each webhook keeps a cursor (the id of the
//! last event it is done with) in its row, and a worker on every instance
//! ([`worker::run`]) delivers what lies past it, moving the cursor in the
//! same commit that logs the attempt. Nothing is queued in memory, so a
//! restart, a crash or a second instance loses nothing; an event sent but
//! not yet committed as sent is sent again (at least once). Only one worker
//! delivers a given webhook at a time (see [`outbox`]).
//!
//! This module sends one attempt ([`Webhooks::send`]) and says what became of
//! it; [`outbox`] keeps the books and [`worker`] decides when to send.

pub mod outbox;
mod payload;
pub mod signature;
pub mod target;
pub mod worker;

use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, OnceCell};
use uuid::Uuid;

use self::target::{BlockedAddress, PublicOnlyResolver};
use crate::error::{AppError, AppResult};
use crate::events::LiveEvent;

/// How webhooks are delivered; from `--webhook-*` flags.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Permit loopback, private and link-local targets.
    pub allow_private: bool,
    /// Longest one attempt may take, from connecting to reading the answer.
    pub timeout: Duration,
    /// Longest connecting may take, within `timeout`.
    pub connect_timeout: Duration,
    /// Where deliveries go through instead of connecting directly; the
    /// proxy's environment variables are never read.
    pub proxy: Option<crate::config::ProxyUrl>,
    /// The first retry's delay; each further retry doubles it, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A webhook is disabled once it has failed this many times in a row …
    pub disable_after_failures: u32,
    /// … over at least this long.
    pub disable_after: Duration,
    /// How often a worker looks for work besides being woken by new events.
    pub poll_every: Duration,
    /// Most deliveries one instance makes at once.
    pub concurrency: usize,
    /// Most deliveries of one project's webhooks one instance makes at once.
    pub project_concurrency: usize,
}

impl Default for WebhookSettings {
    fn default() -> WebhookSettings {
        WebhookSettings {
            allow_private: false,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            proxy: None,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(5 * 60),
            disable_after_failures: 10,
            disable_after: Duration::from_secs(60 * 60),
            poll_every: Duration::from_secs(5),
            concurrency: 16,
            project_concurrency: 4,
        }
    }
}

/// Most bytes of a receiver's answer read (and thrown away); a receiver
/// cannot make the server read an endless body.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest error text kept in the delivery log.
const MAX_ERROR_CHARS: usize = 500;

/// The delivery settings and the HTTP client, shared by the worker and the
/// redeliver mutation.
pub struct Webhooks {
    pub settings: WebhookSettings,
    /// On PostgreSQL, the connections that hold webhooks during attempts
    /// (`--webhook-concurrency` of them): a delivery holds its connection
    /// while its receiver takes its time, and those of the request pool
    /// belong to requests.
    pool: Option<DatabaseConnection>,
    client: OnceCell<reqwest::Client>,
    /// Wakes this instance's worker when a webhook was added or enabled here.
    changed: Notify,
}

/// One attempt to send: the delivery id (its `X-Plangraph-Delivery`), where,
/// with which key, and what.
pub struct Outgoing<'a> {
    pub id: Uuid,
    pub url: &'a str,
    pub secret: &'a str,
    pub event: &'a LiveEvent,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the receiver has it.
    Delivered,
    /// Another answer that is not worth repeating (3xx, 4xx but 408 and 429):
    /// the receiver does not want this event; it is logged and passed.
    Rejected,
    /// Worth retrying later: no answer, a timeout, 408, 429, 5xx, or a
    /// target that resolved to a refused address.
    Failed(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Status,
    Timeout,
    Network,
    Blocked,
}

impl Verdict {
    /// The metric label: a handful of values, never a webhook id.
    fn label(self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::Rejected => "rejected",
            Verdict::Failed(Failure::Status) => "failed_status",
            Verdict::Failed(Failure::Timeout) => "failed_timeout",
            Verdict::Failed(Failure::Network) => "failed_network",
            Verdict::Failed(Failure::Blocked) => "failed_blocked",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub verdict: Verdict,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
}

impl Webhooks {
    pub fn new(settings: WebhookSettings) -> Webhooks {
        Webhooks {
            settings,
            pool: None,
            client: OnceCell::new(),
            changed: Notify::new(),
        }
    }

    /// Holds webhooks with connections of `pool` rather than the request pool.
    pub fn with_pool(mut self, pool: DatabaseConnection) -> Webhooks {
        self.pool = Some(pool);
        self
    }

    /// Where attempts hold their webhook: the pool of their own, if any.
    pub fn pool(&self) -> Option<&DatabaseConnection> {
        self.pool.as_ref()
    }

    /// A webhook was added or enabled: this instance's worker looks at once
    /// (other instances find it at their next poll or event).
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Built on first use: most servers never send a webhook.
    async fn client(&self) -> AppResult<&reqwest::Client> {
        self.client
            .get_or_try_init(|| async {
                // reqwest is built without a crypto provider of its own (as
                // the GCS client is): ring, which sqlx already brings.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let cannot_build = |error: reqwest::Error| {
                    AppError::internal_from("cannot build the webhook client", error)
                };
                let proxy = self.settings.proxy.as_ref().map(|proxy| &proxy.0);
                let builder = reqwest::Client::builder()
                    .dns_resolver(PublicOnlyResolver {
                        allow_private: self.settings.allow_private,
                        // Behind a proxy the only name resolved here is the
                        // proxy's own, which the operator chose.
                        trusted: proxy.and_then(|proxy| proxy.host_str().map(str::to_owned)),
                    })
                    // A redirect could lead anywhere, a private address included.
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(self.settings.connect_timeout.min(self.settings.timeout))
                    .timeout(self.settings.timeout)
                    .user_agent(concat!("plangraph-webhooks/", env!("CARGO_PKG_VERSION")));
                let builder = match proxy {
                    Some(proxy) => {
                        builder.proxy(reqwest::Proxy::all(proxy.as_str()).map_err(cannot_build)?)
                    }
                    // A proxy from the environment would resolve the target's
                    // name itself, out of the public-only resolver's reach.
                    None => builder.no_proxy(),
                };
                builder.build().map_err(cannot_build)
            })
            .await
    }

    /// POSTs the event, signed, and reports the outcome; never an error; a
    /// failure is an outcome to log and maybe retry.
    pub async fn send(&self, outgoing: Outgoing<'_>) -> Attempt {
        let started = Instant::now();
        let (verdict, status, error) = self.try_send(&outgoing).await;
        let attempt = Attempt {
            verdict,
            status,
            error: error.map(|text| text.chars().take(MAX_ERROR_CHARS).collect()),
            duration: started.elapsed(),
        };
        let result = attempt.verdict.label();
        metrics::counter!("plangraph_webhook_deliveries_total", "result" => result).increment(1);
        metrics::histogram!("plangraph_webhook_delivery_duration_seconds", "result" => result)
            .record(attempt.duration.as_secs_f64());
        attempt
    }

    async fn try_send(&self, outgoing: &Outgoing<'_>) -> (Verdict, Option<u16>, Option<String>) {
        let failed = |failure, error: String| (Verdict::Failed(failure), None, Some(error));
        let url = match target::parse_url(outgoing.url) {
            Ok(url) => url,
            Err(error) => return failed(Failure::Blocked, error.message()),
        };
        if let Err(blocked) = target::check_literal_host(&url, self.settings.allow_private) {
            return failed(Failure::Blocked, blocked.to_string());
        }
        let client = match self.client().await {
            Ok(client) => client,
            Err(error) => {
                error.log_if_internal("webhook delivery");
                return failed(Failure::Network, "the server cannot send webhooks".into());
            }
        };
        let body = payload::body(outgoing.event);
        let signature =
            signature::signature_header(outgoing.secret, chrono::Utc::now().timestamp(), &body);
        let kind = payload::kind(outgoing.event.event.kind);
        let request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Plangraph-Event", kind)
            .header("X-Plangraph-Delivery", outgoing.id.to_string())
            .header("X-Plangraph-Signature", signature)
            .body(body);
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return classify_error(&error),
        };
        let status = response.status();
        // Read a little of the answer, so the connection can be reused, and
        // no more.
        let mut read = 0;
        while read < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        let code = Some(status.as_u16());
        if status.is_success() {
            (Verdict::Delivered, code, None)
        } else {
            let retry = status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT;
            let verdict = if retry {
                Verdict::Failed(Failure::Status)
            } else {
                Verdict::Rejected
            };
            (
                verdict,
                code,
                Some(format!("the receiver answered {status}")),
            )
        }
    }
}

/// A transport error as a verdict and a sentence for the owner (without the
/// URL, which they know; the causes, which they need).
fn classify_error(error: &reqwest::Error) -> (Verdict, Option<u16>, Option<String>) {
    let mut causes = Vec::new();
    let mut blocked = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        blocked |= cause.downcast_ref::<BlockedAddress>().is_some();
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.dedup();
    let failure = if blocked {
        Failure::Blocked
    } else if error.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Network
    };
    let headline = if error.is_timeout() {
        "the receiver did not answer in time".to_owned()
    } else if error.is_connect() {
        "cannot connect to the receiver".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let text = std::iter::once(headline)
        .chain(causes)
        .collect::<Vec<_>>()
        .join(": ");
    (Verdict::Failed(failure), None, Some(text))
}
