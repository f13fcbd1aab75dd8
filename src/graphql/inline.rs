//! Resolving the rows of a page one after another, without async-graphql's
//! per-field machinery.
//!
//! async-graphql resolves the fields of every object concurrently: a boxed
//! future per field, a `FuturesUnordered` per object and a future per list
//! item. That concurrency pays off for fields that wait — a DataLoader batch
//! collects the keys of every row while they do — but on a dashboard page of
//! 50 plans nothing waits: the page statement joined in the rows the fields
//! show and the list primed the rest (`types/lists.rs`), and the machinery
//! was a large share of the server's CPU per request (perf, docs/benchmarks.md).
//!
//! So a page's `nodes` resolve inline when every field selected under them,
//! at any depth, is one its row type lists as immediate
//! ([`PageRow::IMMEDIATE`]); anything else — another field, a fragment, a
//! directive, a response key used twice — goes the general way. Both ways
//! call the same generated field resolvers and give the same response; only
//! the order of work differs. An object under a row (a plan's feature)
//! resolves inline too when the row's type hands it out as [`Related`] and
//! only its [`PureFields`] are selected, wherever it appears.
//!
//! The schema runs no async-graphql extension (see `guard.rs`): the inline
//! way would not call an extension's per-field hook.

use std::borrow::Cow;
use std::cell::RefCell;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::{MetaTypeName, Registry};
use async_graphql::resolver_utils::resolve_list;
use async_graphql::{
    ContainerType, ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value,
};

/// An object type with fields that are columns of its row: computed from
/// the row alone, without waiting and without arguments.
pub trait PureFields: ContainerType + OutputType + Sync {
    /// Those fields, by GraphQL name.
    const PURE: &'static [&'static str];
}

/// An object under another (a plan's feature), resolved inline when only
/// its [`PureFields`] are selected, so that fifty rows' features are not
/// fifty rounds of async-graphql's per-field machinery. Its GraphQL type is
/// `T`'s.
pub struct Related<T>(pub T);

impl<T: PureFields> OutputType for Related<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.0.introspection_type_name()
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        if plain_fields(&ctx.item.node, |name, _| T::PURE.contains(&name)) {
            Ok(resolve_object(ctx, &self.0, recent_shape(&ctx.item.node)).await)
        } else {
            OutputType::resolve(&self.0, ctx, field).await
        }
    }
}

/// Wider selections go the general way: telling their response keys apart
/// would cost more than resolving them inline saves.
const MAX_INLINE_FIELDS: usize = 32;

/// Every selection in `set` is a field without directives, under a
/// response key of its own, that `inline` accepts (`__typename` always).
fn plain_fields(set: &SelectionSet, mut inline: impl FnMut(&str, &Field) -> bool) -> bool {
    if set.items.len() > MAX_INLINE_FIELDS {
        return false;
    }
    set.items.iter().enumerate().all(|(index, selection)| {
        let Selection::Field(field) = &selection.node else {
            return false;
        };
        let field = &field.node;
        let key = &field.response_key().node;
        let repeated = set.items[..index].iter().any(|earlier| {
            matches!(&earlier.node, Selection::Field(earlier) if earlier.node.response_key().node == *key)
        });
        if !field.directives.is_empty() || repeated {
            return false;
        }
        let name = field.name.node.as_str();
        name == "__typename" || inline(name, field)
    })
}

/// A node type of a paged list.
pub trait PageRow: ContainerType + OutputType + Sync {
    /// Per GraphQL type, the fields that never wait when a page of `Self`
    /// resolves them: columns of their row, and relations the page loaded
    /// up front. Empty: every page of `Self` resolves the general way.
    const IMMEDIATE: &'static [(&'static str, &'static [&'static str])] = &[];
}

/// The `nodes` of a page: a list of `N` that resolves inline when it can.
pub struct Nodes<'a, N>(pub Vec<&'a N>);

impl<N: PageRow> OutputType for Nodes<'_, N> {
    fn type_name() -> Cow<'static, str> {
        <Vec<N> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<N> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<N> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let immediate = Immediate {
            registry: &ctx.schema_env.registry,
            fields: N::IMMEDIATE,
        };
        if !immediate.selection(&ctx.item.node, &N::type_name()) {
            return resolve_list(ctx, field, self.0.iter().copied(), Some(self.0.len())).await;
        }
        // Both ways answer alike, so only this shows which one a page took:
        // a field left out of `IMMEDIATE` slows pages without a trace.
        metrics::counter!("plangraph_inline_pages_total").increment(1);
        // Every row has the same keys: hashed once, then the map is cloned,
        // which copies the hashes (SipHash-ing every key of every row stood
        // out in a dashboard request's instruction profile).
        let keys = shape(&ctx.item.node);
        let mut rows = Vec::with_capacity(self.0.len());
        for (index, row) in self.0.iter().enumerate() {
            let ctx_row = ctx.with_index(index);
            rows.push(resolve_object(&ctx_row, *row, keys.clone()).await);
        }
        Ok(Value::List(rows))
    }
}

