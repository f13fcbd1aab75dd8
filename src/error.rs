//! The one error type of the server and its single mapping to GraphQL
//! `extensions.code`. Anything that can fail in a request ends up here, so a
//! client always gets a code it can branch on and a sentence a person can act on.

use async_graphql::ErrorExtensions;
use sea_orm::DbErr;

use crate::workflow::{PlanStatus, Refusal};

/// Deliberately not `Display`: async-graphql converts any `Display` type into an
/// error without a code, so keeping it off makes `?` go through [`From`] below.
#[derive(Debug, Clone)]
pub enum AppError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    InvalidTransition {
        message: String,
        current: PlanStatus,
        allowed: Vec<PlanStatus>,
    },
    BadUserInput(String),
    StorageUnavailable(String),
    /// A query ran longer than the server allows and was stopped.
    Timeout(String),
    /// A subscriber fell further behind the live stream than its buffer
    /// allows; it resumes losslessly by subscribing again from its cursor.
    ResumeRequired {
        last_cursor: String,
    },
    DatabaseUnavailable,
    /// The detail is logged, never sent: it may contain SQL or paths.
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Conflict(_) => "CONFLICT",
            AppError::InvalidTransition { .. } => "INVALID_TRANSITION",
            AppError::BadUserInput(_) => "BAD_USER_INPUT",
            AppError::StorageUnavailable(_) => "STORAGE_UNAVAILABLE",
            AppError::Timeout(_) => "TIMEOUT",
            AppError::ResumeRequired { .. } => "RESUME_REQUIRED",
            AppError::DatabaseUnavailable | AppError::Internal(_) => "INTERNAL",
        }
    }

    /// The sentence the client sees.
    pub fn message(&self) -> String {
        match self {
            AppError::Unauthenticated(message)
            | AppError::Forbidden(message)
            | AppError::NotFound(message)
            | AppError::Conflict(message)
            | AppError::InvalidTransition { message, .. }
            | AppError::BadUserInput(message)
            | AppError::Timeout(message) => message.clone(),
            AppError::StorageUnavailable(_) => {
                "The spec store is unavailable; try again shortly".into()
            }
            AppError::ResumeRequired { last_cursor } => format!(
                "This subscription fell too far behind the live events; subscribe again with after: \"{last_cursor}\" to continue without losing any"
            ),
            AppError::DatabaseUnavailable => {
                "The database is unavailable; try again shortly".into()
            }
            AppError::Internal(_) => "Internal error; the server log has the details".into(),
        }
    }

    pub fn not_member() -> AppError {
        AppError::Forbidden("You are not a member of this project".into())
    }

    pub fn from_refusal(refusal: Refusal) -> AppError {
        match refusal {
            Refusal::InvalidTransition {
                from,
                requested,
                allowed,
            } => {
                let target = match requested {
                    crate::workflow::Action::SetStatus(to) => format!(" to {to}"),
                    _ => String::new(),
                };
                let allowed_text = if allowed.is_empty() {
                    format!("{from} is final; nothing can follow it")
                } else {
                    let names: Vec<String> = allowed.iter().map(ToString::to_string).collect();
                    format!("allowed next statuses from {from}: {}", names.join(", "))
                };
                AppError::InvalidTransition {
                    message: format!(
                        "Cannot {}{target}: the plan is {from}; {allowed_text}",
                        requested.operation()
                    ),
                    current: from,
                    allowed,
                }
            }
            Refusal::Conflict { message, .. } => AppError::Conflict(message),
            Refusal::Forbidden(message) => AppError::Forbidden(message),
        }
    }
}

impl From<DbErr> for AppError {
    fn from(error: DbErr) -> AppError {
        if is_unavailable(&error) {
            tracing::warn!(%error, "database unavailable");
            AppError::DatabaseUnavailable
        } else {
            tracing::error!(%error, "database error");
            AppError::Internal(error.to_string())
        }
    }
}

/// Whether a database error means "cannot reach the database" (worth a retry
/// later) rather than a bad statement: pool timeouts, refused or dropped
/// connections, I/O errors mid-query.
fn is_unavailable(error: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as SqlxError;
    let runtime = match error {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(sqlx_error) => matches!(
            sqlx_error.as_ref(),
            SqlxError::Io(_)
                | SqlxError::Tls(_)
                | SqlxError::Protocol(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed
        ),
        RuntimeErr::Internal(_) => matches!(error, DbErr::Conn(_)),
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.message()).extend_with(|_, extensions| {
            extensions.set("code", self.code());
            if let AppError::InvalidTransition {
                current, allowed, ..
            } = self
            {
                extensions.set("currentStatus", current.to_string());
                let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
                extensions.set("allowedStatuses", allowed);
            }
            if let AppError::ResumeRequired { last_cursor } = self {
                extensions.set("lastCursor", last_cursor.as_str());
            }
        })
    }
}

impl AppError {
    /// For errors raised outside a resolver (before or around execution).
    pub fn into_server_error(self) -> async_graphql::ServerError {
        let mut error = async_graphql::ServerError::new(self.message(), None);
        error.extensions = self.extend().extensions;
        error
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(error: AppError) -> async_graphql::Error {
        error.extend()
    }
}
