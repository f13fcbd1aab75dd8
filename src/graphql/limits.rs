//! What one GraphQL operation may cost, measured before it runs where
//! possible and charged while it runs where not.
//!
//! async-graphql's depth and complexity rules walk the document with every
//! fragment spread expanded in place, so a small document whose fragments
//! spread each other ten times a level makes validation itself expand millions
//! of fields. [`expanded_cost`] measures that expansion without performing it
//! (each fragment is counted once) and is checked before validation, with the
//! price of the introspection the document asks for, which async-graphql's
//! complexity does not see, and the longest list argument it sends.
//! Complexity then multiplies list fields by their real bound ([`page_cost`],
//! [`dependency_cost`]), so nested lists cannot multiply row loads unseen;
//! [`DocumentBudget`] bounds the large text a response may carry, and the
//! response's writer its bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::Variables;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::registry::{MetaType, Registry};
use async_graphql_value::{ConstValue, Value};

use crate::error::{AppError, AppResult};

/// Bounds on what one operation may ask for. Each refusal names its limit.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Longest query document, in bytes: parsing costs in proportion to it.
    pub max_query_bytes: usize,
    /// Deepest selection nesting.
    pub max_depth: usize,
    /// Largest complexity: fields weighted by cost, lists multiplied by their page size.
    pub max_complexity: usize,
    /// Most fields in the document once every fragment is expanded (aliases count).
    pub max_fields: usize,
    /// Most bytes of specs and work artifacts one response may carry.
    pub max_document_bytes: usize,
    /// Most bytes of JSON one response may be, counted as it is written.
    pub max_response_bytes: usize,
    /// Longest a query may run before it is stopped.
    pub query_timeout: Duration,
    /// Most operations (subscriptions included) open at once on one WebSocket.
    pub max_operations_per_connection: usize,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            max_query_bytes: 128 * 1024,
            max_depth: 16,
            max_complexity: 5000,
            max_fields: 2000,
            max_document_bytes: 16 * 1024 * 1024,
            max_response_bytes: 32 * 1024 * 1024,
            query_timeout: Duration::from_secs(30),
            max_operations_per_connection: 100,
        }
    }
}

/// Page size assumed for a list whose `first`/`last` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest page a list field serves.
pub const MAX_PAGE_SIZE: usize = 100;
/// Complexity of a field that returns a whole document (a spec), which costs a
/// read from the spec store and up to a megabyte of response.
pub const DOCUMENT_COMPLEXITY: usize = 10;

/// Complexity of a paged list field: its items' cost times the page it asks for.
pub fn page_cost(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let size = |value: Option<i32>| {
        value.map(|size| usize::try_from(size).unwrap_or(0).min(MAX_PAGE_SIZE))
    };
    let items = match (size(first), size(last)) {
        (None, None) => DEFAULT_PAGE_SIZE,
        (first, last) => first.unwrap_or(0).max(last.unwrap_or(0)).max(1),
    };
    items.saturating_mul(child_complexity).saturating_add(1)
}

/// Complexity of a list field that is not paged (a feature's versions, a
/// plan's events): counted as a default page, so nesting such lists still
/// multiplies the cost as it multiplies the work.
pub fn unpaged_cost(child_complexity: usize) -> usize {
    page_cost(None, None, child_complexity)
}

/// Complexity of a plan's dependency list: `bound` items (the most the
/// server lets that list hold, `workflow::MAX_BLOCKERS` or `MAX_WAITERS`),
/// each costing its selection.
pub fn dependency_cost(bound: usize, child_complexity: usize) -> usize {
    bound.saturating_mul(child_complexity).saturating_add(1)
}

/// Most items a list argument may have (`plans(status:)`,
/// `createWebhook(eventKinds:)`, …), in the document or in its variables.
/// No list argument of the schema means anything past a few dozen distinct
/// values; a longer one only costs parsing, memory and statement size.
pub const MAX_LIST_ARGUMENT_ITEMS: usize = 100;