/// Which selections resolve without waiting.
struct Immediate<'a> {
    registry: &'a Registry,
    fields: &'static [(&'static str, &'static [&'static str])],
}

impl<'a> Immediate<'a> {
    /// Every selection in `set` (on `type_name`) is a plain field that never
    /// waits, and so is everything under it.
    fn selection(&self, set: &SelectionSet, type_name: &str) -> bool {
        let Some(immediate) = self
            .fields
            .iter()
            .find_map(|(name, fields)| (*name == type_name).then_some(*fields))
        else {
            return false;
        };
        plain_fields(set, |name, field| {
            let below = &field.selection_set.node;
            immediate.contains(&name)
                && (below.items.is_empty()
                    || self.selection(below, self.field_type(type_name, name)))
        })
    }

    /// The named type of `type_name.field` (`[PlanEvent!]!` → `PlanEvent`).
    fn field_type(&self, type_name: &str, field: &str) -> &'a str {
        self.registry
            .types
            .get(type_name)
            .and_then(|meta| meta.field_by_name(field))
            .map_or("", |meta| MetaTypeName::concrete_typename(&meta.ty))
    }
}

/// The response keys of a selection set of [`plain_fields`], in order, each
/// with a null for its value.
fn shape(set: &SelectionSet) -> IndexMap<Name, Value> {
    selected_fields(set)
        .map(|field| (field.node.response_key().node.clone(), Value::Null))
        .collect()
}

fn selected_fields(set: &SelectionSet) -> impl Iterator<Item = &Positioned<Field>> {
    set.items
        .iter()
        .filter_map(|selection| match &selection.node {
            Selection::Field(field) => Some(field),
            _ => None,
        })
}

/// How many shapes [`recent_shape`] keeps per thread: the objects under a
/// page's rows (a plan's feature, project, claimer) rarely have more kinds.
const RECENT_SHAPES: usize = 8;

thread_local! {
    static RECENT: RefCell<Vec<IndexMap<Name, Value>>> = const { RefCell::new(Vec::new()) };
}

/// [`shape`], cloned from one built lately on this thread with the same
/// keys: the fifty features of a page are resolved one by one, each
/// unaware of the others, but share one selection set. Found by its keys,
/// not by the selection set's address, so a shape left by another request
/// is only ever used where it is exactly right.
fn recent_shape(set: &SelectionSet) -> IndexMap<Name, Value> {
    RECENT.with_borrow_mut(|recent| {
        let keys = || selected_fields(set).map(|field| &field.node.response_key().node);
        if let Some(found) = recent.iter().find(|shape| shape.keys().eq(keys())) {
            return found.clone();
        }
        let built = shape(set);
        if recent.len() == RECENT_SHAPES {
            recent.remove(0);
        }
        recent.push(built.clone());
        built
    })
}

/// One object's selected fields, one after another, through its generated
/// field resolvers, into `fields` (its [`shape`]). As in async-graphql's own
/// `resolve_container`, a field's error is recorded on the response and the
/// field left out.
async fn resolve_object<T: ContainerType + OutputType>(
    ctx: &ContextSelectionSet<'_>,
    object: &T,
    mut fields: IndexMap<Name, Value>,
) -> Value {
    let mut failed = Vec::new();
    for (index, field) in selected_fields(&ctx.item.node).enumerate() {
        fields[index] = if field.node.name.node == "__typename" {
            Value::String(object.introspection_type_name().into_owned())
        } else {
            match object.resolve_field(&ctx.with_field(field)).await {
                Ok(value) => value.unwrap_or_default(),
                Err(error) => {
                    ctx.add_error(error);
                    failed.push(index);
                    continue;
                }
            }
        };
    }
    for index in failed.into_iter().rev() {
        fields.shift_remove_index(index);
    }
    if fields.is_empty() {
        Value::Null
    } else {
        Value::Object(fields)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::{DocumentOperations, SelectionSet};

    use super::{RECENT, RECENT_SHAPES, recent_shape};

    fn selection(query: &str) -> SelectionSet {
        let document = parse_query(query).expect("a valid query");
        let DocumentOperations::Single(operation) = document.operations else {
            panic!("one operation");
        };
        operation.node.selection_set.node
    }

    fn keys(query: &str) -> Vec<String> {
        recent_shape(&selection(query))
            .keys()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn recent_shapes_have_exactly_the_keys_of_their_selection() {
        assert_eq!(keys("{ title }"), ["title"]);
        assert_eq!(keys("{ name }"), ["name"]);
        assert_eq!(keys("{ title }"), ["title"]);
        assert_eq!(keys("{ title name }"), ["title", "name"]);
        assert_eq!(keys("{ name title }"), ["name", "title"]);
        assert_eq!(keys("{ heading: title }"), ["heading"]);
        for count in 0..2 * RECENT_SHAPES {
            let alias = format!("{{ field{count}: title }}");
            assert_eq!(keys(&alias), [format!("field{count}")]);
        }
        assert_eq!(keys("{ title }"), ["title"]);
        assert!(RECENT.with_borrow(Vec::len) <= RECENT_SHAPES);
    }
}
