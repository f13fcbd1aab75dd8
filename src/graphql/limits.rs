//! What one GraphQL operation may cost, measured before it runs where
//! possible and charged while it runs where not.
//!
//! async-graphql's depth and complexity rules walk the document with every
//! fragment spread expanded in place, so a small document whose fragments
//! spread each other ten times a level makes validation itself expand millions
//! of fields. [`expanded_field_count`] measures that expansion without
//! performing it (each fragment is counted once) and is checked before
//! validation. Complexity then multiplies list fields by their page size
//! ([`page_cost`]), so nested lists cannot multiply row loads unseen, and
//! [`DocumentBudget`] bounds the large text a response may carry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

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

/// How many items a plan's dependency list (`blockedBy`, `blocks`) is
/// counted as: a plan waits for a handful of plans, and a board shows them on
/// every card of a 100-plan page, which a default page's count would price
/// out of the complexity limit. Nesting them still multiplies the cost.
pub const DEPENDENCIES_COUNTED: usize = 5;

/// Complexity of a plan's dependency list.
pub fn dependency_cost(child_complexity: usize) -> usize {
    DEPENDENCIES_COUNTED
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// The number of fields the document selects once every fragment spread is
/// replaced by its fragment, over all its operations, or `Err(limit)` as soon
/// as that exceeds `limit`. Each fragment's size is computed once, so this
/// costs time proportional to the document's text, however far it expands.
/// A fragment that spreads itself counts as empty here; validation reports it.
pub fn expanded_field_count(document: &ExecutableDocument, limit: usize) -> Result<usize, usize> {
    let mut counter = FieldCounter {
        document,
        sizes: HashMap::new(),
    };
    let mut total: usize = 0;
    for (_, operation) in document.operations.iter() {
        total = total.saturating_add(counter.selection_set(&operation.node.selection_set.node));
        if total > limit {
            return Err(limit);
        }
    }
    Ok(total)
}

struct FieldCounter<'a> {
    document: &'a ExecutableDocument,
    /// Expanded size of each fragment; `None` while it is being counted.
    sizes: HashMap<&'a str, Option<usize>>,
}

impl<'a> FieldCounter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> usize {
        set.items.iter().fold(0, |total, item| {
            let size = match &item.node {
                Selection::Field(field) => {
                    1usize.saturating_add(self.selection_set(&field.node.selection_set.node))
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => self.fragment(&spread.node.fragment_name.node),
            };
            total.saturating_add(size)
        })
    }

    fn fragment(&mut self, name: &'a str) -> usize {
        match self.sizes.get(name) {
            Some(Some(size)) => return *size,
            Some(None) => return 0,
            None => {}
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            return 0;
        };
        self.sizes.insert(name, None);
        let size = self.selection_set(&fragment.node.selection_set.node);
        self.sizes.insert(name, Some(size));
        size
    }
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

/// The error for a document that expands to too many fields.
pub fn too_many_fields(limit: usize) -> AppError {
    AppError::BadUserInput(format!(
        "The query selects more than {limit} fields once its fragments are expanded (aliases count), the server's limit (--max-query-fields); split it into smaller queries"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(query: &str, limit: usize) -> Result<usize, usize> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        expanded_field_count(&document, limit)
    }

    #[test]
    fn fields_aliases_and_fragments_are_counted_as_expanded() {
        assert_eq!(count("{ a b { c d } }", 100), Ok(4));
        assert_eq!(count("{ x: a y: a z: a }", 100), Ok(3));
        assert_eq!(
            count("{ ...F ...F } fragment F on Query { a b }", 100),
            Ok(4)
        );
        assert_eq!(count("{ ... on Query { a b } }", 100), Ok(2));
        assert_eq!(count("query A { a } query B { b c }", 100), Ok(3));
    }

    #[test]
    fn a_fragment_fan_out_is_refused_without_expanding_it() {
        // Each fragment spreads the next ten times: 10^7 fields once expanded.
        let mut query = String::from("{ ...G0 }");
        for level in 0..7 {
            let spreads = format!("...G{} ", level + 1).repeat(10);
            query.push_str(&format!(" fragment G{level} on Query {{ {spreads} }}"));
        }
        query.push_str(" fragment G7 on Query { __typename }");
        assert_eq!(count(&query, 2000), Err(2000));
        assert_eq!(count(&query, usize::MAX), Ok(10_000_000));
    }

    #[test]
    fn self_spreading_fragments_end() {
        assert_eq!(
            count(
                "{ ...A } fragment A on Query { a ...B } fragment B on Query { ...A }",
                100
            ),
            Ok(1)
        );
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