/// The error for a list argument longer than [`MAX_LIST_ARGUMENT_ITEMS`].
pub fn list_too_long(items: usize) -> AppError {
    AppError::BadUserInput(format!(
        "A list argument has {items} items; lists sent to this server hold at most {MAX_LIST_ARGUMENT_ITEMS} (each distinct value once is always enough)"
    ))
}

/// The longest list in `variables` or in the document's literal arguments
/// (and directives' arguments), nested lists included.
pub fn longest_list_argument(document: &ExecutableDocument, variables: &Variables) -> usize {
    let mut longest = variables
        .values()
        .map(longest_const_list)
        .max()
        .unwrap_or(0);
    let mut visit = |set: &SelectionSet| longest = longest.max(longest_in_selection(set));
    for (_, operation) in document.operations.iter() {
        visit(&operation.node.selection_set.node);
    }
    for fragment in document.fragments.values() {
        visit(&fragment.node.selection_set.node);
    }
    longest
}

fn longest_in_selection(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                let arguments = field.node.arguments.iter().map(|(_, value)| &value.node);
                let directives =
                    field.node.directives.iter().flat_map(|directive| {
                        directive.node.arguments.iter().map(|(_, v)| &v.node)
                    });
                arguments
                    .chain(directives)
                    .map(longest_value_list)
                    .max()
                    .unwrap_or(0)
                    .max(longest_in_selection(&field.node.selection_set.node))
            }
            Selection::InlineFragment(fragment) => {
                longest_in_selection(&fragment.node.selection_set.node)
            }
            Selection::FragmentSpread(_) => 0,
        })
        .max()
        .unwrap_or(0)
}

fn longest_value_list(value: &Value) -> usize {
    match value {
        Value::List(items) => items
            .iter()
            .map(longest_value_list)
            .max()
            .unwrap_or(0)
            .max(items.len()),
        Value::Object(fields) => fields.values().map(longest_value_list).max().unwrap_or(0),
        _ => 0,
    }
}

fn longest_const_list(value: &ConstValue) -> usize {
    match value {
        ConstValue::List(items) => items
            .iter()
            .map(longest_const_list)
            .max()
            .unwrap_or(0)
            .max(items.len()),
        ConstValue::Object(fields) => fields.values().map(longest_const_list).max().unwrap_or(0),
        _ => 0,
    }
}

/// What introspection costs, priced like any other field: one point per
/// entry of its answer (a type, field, argument, enum value or input
/// field). `__schema` answers the whole schema; `__type` one type, priced as
/// the largest. async-graphql's complexity counts an introspection as its
/// few selected fields, whatever the answer's size, so a 20 KB document of
/// aliased `__schema`s would answer megabytes under any complexity limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntrospectionPrices {
    pub schema: usize,
    pub one_type: usize,
}

impl IntrospectionPrices {
    /// The prices of introspecting the schema whose types `registry` holds.
    pub fn of(registry: &Registry) -> IntrospectionPrices {
        let entries = |ty: &MetaType| -> usize {
            let listed = match ty {
                MetaType::Object { fields, .. } | MetaType::Interface { fields, .. } => {
                    fields.values().map(|field| 1 + field.args.len()).sum()
                }
                MetaType::Enum { enum_values, .. } => enum_values.len(),
                MetaType::InputObject { input_fields, .. } => input_fields.len(),
                MetaType::Union { possible_types, .. } => possible_types.len(),
                MetaType::Scalar { .. } => 0,
            };
            1 + listed
        };
        let directives: usize = registry
            .directives
            .values()
            .map(|directive| 1 + directive.args.len())
            .sum();
        IntrospectionPrices {
            schema: registry.types.values().map(entries).sum::<usize>() + directives,
            one_type: registry.types.values().map(entries).max().unwrap_or(1),
        }
    }
}

/// What a document costs before it runs: the fields it selects once every
/// fragment spread is replaced by its fragment (aliases count), and the
/// price of the introspection it asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocumentCost {
    pub fields: usize,
    pub introspection: usize,
}

