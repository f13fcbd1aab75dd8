//! Answers in the document's field order.
//!
//! async-graphql puts an object's fields into its answer in the order they
//! finish (it resolves them concurrently), not in the order the document
//! asks for them. The spec asks for the document's order, and an `ETag`
//! over the answer (`http.rs`) needs the same answer to be the same bytes
//! every time. This pass puts every object's keys back in document order:
//! one walk over the answer, the key order of a list's items worked out once.

use async_graphql::Value;
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};

/// Fragments nest at most this deep in an answer's walk; validation refuses
/// cycles before anything runs, so this only bounds a malformed input.
const MAX_FRAGMENT_DEPTH: usize = 64;

/// Reorders `data`, the answer to the operation `operation_name` of
/// `document`, into the document's field order.
pub fn in_document_order(
    data: &mut Value,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
            Some(operation) => operation,
            None => return,
        },
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            match operations.values().next() {
                Some(operation) => operation,
                None => return,
            }
        }
        (DocumentOperations::Multiple(_), None) => return,
    };
    reorder(data, &[&operation.node.selection_set.node], document);
}

/// The response keys `sets` ask for, in order, each with the selections
/// under it (a key asked for twice merges both).
fn keys_of<'a>(
    sets: &[&'a SelectionSet],
    document: &'a ExecutableDocument,
) -> IndexMap<&'a str, Vec<&'a SelectionSet>> {
    let mut keys: IndexMap<&str, Vec<&SelectionSet>> = IndexMap::new();
    for set in sets {
        collect(set, document, &mut keys, 0);
    }
    keys
}

fn collect<'a>(
    set: &'a SelectionSet,
    document: &'a ExecutableDocument,
    keys: &mut IndexMap<&'a str, Vec<&'a SelectionSet>>,
    depth: usize,
) {
    if depth > MAX_FRAGMENT_DEPTH {
        return;
    }
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                let key = field.alias.as_ref().unwrap_or(&field.name).node.as_str();
                keys.entry(key).or_default().push(&field.selection_set.node);
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    collect(&fragment.node.selection_set.node, document, keys, depth + 1);
                }
            }
            Selection::InlineFragment(inline) => {
                collect(&inline.node.selection_set.node, document, keys, depth + 1);
            }
        }
    }
}

fn reorder(value: &mut Value, sets: &[&SelectionSet], document: &ExecutableDocument) {
    match value {
        Value::Object(_) | Value::List(_) => {
            let keys = keys_of(sets, document);
            if !keys.is_empty() {
                apply(value, &keys, document);
            }
        }
        _ => {}
    }
}

fn apply(
    value: &mut Value,
    keys: &IndexMap<&str, Vec<&SelectionSet>>,
    document: &ExecutableDocument,
) {
    match value {
        Value::List(items) => {
            for item in items {
                apply(item, keys, document);
            }
        }
        Value::Object(fields) => {
            let mut unordered = std::mem::take(fields);
            for (key, sets) in keys {
                if let Some((name, mut child)) = unordered.shift_remove_entry(*key) {
                    reorder(&mut child, sets, document);
                    fields.insert(name, child);
                }
            }
            // Nothing should be left; whatever is stays, after the rest.
            fields.extend(unordered);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer after reordering, written out in its own key order
    /// (serde_json's maps would sort the keys).
    fn ordered(query: &str, answer: serde_json::Value) -> String {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        let mut data = Value::from_json(answer).expect("json");
        in_document_order(&mut data, &document, None);
        data.to_string()
    }

    #[test]
    fn every_object_follows_the_document_order() {
        let query = "{ b: project { name id } ...Rest plans { nodes { title id } } }
            fragment Rest on Query { a: viewer { email } }";
        let answer = serde_json::json!({
            "plans": { "nodes": [{ "id": 1, "title": "x" }, { "id": 2, "title": "y" }] },
            "a": { "email": "e" },
            "b": { "id": 3, "name": "n" },
        });
        assert_eq!(
            ordered(query, answer),
            r#"{b: {name: "n", id: 3}, a: {email: "e"}, plans: {nodes: [{title: "x", id: 1}, {title: "y", id: 2}]}}"#
        );
    }

    #[test]
    fn a_key_asked_twice_merges_its_selections() {
        let query = "{ plan { id } plan { title id } }";
        let answer = serde_json::json!({ "plan": { "title": "t", "id": 1 } });
        assert_eq!(ordered(query, answer), r#"{plan: {id: 1, title: "t"}}"#);
    }
}
