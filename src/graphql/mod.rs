//! The GraphQL schema: roots, object types and per-request loaders.

pub mod connection;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod types;

use async_graphql::{Context, EmptySubscription, Schema};

use crate::error::{AppError, AppResult};
use crate::service::{Services, Viewer};

pub type AppSchema = Schema<query::QueryRoot, mutation::MutationRoot, EmptySubscription>;

pub fn build_schema(services: Services) -> AppSchema {
    Schema::build(query::QueryRoot, mutation::MutationRoot, EmptySubscription)
        .data(services)
        .finish()
}

/// The SDL clients see; `schema.graphql` is this, written by `print-schema`.
pub fn sdl() -> String {
    Schema::build(query::QueryRoot, mutation::MutationRoot, EmptySubscription)
        .finish()
        .sdl()
}

pub(crate) fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

/// The authenticated caller, or `UNAUTHENTICATED`.
pub(crate) fn viewer<'a>(ctx: &Context<'a>) -> AppResult<&'a Viewer> {
    ctx.data_opt::<Viewer>().ok_or_else(|| {
        AppError::Unauthenticated(
            "Authentication required: send the header Authorization: Bearer <your API key>".into(),
        )
    })
}

/// Parses an `ID` argument.
pub(crate) fn id(argument: &str, value: &async_graphql::ID) -> AppResult<uuid::Uuid> {
    crate::service::parse_id(argument, value.as_str())
}