impl DocumentCost {
    fn plus(self, other: DocumentCost) -> DocumentCost {
        DocumentCost {
            fields: self.fields.saturating_add(other.fields),
            introspection: self.introspection.saturating_add(other.introspection),
        }
    }
}

/// The [`DocumentCost`] of all the document's operations. Each fragment's
/// cost is computed once, so this costs time proportional to the document's
/// text, however far it expands. A fragment that spreads itself counts as
/// empty here; validation reports it.
pub fn expanded_cost(document: &ExecutableDocument, prices: IntrospectionPrices) -> DocumentCost {
    let mut counter = FieldCounter {
        document,
        prices,
        sizes: HashMap::new(),
    };
    document
        .operations
        .iter()
        .fold(DocumentCost::default(), |total, (_, operation)| {
            total.plus(counter.selection_set(&operation.node.selection_set.node))
        })
}

struct FieldCounter<'a> {
    document: &'a ExecutableDocument,
    prices: IntrospectionPrices,
    /// Expanded cost of each fragment; `None` while it is being counted.
    sizes: HashMap<&'a str, Option<DocumentCost>>,
}

impl<'a> FieldCounter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> DocumentCost {
        set.items
            .iter()
            .fold(DocumentCost::default(), |total, item| {
                let cost = match &item.node {
                    Selection::Field(field) => {
                        let introspection = match field.node.name.node.as_str() {
                            "__schema" => self.prices.schema,
                            "__type" => self.prices.one_type,
                            _ => 0,
                        };
                        DocumentCost {
                            fields: 1,
                            introspection,
                        }
                        .plus(self.selection_set(&field.node.selection_set.node))
                    }
                    Selection::InlineFragment(fragment) => {
                        self.selection_set(&fragment.node.selection_set.node)
                    }
                    Selection::FragmentSpread(spread) => {
                        self.fragment(&spread.node.fragment_name.node)
                    }
                };
                total.plus(cost)
            })
    }

    fn fragment(&mut self, name: &'a str) -> DocumentCost {
        match self.sizes.get(name) {
            Some(Some(size)) => return *size,
            Some(None) => return DocumentCost::default(),
            None => {}
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            return DocumentCost::default();
        };
        self.sizes.insert(name, None);
        let size = self.selection_set(&fragment.node.selection_set.node);
        self.sizes.insert(name, Some(size));
        size
    }
}

/// Roughly the bytes `document` takes once parsed: what the document cache
/// weighs it by. A parsed field is a few hundred bytes however short its
/// text (a one-letter field parses to a `Positioned<Selection>` with its
/// name, alias, argument and directive vectors), so a 128 KiB document can
/// take tens of megabytes, and weighing by text would let a few such
/// documents fill memory the cache was never meant to use.
pub fn parsed_size(document: &ExecutableDocument) -> usize {
    use async_graphql::Positioned;
    use async_graphql::parser::types::Field;
    use std::mem::size_of;
    fn set_size(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| {
                size_of::<Positioned<Selection>>()
                    + match &item.node {
                        Selection::Field(field) => {
                            let field = &field.node;
                            size_of::<Field>()
                                + field.name.node.len()
                                + field.alias.as_ref().map_or(0, |alias| alias.node.len())
                                + field
                                    .arguments
                                    .iter()
                                    .map(|(name, value)| {
                                        name.node.len() + value_size(&value.node) + 64
                                    })
                                    .sum::<usize>()
                                + field.directives.len() * 128
                                + set_size(&field.selection_set.node)
                        }
                        Selection::InlineFragment(fragment) => {
                            64 + set_size(&fragment.node.selection_set.node)
                        }
                        Selection::FragmentSpread(spread) => {
                            64 + spread.node.fragment_name.node.len()
                        }
                    }
            })
            .sum()
    }
    fn value_size(value: &Value) -> usize {
        size_of::<Value>()
            + match value {
                Value::String(text) => text.len(),
                Value::List(items) => items.iter().map(value_size).sum(),
                Value::Object(fields) => fields
                    .iter()
                    .map(|(name, value)| name.len() + 32 + value_size(value))
                    .sum(),
                _ => 0,
            }
    }
    let operations: usize = document
        .operations
        .iter()
        .map(|(_, operation)| 256 + set_size(&operation.node.selection_set.node))
        .sum();
    let fragments: usize = document
        .fragments
        .values()
        .map(|fragment| 256 + set_size(&fragment.node.selection_set.node))
        .sum();
    size_of::<ExecutableDocument>() + operations + fragments
}

