//! Webhooks as owners manage them: register, change, disable, delete, rotate
//! the secret, read the delivery log and redeliver. Delivery itself is the
//! worker's (`crate::webhooks`).

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, Iterable, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::{Services, Viewer, now, parse_id};
use crate::error::{AppError, AppResult, Argument, InputProblem};
use crate::events::{self, latest_event_id};
use crate::webhooks::outbox::{self, DELIVERY_LOG_SIZE, LogEntry};
use crate::webhooks::{Outgoing, signature, target};
use crate::workflow::{EventKind, Role};
use entity::webhook::WebhookSecret;
use entity::{plan_event, webhook, webhook_delivery};

/// Most webhooks one project may have: each event costs one request per
/// webhook, and a project needs a few receivers, not hundreds.
pub const MAX_WEBHOOKS_PER_PROJECT: u64 = 20;
/// Delivery-log entries a list shows unless asked for another number.
pub const DEFAULT_DELIVERIES: u64 = 20;

/// A webhook with its secret, which exists only in this value.
pub struct CreatedWebhook {
    pub webhook: webhook::Model,
    pub secret: String,
}

/// What `updateWebhook` does to the event-kind filter.
pub enum KindsChange {
    Keep,
    /// Every kind, now and any added later.
    Every,
    Only(Vec<EventKind>),
}

impl KindsChange {
    /// From `eventKinds` and `allEventKinds`. Leaving out both (or sending
    /// null) keeps the filter: widening it takes an explicit `true`, so a
    /// client that declares a variable it does not send never starts
    /// receiving kinds it filtered out.
    pub fn new(kinds: Option<Vec<EventKind>>, every: bool) -> AppResult<KindsChange> {
        match (kinds, every) {
            (Some(_), true) => Err(AppError::BadUserInput(
                "Pass eventKinds or allEventKinds: true, not both".into(),
            )),
            (Some(kinds), false) => Ok(KindsChange::Only(kinds)),
            (None, true) => Ok(KindsChange::Every),
            (None, false) => Ok(KindsChange::Keep),
        }
    }
}

/// Changes to a webhook; `None` keeps a value.
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub kinds: KindsChange,
    pub enabled: Option<bool>,
}

