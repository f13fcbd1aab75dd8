//! API keys: creation (secret shown once), revocation, authentication.

use chrono::Duration;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set,
};
use uuid::Uuid;

use super::{Services, Viewer, now, parse_id};
use crate::auth;
use crate::error::{AppError, AppResult, Argument};
use entity::api_key;

/// A key row plus the token, which exists only in this value.
pub struct CreatedKey {
    pub key: api_key::Model,
    pub token: String,
}

/// `last_used_at` is refreshed at most this often, so authentication does not
/// turn every read into a write.
const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

pub(super) async fn insert_key(
    connection: &impl ConnectionTrait,
    user_id: Uuid,
    label: &str,
) -> AppResult<CreatedKey> {
    let generated = auth::generate_key()?;
    let key = api_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        label: Set(label.to_owned()),
        prefix: Set(generated.prefix),
        secret_hash: Set(generated.secret_hash),
        created_at: Set(now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(connection)
    .await?;
    Ok(CreatedKey {
        key,
        token: generated.token,
    })
}

impl Services {
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_api_key(&self, viewer: &Viewer, label: &str) -> AppResult<CreatedKey> {
        let label = self.validate_title(Argument::Label, label)?;
        self.create_key_for(viewer.id(), &label).await
    }

    /// For the CLI: a new key for an existing user.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_key_for(&self, user_id: Uuid, label: &str) -> AppResult<CreatedKey> {
        let txn = self.begin_write().await?;
        let created = insert_key(&*txn, user_id, label).await?;
        txn.commit().await?;
        Ok(created)
    }

    /// Owners revoke their own keys; admins revoke anyone's. Revoking twice
    /// keeps the first revocation time.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn revoke_api_key(&self, viewer: &Viewer, id: &str) -> AppResult<api_key::Model> {
        let id = parse_id(Argument::Id, id)?;
        let not_found = || AppError::NotFound(format!("No API key with id {id}"));
        let key = api_key::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        if key.user_id != viewer.id() && !viewer.user.is_admin {
            return Err(not_found());
        }
        if key.revoked_at.is_some() {
            return Ok(key);
        }
        let txn = self.begin_write().await?;
        let mut active = key.into_active_model();
        active.revoked_at = Set(Some(now()));
        let key = active.update(&*txn).await?;
        txn.commit_access_change(&self.events, key.user_id).await?;
        Ok(key)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn api_keys_of(&self, viewer: &Viewer) -> AppResult<Vec<api_key::Model>> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::UserId.eq(viewer.id()))
            .order_by_asc(api_key::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// Resolves a presented token to its user. Every failure reads the same to
    /// the client, so a caller cannot tell a revoked key from a made-up one.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate(&self, token: &str) -> AppResult<Viewer> {
        let refused = || {
            metrics::counter!("plangraph_auth_failures_total").increment(1);
            AppError::Unauthenticated(
                "The API key is invalid or revoked; send Authorization: Bearer pg_… with an active key"
                    .into(),
            )
        };
        let (prefix, secret) = auth::parse_token(token).ok_or_else(refused)?;
        // One query for key and user: this runs on every request.
        let (key, user) = self
            .reads
            .key_with_user(prefix)
            .await?
            .ok_or_else(refused)?;
        if key.revoked_at.is_some() || !auth::secret_matches(secret, &key.secret_hash) {
            tracing::warn!(key_prefix = %key.prefix, "refused API key");
            return Err(refused());
        }
        let user = user.ok_or_else(refused)?;
        let stale = key
            .last_used_at
            .is_none_or(|used| now() - used > Duration::seconds(LAST_USED_GRANULARITY_SECONDS));
        if stale {
            let txn = self.begin_write().await?;
            api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, now().into())
                .filter(api_key::Column::Id.eq(key.id))
                .exec(&*txn)
                .await?;
            txn.commit().await?;
        }
        Ok(Viewer {
            user,
            key_id: key.id,
        })
    }

    /// For connections that authenticated once and stay open (WebSockets):
    /// refuses a key revoked since.
    pub async fn require_active_key(&self, viewer: &Viewer) -> AppResult<()> {
        let active = api_key::Entity::find_by_id(viewer.key_id)
            .filter(api_key::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?
            .is_some();
        if active {
            Ok(())
        } else {
            Err(AppError::Unauthenticated(
                "The API key of this connection was revoked; reconnect with an active key".into(),
            ))
        }
    }
}
