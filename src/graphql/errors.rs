//! `AppError` as GraphQL sends it: the code and details in `extensions`
//! (camelCase names), the error itself as the source, so the response's one
//! exit (`guard.rs`) can log what the client never sees. The domain error
//! knows nothing of async-graphql; this is the edge where it is mapped.

use std::sync::Arc;

use async_graphql::ErrorExtensions;

use crate::error::{AppError, Interface};

impl ErrorExtensions for AppError {
    /// The error as GraphQL sends it; the `AppError` rides along as its
    /// source, so the response's one exit (`graphql::guard`) can log the
    /// detail of an internal error that the client never sees.
    fn extend(&self) -> async_graphql::Error {
        let mut error = async_graphql::Error::new(self.message());
        error.source = Some(Arc::new(self.clone()));
        error.extend_with(|_, extensions| {
            extensions.set("code", self.code());
            for (key, value) in self.details(Interface::GraphQl) {
                match async_graphql::Value::from_json(value) {
                    Ok(value) => extensions.set(key, value),
                    Err(error) => {
                        tracing::error!(%error, key, "an error detail is not a GraphQL value")
                    }
                }
            }
        })
    }
}

impl AppError {
    /// For errors raised outside a resolver (before or around execution).
    pub fn into_server_error(self) -> async_graphql::ServerError {
        let extended = self.extend();
        let mut error = async_graphql::ServerError::new(extended.message, None);
        error.source = extended.source;
        error.extensions = extended.extensions;
        error
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(error: AppError) -> async_graphql::Error {
        error.extend()
    }
}
