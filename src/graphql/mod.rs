//! The GraphQL schema: roots, object types and per-request loaders.

pub mod connection;
pub mod guard;
pub(crate) mod inline;
pub mod json;
pub mod limits;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use std::sync::Arc;

use async_graphql::{Context, Schema};

pub use self::guard::GuardedSchema;
pub use self::limits::QueryLimits;
use crate::error::{AppError, AppResult};
use crate::service::{Services, Viewer};
use crate::shutdown::Shutdown;

pub type AppSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// The schema, behind the checks every operation passes (`guard.rs`).
pub fn build_schema(
    services: Services,
    shutdown: Shutdown,
    limits: QueryLimits,
    introspection: bool,
) -> GuardedSchema {
    let builder = Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
    .data(services.clone())
    .data(shutdown)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity);
    let schema = if introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    };
    GuardedSchema::new(schema, services, limits)
}

/// The SDL clients see; `schema.graphql` is this, written by `print-schema`.
pub fn sdl() -> String {
    Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
    .finish()
    .sdl()
}

pub(crate) fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

/// The operation's loaders; every operation gets its own (see `guard.rs`).
pub(crate) fn loaders<'a>(ctx: &Context<'a>) -> &'a Arc<loaders::Loaders> {
    ctx.data_unchecked::<Arc<loaders::Loaders>>()
}

/// What the operation may still spend on specs and work artifacts.
pub(crate) fn document_budget<'a>(ctx: &Context<'a>) -> &'a Arc<limits::DocumentBudget> {
    ctx.data_unchecked::<Arc<limits::DocumentBudget>>()
}

/// The services, for a mutation: the request's loaders forget cached rows first.
pub(crate) fn writing<'a>(ctx: &Context<'a>) -> &'a Services {
    loaders(ctx).forget_rows();
    services(ctx)
}

/// The authenticated caller, or `UNAUTHENTICATED`.
pub(crate) fn viewer<'a>(ctx: &Context<'a>) -> AppResult<&'a Viewer> {
    ctx.data_opt::<Viewer>().ok_or_else(|| {
        AppError::Unauthenticated(
            "Authentication required: send the header Authorization: Bearer <your API key>".into(),
        )
    })
}