/// The bytes of specs and work artifacts one response (or one subscription
/// event) may carry. Charged before a document is fetched where its size is
/// known, so a refused request never loads what it asked for.
#[derive(Debug)]
pub struct DocumentBudget {
    limit: usize,
    used: AtomicUsize,
}

impl DocumentBudget {
    pub fn new(limit: usize) -> DocumentBudget {
        DocumentBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` from the budget, or refuses without taking any.
    pub fn charge(&self, bytes: usize) -> AppResult<()> {
        let charged = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            });
        charged.map(|_| ()).map_err(|_| self.exhausted())
    }

    /// Whether `bytes` more would still fit.
    pub fn fits(&self, bytes: usize) -> bool {
        self.used
            .load(Ordering::Relaxed)
            .checked_add(bytes)
            .is_some_and(|total| total <= self.limit)
    }

    /// Starts over, for the next event of a subscription.
    pub fn reset(&self) {
        self.used.store(0, Ordering::Relaxed);
    }

    fn exhausted(&self) -> AppError {
        AppError::BadUserInput(format!(
            "This response would carry more than {} bytes of specs and work artifacts, the server's limit (--max-response-document-bytes); ask for fewer of them at once, e.g. with a smaller page",
            self.limit
        ))
    }
}

/// The error for a query document longer than the server parses.
pub fn query_too_long(limit: usize) -> AppError {
    AppError::BadUserInput(format!(
        "The query document is longer than {limit} bytes, the server's limit (--max-query-bytes); send large values as variables, or split the query"
    ))
}

/// The error for a document whose introspection costs more than `limit`.
pub fn introspection_too_costly(
    cost: usize,
    prices: IntrospectionPrices,
    limit: usize,
) -> AppError {
    AppError::BadUserInput(format!(
        "The query's introspection costs {cost} (each __schema {}, each __type {}: one per entry of the answer), over the server's limit of {limit} (--max-query-complexity); introspect the schema once and keep the answer",
        prices.schema, prices.one_type
    ))
}

/// The error for a document that expands to too many fields.
pub fn too_many_fields(limit: usize) -> AppError {
    AppError::BadUserInput(format!(
        "The query selects more than {limit} fields once its fragments are expanded (aliases count), the server's limit (--max-query-fields); split it into smaller queries"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICES: IntrospectionPrices = IntrospectionPrices {
        schema: 700,
        one_type: 40,
    };

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("parses")
    }

    fn count(query: &str) -> usize {
        expanded_cost(&parse(query), PRICES).fields
    }

    #[test]
    fn fields_aliases_and_fragments_are_counted_as_expanded() {
        assert_eq!(count("{ a b { c d } }"), 4);
        assert_eq!(count("{ x: a y: a z: a }"), 3);
        assert_eq!(count("{ ...F ...F } fragment F on Query { a b }"), 4);
        assert_eq!(count("{ ... on Query { a b } }"), 2);
        assert_eq!(count("query A { a } query B { b c }"), 3);
    }

    #[test]
    fn a_fragment_fan_out_is_counted_without_expanding_it() {
        // Each fragment spreads the next ten times: 10^7 fields once expanded.
        let mut query = String::from("{ ...G0 }");
        for level in 0..7 {
            let spreads = format!("...G{} ", level + 1).repeat(10);
            query.push_str(&format!(" fragment G{level} on Query {{ {spreads} }}"));
        }
        query.push_str(" fragment G7 on Query { __typename }");
        assert_eq!(count(&query), 10_000_000);
    }

    #[test]
    fn self_spreading_fragments_end() {
        assert_eq!(
            count("{ ...A } fragment A on Query { a ...B } fragment B on Query { ...A }"),
            1
        );
    }

    #[test]
    fn introspection_is_priced_by_its_answer_wherever_it_hides() {
        let cost = |query: &str| expanded_cost(&parse(query), PRICES).introspection;
        assert_eq!(cost("{ __typename plans { id } }"), 0);
        assert_eq!(cost("{ __schema { types { name } } }"), 700);
        assert_eq!(
            cost("{ a: __schema { types { name } } b: __type(name: \"Plan\") { name } }"),
            740
        );
        assert_eq!(
            cost(
                "{ ...S ...S } fragment S on Query { ... on Query { __schema { queryType { name } } } }"
            ),
            1400
        );
        let aliases: String = (0..285)
            .map(|i| format!("s{i}: __schema {{ types {{ name }} }} "))
            .collect();
        assert_eq!(cost(&format!("{{ {aliases} }}")), 285 * 700);
    }

    #[test]
    fn introspection_prices_count_every_entry_of_the_answer() {
        use async_graphql::OutputType;
        let mut registry = Registry::default();
        crate::graphql::query::QueryRoot::create_type_info(&mut registry);
        let prices = IntrospectionPrices::of(&registry);
        let plan_entries = match &registry.types["Plan"] {
            MetaType::Object { fields, .. } => {
                1 + fields
                    .values()
                    .map(|field| 1 + field.args.len())
                    .sum::<usize>()
            }
            _ => panic!("Plan is an object"),
        };
        assert!(prices.one_type >= plan_entries);
        assert!(prices.schema > prices.one_type * 2);
    }

    #[test]
    fn the_longest_list_argument_is_found_in_literals_directives_and_variables() {
        let longest = |query: &str, variables: serde_json::Value| {
            longest_list_argument(&parse(query), &Variables::from_json(variables))
        };
        assert_eq!(longest("{ plans { id } }", serde_json::json!({})), 0);
        assert_eq!(
            longest(
                "{ plans(status: [READY, DRAFT]) { id } }",
                serde_json::json!({})
            ),
            2
        );
        assert_eq!(
            longest(
                "{ a { b(x: {y: [[1, 2, 3]]}) @include(if: true) { c } } }",
                serde_json::json!({})
            ),
            3
        );
        assert_eq!(
            longest(
                "{ ...F } fragment F on Query { plans(priority: [0, 1, 2, 3]) { id } }",
                serde_json::json!({})
            ),
            4
        );
        let many: Vec<i32> = (0..500).collect();
        assert_eq!(
            longest(
                "query($p: [Int!]) { plans(priority: $p) { id } }",
                serde_json::json!({ "p": many })
            ),
            500
        );
    }

    #[test]
    fn parsed_size_grows_with_the_fields_not_only_the_text() {
        let many = parsed_size(&parse(&format!("{{ {} }}", "a ".repeat(1000))));
        let one = parsed_size(&parse("{ a }"));
        // 2 bytes of text a field; over a hundred once parsed.
        assert!((many - one) / 999 > 100, "{many} {one}");
    }

    #[test]
    fn list_cost_multiplies_by_the_page_asked_for() {
        assert_eq!(page_cost(None, None, 5), 101);
        assert_eq!(page_cost(Some(100), None, 5), 501);
        assert_eq!(page_cost(None, Some(3), 5), 16);
        assert_eq!(page_cost(Some(0), None, 5), 6);
        // Out-of-range sizes are refused by the list itself; cost stays bounded.
        assert_eq!(page_cost(Some(i32::MAX), None, 5), 501);
        assert_eq!(page_cost(Some(-4), None, 5), 6);
        assert_eq!(page_cost(Some(100), None, usize::MAX), usize::MAX);
    }

    #[test]
    fn the_document_budget_refuses_without_taking() {
        let budget = DocumentBudget::new(10);
        assert!(budget.charge(6).is_ok());
        assert!(budget.charge(6).is_err());
        assert!(budget.fits(4));
        assert!(budget.charge(4).is_ok());
        assert!(!budget.fits(1));
        budget.reset();
        assert!(budget.charge(10).is_ok());
    }
}
