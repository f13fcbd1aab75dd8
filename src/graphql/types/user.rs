use std::sync::Arc;

use async_graphql::{ID, Object};

use super::scalars::{DateTime, at};
use crate::graphql::inline::PureFields;
use entity::user;

pub struct User(pub Arc<user::Model>);

impl From<user::Model> for User {
    fn from(row: user::Model) -> Self {
        User(Arc::new(row))
    }
}

/// A person or agent with API keys.
#[Object]
impl User {
    /// Stable id (UUID).
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Email address; unique, lower-case.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// Name to show; falls back to nothing, so show the email then.
    async fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }
    /// Server administrators can create users.
    async fn is_admin(&self) -> bool {
        self.0.is_admin
    }
    /// When the user was created.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
}

/// Read straight off the row (see `graphql/inline.rs`).
impl PureFields for User {
    const PURE: &'static [&'static str] = &["id", "email", "displayName", "isAdmin", "createdAt"];
}
