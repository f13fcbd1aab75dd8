//! Relay-style connections of any node type: opaque cursors, `first/after`
//! and `last/before`, stable ordering with the id as tie-breaker, and a
//! `totalCount` computed only when a client asks for it. Which rows a list
//! holds is the list's business (`types/lists.rs`); this module knows no
//! object type.

use std::borrow::Cow;

use async_graphql::{Context, Object, OutputType, SelectionField, SimpleObject, TypeName};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::inline::{Nodes, PageRow};
use crate::error::{AppError, AppResult};
use crate::service::pagination::{Page, Position, SortValue, Window};
use crate::service::{parse_rfc3339, rfc3339};

/// The Relay paging arguments of one list field.
pub struct PageArguments {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

/// What a cursor carries: the list's sort key, the row's sort value and id.
/// Opaque to clients (base64 of this), but checked: a cursor only works with
/// the ordering it came from.
#[derive(Serialize, Deserialize)]
struct CursorData {
    #[serde(rename = "s")]
    sort: String,
    #[serde(rename = "v")]
    value: String,
    #[serde(rename = "i")]
    id: Uuid,
}

fn encode_cursor(sort: &str, position: &Position) -> String {
    let value = match &position.value {
        SortValue::Time(time) => rfc3339(*time),
        SortValue::Text(text) => text.clone(),
        SortValue::Int(number) => number.to_string(),
    };
    let data = CursorData {
        sort: sort.to_owned(),
        value,
        id: position.id,
    };
    // Serializing a struct of strings and a UUID cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&data).unwrap_or_default())
}

fn decode_cursor(argument: &str, cursor: &str, sort: &str, kind: SortKind) -> AppResult<Position> {
    let invalid = |why: &str| {
        AppError::BadUserInput(format!(
            "{argument}: {cursor:?} is not a cursor for this list ({why}); pass a cursor you received from the same field with the same orderBy"
        ))
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| invalid("not base64"))?;
    let data: CursorData = serde_json::from_slice(&bytes).map_err(|_| invalid("malformed"))?;
    if data.sort != sort {
        return Err(invalid("it comes from a different ordering"));
    }
    let value = match kind {
        SortKind::Text => SortValue::Text(data.value),
        SortKind::Time => {
            SortValue::Time(parse_rfc3339(&data.value).ok_or_else(|| invalid("malformed"))?)
        }
        SortKind::Int => SortValue::Int(data.value.parse().map_err(|_| invalid("malformed"))?),
    };
    Ok(Position { value, id: data.id })
}

/// What kind of value a list is sorted by, so its cursors decode to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKind {
    Time,
    Text,
    Int,
}

pub fn window(
    arguments: PageArguments,
    sort: &str,
    kind: SortKind,
    descending: bool,
) -> AppResult<Window> {
    let decode = |argument: &str, cursor: Option<String>| {
        cursor
            .map(|cursor| decode_cursor(argument, &cursor, sort, kind))
            .transpose()
    };
    let after = decode("after", arguments.after)?;
    let before = decode("before", arguments.before)?;
    Window::new(arguments.first, after, arguments.last, before, descending)
}

/// Counts the whole list behind a page, for `totalCount`; asked only when
/// a client selects it.
#[async_trait::async_trait]
pub trait CountAll: Send + Sync {
    async fn count_all(&self, ctx: &Context<'_>) -> AppResult<u64>;
}

/// A count the page's own statement already made.
pub struct Counted(pub u64);

#[async_trait::async_trait]
impl CountAll for Counted {
    async fn count_all(&self, _: &Context<'_>) -> AppResult<u64> {
        Ok(self.0)
    }
}

/// A position in a list.
#[derive(SimpleObject)]
#[graphql(name_type)]
pub struct Edge<N: OutputType> {
    /// Opaque position of this item; pass it as `after` or `before`.
    pub cursor: String,
    /// The item.
    pub node: N,
}

/// Pagination state of a connection.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// More items follow the last one of this page.
    pub has_next_page: bool,
    /// More items precede the first one of this page.
    pub has_previous_page: bool,
    /// Cursor of the first item of this page.
    pub start_cursor: Option<String>,
    /// Cursor of the last item of this page.
    pub end_cursor: Option<String>,
}

/// A page of a list. Cursors are encoded only when a client asks for them:
/// a dashboard reading `nodes` never pays for fifty of them.
pub struct Connection<N> {
    sort: &'static str,
    items: Vec<(Position, N)>,
    has_next_page: bool,
    has_previous_page: bool,
    total: Box<dyn CountAll>,
}

impl<N> Connection<N> {
    pub fn from_page<M>(
        page: Page<M>,
        total: Box<dyn CountAll>,
        sort: &'static str,
        position: impl Fn(&M) -> Position,
        node: impl Fn(M) -> N,
    ) -> Self {
        Connection {
            sort,
            items: page
                .rows
                .into_iter()
                .map(|row| (position(&row), node(row)))
                .collect(),
            has_next_page: page.has_next_page,
            has_previous_page: page.has_previous_page,
            total,
        }
    }
}

