//! Users and the first admin.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, SqlErr,
};
use uuid::Uuid;

use super::keys::{CreatedKey, insert_key};
use super::{Services, Viewer, now};
use crate::error::{AppError, AppResult, Argument, InputProblem};
use entity::user;

pub struct CreatedUser {
    pub user: user::Model,
    pub key: CreatedKey,
}

/// Email used for the admin created on first start.
pub const BOOTSTRAP_ADMIN_EMAIL: &str = "admin@localhost";

impl Services {
    /// Admins only: creates a user with a first API key.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_user(
        &self,
        viewer: &Viewer,
        email: &str,
        display_name: Option<String>,
        is_admin: bool,
    ) -> AppResult<CreatedUser> {
        if !viewer.user.is_admin {
            return Err(AppError::Forbidden("Only admins can create users".into()));
        }
        self.create_user_unchecked(email, display_name, is_admin)
            .await
    }

    /// For the CLI and the first start, where there is no viewer yet.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_user_unchecked(
        &self,
        email: &str,
        display_name: Option<String>,
        is_admin: bool,
    ) -> AppResult<CreatedUser> {
        let email = normalize_email(email)?;
        let display_name = match display_name.map(|name| name.trim().to_owned()) {
            Some(name) if name.chars().count() > self.limits.max_title_chars => {
                let limit = self.limits.max_title_chars;
                let problem = InputProblem::TooLong { limit };
                return Err(AppError::invalid(Argument::DisplayName, problem));
            }
            Some(name) if name.contains('\0') => {
                return Err(AppError::invalid(
                    Argument::DisplayName,
                    InputProblem::ContainsNul,
                ));
            }
            Some(name) if name.is_empty() => None,
            other => other,
        };
        let duplicate = || AppError::Conflict(format!("A user with email {email} already exists"));
        let txn = self.begin_write().await?;
        let taken = user::Entity::find()
            .filter(user::Column::Email.eq(email.as_str()))
            .count(&*txn)
            .await?;
        if taken > 0 {
            return Err(AppError::Conflict(format!(
                "A user with email {email} already exists"
            )));
        }
        let user = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(email.clone()),
            display_name: Set(display_name),
            is_admin: Set(is_admin),
            created_at: Set(now()),
        }
        .insert(&*txn)
        .await
        .map_err(|error| match error.sql_err() {
            // Lost a race with a concurrent insert of the same email.
            Some(SqlErr::UniqueConstraintViolation(_)) => duplicate(),
            _ => error.into(),
        })?;
        let key = insert_key(&*txn, user.id, "initial").await?;
        txn.commit().await?;
        Ok(CreatedUser { user, key })
    }

    /// On an empty database, creates the admin and returns its key so the
    /// caller can print it once. `None` when users already exist.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn bootstrap_admin(&self) -> AppResult<Option<CreatedUser>> {
        if user::Entity::find().count(&self.db).await? > 0 {
            return Ok(None);
        }
        let created = self
            .create_user_unchecked(BOOTSTRAP_ADMIN_EMAIL, Some("Administrator".into()), true)
            .await;
        match created {
            Ok(created) => Ok(Some(created)),
            // Another instance starting at the same moment created it first.
            Err(AppError::Conflict(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub async fn user_by_email(&self, email: &str) -> AppResult<Option<user::Model>> {
        let email = normalize_email(email)?;
        Ok(user::Entity::find()
            .filter(user::Column::Email.eq(email))
            .one(&self.db)
            .await?)
    }
}

/// Emails compare case-insensitively; store them lower-cased and trimmed.
fn normalize_email(email: &str) -> AppResult<String> {
    const MAX_EMAIL_BYTES: usize = 320;
    let email = email.trim().to_lowercase();
    if email.len() > MAX_EMAIL_BYTES {
        return Err(AppError::BadUserInput(format!(
            "The email is too long: at most {MAX_EMAIL_BYTES} bytes"
        )));
    }
    let plausible = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email
            .chars()
            .any(|character| character.is_whitespace() || character.is_control());
    if plausible {
        Ok(email)
    } else {
        Err(AppError::BadUserInput(format!(
            "{email:?} is not an email address (expected name@domain)"
        )))
    }
}
