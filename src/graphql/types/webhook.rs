use async_graphql::{Context, ID, Object, SimpleObject};

use super::{DateTime, PlanEventKind, User, at, user_by_id};
use crate::error::AppResult;
use crate::graphql::services;
use crate::service::webhooks::decode_kinds;
use entity::{webhook, webhook_delivery};

pub struct Webhook(pub webhook::Model);

/// A URL that receives the project's plan events as signed POST requests,
/// at least once and in event order. Only project owners see webhooks; the
/// secret is shown only by `createWebhook` and `rotateWebhookSecret`.
#[Object]
impl Webhook {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Where events are POSTed.
    async fn url(&self) -> &str {
        &self.0.url
    }
    /// The event kinds sent; null sends every kind (including kinds added later).
    async fn event_kinds(&self) -> Option<Vec<PlanEventKind>> {
        decode_kinds(self.0.event_kinds.as_deref())
            .map(|kinds| kinds.into_iter().map(Into::into).collect())
    }
    /// Whether events are being sent. A disabled webhook keeps its place:
    /// enabled again, it receives what happened meanwhile.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    /// Why the webhook is disabled: by an owner, or after failing for long.
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }
    /// The cursor of the last event this webhook is done with (delivered,
    /// refused by the receiver, or left out by its filter); delivery goes on
    /// after it.
    async fn delivered_cursor(&self) -> String {
        self.0.event_cursor.to_string()
    }
    /// Failed deliveries in a row; 0 when the last one succeeded.
    async fn consecutive_failures(&self) -> i32 {
        self.0.consecutive_failures
    }
    /// When the current run of failures began; null when not failing.
    async fn failing_since(&self) -> Option<DateTime> {
        self.0.failing_since.map(at)
    }
    /// When the next retry is due after a failure; null when none is waiting.
    async fn next_attempt_at(&self) -> Option<DateTime> {
        self.0.next_attempt_at.map(at)
    }
    /// Who registered the webhook.
    async fn created_by(&self, ctx: &Context<'_>) -> AppResult<User> {
        user_by_id(ctx, self.0.created_by).await
    }
    /// When the webhook was registered.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
    /// The newest delivery attempts, newest first (the log keeps 50).
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, None, child_complexity)")]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many: 0 to 50, default 20.")] first: Option<i32>,
    ) -> AppResult<Vec<WebhookDelivery>> {
        let deliveries = services(ctx).webhook_deliveries(self.0.id, first).await?;
        Ok(deliveries.into_iter().map(WebhookDelivery).collect())
    }
}

pub struct WebhookDelivery(pub webhook_delivery::Model);

/// One attempt to deliver one event to a webhook.
#[Object]
impl WebhookDelivery {
    /// Stable id (UUID); the request's `X-Plangraph-Delivery` header.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The event delivered (its `cursor`, as in `planEvents`).
    async fn event_cursor(&self) -> String {
        self.0.event_id.to_string()
    }
    /// 1 for the first attempt at this event, 2 for the first retry, and so on.
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }
    /// Sent by `redeliverWebhookDelivery`, outside the ordered stream.
    async fn redelivery(&self) -> bool {
        self.0.redelivery
    }
    /// The receiver's HTTP status; null when no answer came.
    async fn status(&self) -> Option<i32> {
        self.0.status
    }
    /// Why the attempt failed; null when it succeeded.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// How long the attempt took, in milliseconds.
    async fn duration_ms(&self) -> Option<i32> {
        self.0.duration_ms
    }
    /// When the attempt ended.
    async fn at(&self) -> DateTime {
        at(self.0.at)
    }
}

/// A webhook and its signing secret.
#[derive(SimpleObject)]
pub struct CreatedWebhook {
    /// The webhook.
    pub webhook: Webhook,
    /// The signing secret (`whsec_…`): shown this once, never again. Receivers
    /// check `X-Plangraph-Signature` with it.
    pub secret: String,
}
