//! The GraphQL schema: roots, object types and per-request loaders.

pub mod connection;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use async_graphql::{Context, Schema};

use crate::error::{AppError, AppResult};
use crate::service::{Services, Viewer};
use crate::shutdown::Shutdown;

pub type AppSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// Bounds on what one query may ask for, so a hostile or careless query gets
/// an error instead of a slow response.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

pub fn build_schema(
    services: Services,
    shutdown: Shutdown,
    limits: QueryLimits,
    introspection: bool,
) -> AppSchema {
    let builder = Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
    .data(services)
    .data(shutdown)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity);
    if introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
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

pub(crate) fn loaders<'a>(ctx: &Context<'a>) -> &'a loaders::Loaders {
    ctx.data_unchecked::<loaders::Loaders>()
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
