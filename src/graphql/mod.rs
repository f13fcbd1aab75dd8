//! The GraphQL schema: roots, object types and per-request loaders.

pub mod connection;
mod errors;
pub mod guard;
pub(crate) mod inline;
pub mod json;
pub mod limits;
pub mod loaders;
pub mod mutation;
mod order;
pub mod persisted;
mod pricing;
pub mod query;
pub mod subscription;
pub mod types;

use std::sync::Arc;

use async_graphql::{Context, Schema};

pub use self::guard::GuardedSchema;
use self::limits::IntrospectionPrices;
pub use self::limits::QueryLimits;
pub use self::persisted::PersistedQueries;
use crate::config::Introspection;
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
    introspection: Introspection,
    persisted: PersistedQueries,
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
    let schema = if introspection == Introspection::Off {
        builder.disable_introspection().finish()
    } else {
        builder.finish()
    };
    let pricing = Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
    .extension(pricing::PriceOnly)
    .finish();
    let prices = IntrospectionPrices::of(&registry());
    let pricing = pricing::Pricing::new(pricing);
    GuardedSchema::new(
        schema,
        services,
        limits,
        introspection,
        prices,
        persisted,
        pricing,
    )
}

/// The types of the schema, as async-graphql registers them.
pub(crate) fn registry() -> async_graphql::registry::Registry {
    use async_graphql::{OutputType, SubscriptionType};
    let mut registry = async_graphql::registry::Registry::default();
    query::QueryRoot::create_type_info(&mut registry);
    mutation::MutationRoot::create_type_info(&mut registry);
    subscription::SubscriptionRoot::create_type_info(&mut registry);
    registry
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

#[cfg(test)]
mod tests {
    use async_graphql::OutputType;
    use async_graphql::registry::MetaType;

    /// Every field whose work can grow with what a client asks declares its
    /// price with the field (`#[graphql(complexity = …)]`): a list of
    /// objects by the bound on its length (a page, a fan-out the server
    /// enforces), a field with arguments beyond ids by the work they select
    /// (a diff, a filtered page). The rest cost one point each. Like the
    /// authorization matrix for operations, this fails for a new field that
    /// was given no price.
    ///
    /// Not checked: mutations (each is one write, run one after another,
    /// and the fields limit bounds how many one document holds), and a
    /// connection's `nodes` and `edges`, whose page is priced on the field
    /// that returns the connection.
    #[test]
    fn every_field_that_can_cost_more_than_one_has_a_price() {
        let registry = super::registry();
        let mutation = super::mutation::MutationRoot::type_name();
        let is_object = |ty: &str| {
            let named = ty.trim_matches(|c| matches!(c, '[' | ']' | '!'));
            matches!(
                registry.types.get(named),
                Some(MetaType::Object { .. } | MetaType::Interface { .. })
            )
        };
        let mut unpriced = Vec::new();
        for (type_name, ty) in &registry.types {
            let fields = match ty {
                MetaType::Object { fields, .. } | MetaType::Interface { fields, .. } => fields,
                _ => continue,
            };
            if *type_name == mutation || type_name.starts_with("__") {
                continue;
            }
            for (name, field) in fields {
                let paged_by_parent =
                    type_name.ends_with("Connection") && matches!(name.as_str(), "nodes" | "edges");
                let lists_objects = field.ty.starts_with('[') && is_object(&field.ty);
                let selects_work = field
                    .args
                    .values()
                    .any(|argument| argument.ty.trim_end_matches('!') != "ID");
                if !paged_by_parent
                    && (lists_objects || selects_work)
                    && field.compute_complexity.is_none()
                {
                    unpriced.push(format!("{type_name}.{name}"));
                }
            }
        }
        assert!(unpriced.is_empty(), "fields without a price: {unpriced:?}");
    }
}