/// One page of a list, Relay style.
#[Object(name_type)]
impl<N: PageRow + Clone> Connection<N>
where
    Edge<N>: OutputType,
{
    /// The items of this page with their cursors.
    async fn edges(&self) -> Vec<Edge<N>> {
        self.items
            .iter()
            .map(|(position, node)| Edge {
                cursor: encode_cursor(self.sort, position),
                node: node.clone(),
            })
            .collect()
    }
    /// The items of this page, without cursors.
    async fn nodes(&self) -> Nodes<'_, N> {
        Nodes(self.items.iter().map(|(_, node)| node).collect())
    }
    /// Where this page sits in the whole list.
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next_page,
            has_previous_page: self.has_previous_page,
            start_cursor: self
                .items
                .first()
                .map(|(position, _)| encode_cursor(self.sort, position)),
            end_cursor: self
                .items
                .last()
                .map(|(position, _)| encode_cursor(self.sort, position)),
        }
    }
    /// How many items the whole list has (all pages, same filters).
    async fn total_count(&self, ctx: &Context<'_>) -> AppResult<u64> {
        self.total.count_all(ctx).await
    }
}

/// `PlanEdge`, `FeatureEdge`, …
impl<N: OutputType> TypeName for Edge<N> {
    fn type_name() -> Cow<'static, str> {
        format!("{}Edge", N::type_name()).into()
    }
}

/// `PlanConnection`, `FeatureConnection`, …
impl<N: OutputType> TypeName for Connection<N> {
    fn type_name() -> Cow<'static, str> {
        format!("{}Connection", N::type_name()).into()
    }
}

/// Whether the client selected `field` on the rows of this connection.
pub fn row_field_selected(ctx: &Context<'_>, field: &str) -> bool {
    row_path_selected(ctx, &[field])
}

/// Whether the client selected the nested field `path` (e.g. a row's
/// `project { members }`) on the rows of this connection.
pub fn row_path_selected(ctx: &Context<'_>, path: &[&str]) -> bool {
    let look = ctx.look_ahead();
    let (mut nodes, mut edges) = (look.field("nodes"), look.field("edges").field("node"));
    for field in path {
        nodes = nodes.field(field);
        edges = edges.field(field);
    }
    nodes.exists() || edges.exists()
}

/// The `last` a row field that shows the newest items of a history
/// (`events`, `versions`) asks for, as its first selection on the rows of
/// this connection gives it; other selections load for themselves.
pub fn row_field_newest(ctx: &Context<'_>, field: &str) -> AppResult<u64> {
    let look = ctx.look_ahead();
    let selections = [look.field("nodes"), look.field("edges").field("node")];
    let first = selections
        .iter()
        .flat_map(|rows| rows.field(field).selection_fields())
        .next();
    let last = match first {
        Some(selection) => selection
            .arguments()
            .map_err(|error| AppError::BadUserInput(error.message))?
            .into_iter()
            .find(|(name, _)| name.as_str() == "last")
            .and_then(|(_, value)| match value {
                async_graphql::Value::Number(number) => number.as_i64(),
                _ => None,
            })
            .map(|last| i32::try_from(last).unwrap_or(i32::MAX)),
        None => None,
    };
    crate::service::pagination::newest(last)
}

/// Calls `visit` with each field selected on the rows of this connection
/// (`nodes { … }` and `edges { node { … } }`, fragments included,
/// directives not evaluated).
pub fn visit_row_fields(ctx: &Context<'_>, mut visit: impl FnMut(SelectionField<'_>)) {
    for field in ctx.field().selection_set() {
        let rows: Vec<_> = match field.name() {
            "nodes" => vec![field],
            "edges" => field
                .selection_set()
                .filter(|field| field.name() == "node")
                .collect(),
            _ => continue,
        };
        for row in rows {
            row.selection_set().for_each(&mut visit);
        }
    }
}

/// The keys a selected field needs, collected before any await: iterators
/// borrowing the rows would keep the resolver's future from being `Send`.
pub fn keys_if<M, K>(selected: bool, rows: &[M], key: impl Fn(&M) -> K) -> Vec<K> {
    if selected {
        rows.iter().map(key).collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_ordering() {
        let position = Position {
            value: SortValue::Time(crate::service::now()),
            id: Uuid::now_v7(),
        };
        let cursor = encode_cursor("created_at", &position);
        assert_eq!(
            decode_cursor("after", &cursor, "created_at", SortKind::Time).expect("valid"),
            position
        );
        assert!(decode_cursor("after", &cursor, "updated_at", SortKind::Time).is_err());
        assert!(decode_cursor("after", "not a cursor", "created_at", SortKind::Time).is_err());
        let titled = Position {
            value: SortValue::Text("Ünïcode title".into()),
            id: Uuid::now_v7(),
        };
        let cursor = encode_cursor("title", &titled);
        assert_eq!(
            decode_cursor("before", &cursor, "title", SortKind::Text).expect("valid"),
            titled
        );
    }
}
