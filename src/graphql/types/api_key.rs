use async_graphql::{ID, Object, SimpleObject};

use super::User;
use super::scalars::{DateTime, at};
use entity::api_key;

pub struct ApiKey(pub api_key::Model);

/// An API key's public record. The secret is shown only once, when created.
#[Object]
impl ApiKey {
    /// Id to revoke the key with.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// What the owner called the key.
    async fn label(&self) -> &str {
        &self.0.label
    }
    /// The public part of the key (`pg_<prefix>_…`), to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    /// When the key was created.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
    /// Last successful use, accurate to about a minute.
    async fn last_used_at(&self) -> Option<DateTime> {
        self.0.last_used_at.map(at)
    }
    /// When the key was revoked; a revoked key no longer authenticates.
    async fn revoked_at(&self) -> Option<DateTime> {
        self.0.revoked_at.map(at)
    }
}

/// A new user and their first API key.
#[derive(SimpleObject)]
pub struct CreatedUser {
    /// The user.
    pub user: User,
    /// Their first key's public record.
    pub api_key: ApiKey,
    /// The full key (`pg_…`): shown this once, never again.
    pub secret: String,
}

/// A new API key.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The key's public record.
    pub api_key: ApiKey,
    /// The full key (`pg_…`): shown this once, never again.
    pub secret: String,
}