impl Services {
    /// Owners register a webhook; it receives the events committed from now on.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_webhook(
        &self,
        viewer: &Viewer,
        project_id: &str,
        url: &str,
        event_kinds: Option<Vec<EventKind>>,
    ) -> AppResult<CreatedWebhook> {
        let project = self.project(viewer, project_id).await?;
        self.require_webhook_manager(viewer, project.id).await?;
        let url = self.checked_url(url).await?;
        let event_kinds = match event_kinds {
            Some(kinds) => Some(encode_kinds(kinds)?),
            None => None,
        };
        let secret = signature::generate_secret()?;
        let at = now();
        let txn = self.begin_write().await?;
        let existing = webhook::Entity::find()
            .filter(webhook::Column::ProjectId.eq(project.id))
            .count(&*txn)
            .await?;
        if existing >= MAX_WEBHOOKS_PER_PROJECT {
            return Err(AppError::Conflict(format!(
                "This project has {existing} webhooks, the most it may have; delete one first"
            )));
        }
        // Event ids follow commit order, so every event committed after this
        // read has a larger id: the webhook misses nothing from now on.
        let event_cursor = latest_event_id(&self.db).await?;
        let webhook = webhook::ActiveModel {
            id: Set(Uuid::now_v7()),
            project_id: Set(project.id),
            url: Set(url),
            event_kinds: Set(event_kinds),
            secret: Set(WebhookSecret(secret.clone())),
            enabled: Set(true),
            disabled_reason: Set(None),
            event_cursor: Set(event_cursor),
            attempts: Set(0),
            consecutive_failures: Set(0),
            failing_since: Set(None),
            next_attempt_at: Set(None),
            created_by: Set(viewer.id()),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(&*txn)
        .await?;
        txn.commit().await?;
        self.webhooks.changed();
        Ok(CreatedWebhook { webhook, secret })
    }

    /// Owners change the URL, the filter or whether it is enabled. A new URL
    /// or enabling again starts afresh: failures forgotten, retry now. The
    /// cursor stays, so enabling again delivers what happened meanwhile.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn update_webhook(
        &self,
        viewer: &Viewer,
        id: &str,
        update: WebhookUpdate,
    ) -> AppResult<webhook::Model> {
        let webhook = self.managed_webhook(viewer, id).await?;
        let url = match &update.url {
            Some(url) => Some(self.checked_url(url).await?),
            None => None,
        };
        let event_kinds = match update.kinds {
            KindsChange::Keep => None,
            KindsChange::Every => Some(None),
            KindsChange::Only(kinds) => Some(Some(encode_kinds(kinds)?)),
        };
        let fresh_start = url.is_some() || (update.enabled == Some(true) && !webhook.enabled);
        let mut active = webhook::ActiveModel {
            updated_at: Set(now()),
            ..Default::default()
        };
        if let Some(url) = url {
            active.url = Set(url);
        }
        if let Some(kinds) = event_kinds {
            active.event_kinds = Set(kinds);
        }
        match update.enabled {
            Some(true) => {
                active.enabled = Set(true);
                active.disabled_reason = Set(None);
            }
            Some(false) if webhook.enabled => {
                active.enabled = Set(false);
                active.disabled_reason = Set(Some(format!(
                    "Disabled by {} with updateWebhook",
                    viewer.user.email
                )));
            }
            Some(false) | None => {}
        }
        if fresh_start {
            active.attempts = Set(0);
            active.consecutive_failures = Set(0);
            active.failing_since = Set(None);
            active.next_attempt_at = Set(None);
        }
        let txn = self.begin_write().await?;
        webhook::Entity::update_many()
            .set(active)
            .filter(webhook::Column::Id.eq(webhook.id))
            .exec(&*txn)
            .await?;
        let updated = webhook::Entity::find_by_id(webhook.id)
            .one(&*txn)
            .await?
            .ok_or_else(|| not_found(webhook.id))?;
        txn.commit().await?;
        self.webhooks.changed();
        Ok(updated)
    }

    /// Owners delete a webhook and its delivery log.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn delete_webhook(&self, viewer: &Viewer, id: &str) -> AppResult<bool> {
        let webhook = self.managed_webhook(viewer, id).await?;
        let txn = self.begin_write().await?;
        webhook_delivery::Entity::delete_many()
            .filter(webhook_delivery::Column::WebhookId.eq(webhook.id))
            .exec(&*txn)
            .await?;
        webhook::Entity::delete_by_id(webhook.id)
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Owners replace the secret; the next delivery is signed with the new
    /// one, which is shown only in this answer.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn rotate_webhook_secret(
        &self,
        viewer: &Viewer,
        id: &str,
    ) -> AppResult<CreatedWebhook> {
        let webhook = self.managed_webhook(viewer, id).await?;
        let secret = signature::generate_secret()?;
        let txn = self.begin_write().await?;
        let mut active = webhook.into_active_model();
        active.secret = Set(WebhookSecret(secret.clone()));
        active.updated_at = Set(now());
        let webhook = active.update(&*txn).await?;
        txn.commit().await?;
        Ok(CreatedWebhook { webhook, secret })
    }

    /// Owners send a logged delivery's event again, now, with the current
    /// URL and secret. It is outside the webhook's ordered stream: the
    /// cursor and the failure count stay as they are.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn redeliver_webhook_delivery(
        &self,
        viewer: &Viewer,
        delivery_id: &str,
    ) -> AppResult<webhook_delivery::Model> {
        let delivery_id = parse_id(Argument::DeliveryId, delivery_id)?;
        let delivery = webhook_delivery::Entity::find_by_id(delivery_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                AppError::NotFound(format!(
                    "No webhook delivery with id {delivery_id}; the log keeps each webhook's newest {DELIVERY_LOG_SIZE}"
                ))
            })?;
        let webhook = self
            .managed_webhook_by_id(viewer, delivery.webhook_id)
            .await?;
        let event = plan_event::Entity::find_by_id(delivery.event_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::internal(format!("event {} is missing", delivery.event_id)))?;
        let event = events::with_details(&self.db, vec![event])
            .await?
            .pop()
            .ok_or_else(|| AppError::internal("an event's plan is missing"))?;
        let id = Uuid::now_v7();
        let attempt = self
            .webhooks
            .send(Outgoing {
                id,
                url: &webhook.url,
                secret: &webhook.secret.0,
                event: &event,
            })
            .await;
        let txn = self.begin_write().await?;
        let earlier = outbox::attempts_logged(&*txn, webhook.id, delivery.event_id).await?;
        let entry = LogEntry {
            id,
            webhook: webhook.id,
            event_id: delivery.event_id,
            attempt: i32::try_from(earlier + 1).unwrap_or(i32::MAX),
            redelivery: true,
            at: now(),
        };
        let logged = outbox::log_attempt(&*txn, entry, &attempt).await?;
        txn.commit().await?;
        Ok(logged)
    }

    /// A project's webhooks, oldest first; owners only.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn webhooks_of(
        &self,
        viewer: &Viewer,
        project: Uuid,
    ) -> AppResult<Vec<webhook::Model>> {
        self.require_webhook_manager(viewer, project).await?;
        Ok(webhook::Entity::find()
            .filter(webhook::Column::ProjectId.eq(project))
            .order_by_asc(webhook::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// A webhook's newest delivery attempts, newest first. Only reachable
    /// from a webhook, which only owners see.
    pub async fn webhook_deliveries(
        &self,
        webhook: Uuid,
        first: Option<i32>,
    ) -> AppResult<Vec<webhook_delivery::Model>> {
        let count = match first {
            None => DEFAULT_DELIVERIES,
            Some(first) => u64::try_from(first)
                .ok()
                .filter(|count| *count <= DELIVERY_LOG_SIZE)
                .ok_or_else(|| {
                    AppError::BadUserInput(format!(
                        "first must be between 0 and {DELIVERY_LOG_SIZE}; the log keeps each webhook's newest {DELIVERY_LOG_SIZE} attempts"
                    ))
                })?,
        };
        Ok(webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::WebhookId.eq(webhook))
            .order_by_desc(webhook_delivery::Column::Id)
            .limit(count)
            .all(&self.db)
            .await?)
    }

    async fn checked_url(&self, url: &str) -> AppResult<String> {
        let parsed = target::parse_url(url)?;
        let settings = &self.webhooks.settings;
        target::check_when_saved(&parsed, settings.allow_private, settings.proxy.is_some()).await?;
        Ok(parsed.to_string())
    }

    async fn require_webhook_manager(&self, viewer: &Viewer, project: Uuid) -> AppResult<()> {
        match self.require_member(viewer, project).await? {
            Role::Owner => Ok(()),
            Role::Member | Role::Viewer => Err(AppError::Forbidden(
                "Only project owners can manage webhooks".into(),
            )),
        }
    }

    async fn managed_webhook(&self, viewer: &Viewer, id: &str) -> AppResult<webhook::Model> {
        let id = parse_id(Argument::Id, id)?;
        self.managed_webhook_by_id(viewer, id).await
    }

    async fn managed_webhook_by_id(&self, viewer: &Viewer, id: Uuid) -> AppResult<webhook::Model> {
        let webhook = webhook::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.require_webhook_manager(viewer, webhook.project_id)
            .await?;
        Ok(webhook)
    }
}

fn not_found(id: Uuid) -> AppError {
    AppError::NotFound(format!("No webhook with id {id}"))
}

/// A filter as stored: the kinds' stored spellings, comma-separated, each once.
fn encode_kinds(mut kinds: Vec<EventKind>) -> AppResult<String> {
    if kinds.is_empty() {
        return Err(AppError::invalid(
            Argument::EventKinds,
            InputProblem::NoEventKinds,
        ));
    }
    kinds.sort_by_key(|kind| kind.as_str());
    kinds.dedup();
    Ok(kinds
        .iter()
        .map(|kind| kind.as_str())
        .collect::<Vec<_>>()
        .join(","))
}

/// The kinds of a stored filter; `None` for every kind. A spelling this
/// build does not know is left out.
pub fn decode_kinds(stored: Option<&str>) -> Option<Vec<EventKind>> {
    let stored = stored?;
    Some(
        EventKind::iter()
            .filter(|kind| outbox::accepts(Some(stored), *kind))
            .collect(),
    )
}
