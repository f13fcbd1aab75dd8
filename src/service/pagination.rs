//! Keyset pagination shared by every list: stable under inserts, and as fast
//! on page 500 as on page 1 because each page is an index range, not an OFFSET.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Query, SimpleExpr, WindowStatement};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Select,
};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;

/// The value a list is sorted by, for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    Time(DateTime<Utc>),
    Text(String),
    Int(i64),
}

impl From<SortValue> for sea_orm::Value {
    fn from(value: SortValue) -> sea_orm::Value {
        match value {
            SortValue::Time(time) => time.into(),
            SortValue::Text(text) => text.into(),
            SortValue::Int(number) => number.into(),
        }
    }
}

/// A position in a list: the sort value and the id that breaks ties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub value: SortValue,
    pub id: Uuid,
}

/// Which slice of a sorted list to return, from `first/after` or `last/before`.
/// A page size argument (`first`, `last`) checked against [`MAX_PAGE_SIZE`].
pub fn page_size(argument: &str, value: i32) -> AppResult<u64> {
    u64::try_from(value)
        .ok()
        .filter(|size| *size <= MAX_PAGE_SIZE)
        .ok_or_else(|| {
            AppError::BadUserInput(format!(
                "{argument} must be between 0 and {MAX_PAGE_SIZE}; page through longer lists with cursors"
            ))
        })
}

/// `last` of a list that shows the newest items of a history (a plan's
/// events, a feature's versions): the default page when not given.
pub fn newest(last: Option<i32>) -> AppResult<u64> {
    last.map_or(Ok(DEFAULT_PAGE_SIZE), |last| page_size("last", last))
}

/// The newest `count` rows (by `order`) of each of `groups`, oldest first,
/// by group (`group`, read off a row by `group_of`), in one
/// statement: a history read for a page of parents costs at most `count`
/// rows a parent however long each history has grown.
pub async fn newest_of_each<E>(
    db: &DatabaseConnection,
    group: E::Column,
    group_of: fn(&E::Model) -> Uuid,
    order: E::Column,
    groups: &[Uuid],
    count: u64,
) -> AppResult<HashMap<Uuid, Vec<E::Model>>>
where
    E: EntityTrait,
{
    let mut grouped: HashMap<Uuid, Vec<E::Model>> = HashMap::new();
    if count == 0 || groups.is_empty() {
        return Ok(grouped);
    }
    let newness = Alias::new("newness");
    let mut ranked = E::find()
        .filter(group.is_in(groups.iter().copied()))
        .into_query();
    ranked.expr_window_as(
        Expr::cust("ROW_NUMBER()"),
        WindowStatement::partition_by(group)
            .order_by(order, Order::Desc)
            .to_owned(),
        newness.clone(),
    );
    let newest = Query::select()
        .column(Asterisk)
        .from_subquery(ranked, Alias::new("ranked"))
        .and_where(Expr::col(newness).lte(count))
        .order_by(order, Order::Asc)
        .to_owned();
    let statement = db.get_database_backend().build(&newest);
    for row in E::find().from_raw_sql(statement).all(db).await? {
        grouped.entry(group_of(&row)).or_default().push(row);
    }
    Ok(grouped)
}

#[derive(Debug, Clone)]
pub struct Window {
    pub size: u64,
    /// `last/before`: the page ends at `cursor` instead of starting there.
    pub backward: bool,
    pub cursor: Option<Position>,
    pub descending: bool,
}

impl Window {
    /// Validates Relay arguments. `first` and `last` together are refused:
    /// their combination is ambiguous and no dashboard needs it.
    pub fn new(
        first: Option<i32>,
        after: Option<Position>,
        last: Option<i32>,
        before: Option<Position>,
        descending: bool,
    ) -> AppResult<Window> {
        let size = page_size;
        match (first, last, &after, &before) {
            (Some(_), Some(_), _, _) | (_, _, Some(_), Some(_)) => Err(AppError::BadUserInput(
                "Use either first/after (forward) or last/before (backward), not both".into(),
            )),
            (None, Some(last), None, _) => Ok(Window {
                size: size("last", last)?,
                backward: true,
                cursor: before,
                descending,
            }),
            (None, None, None, Some(_)) => Ok(Window {
                size: DEFAULT_PAGE_SIZE,
                backward: true,
                cursor: before,
                descending,
            }),
            (first, None, _, None) => Ok(Window {
                size: first.map_or(Ok(DEFAULT_PAGE_SIZE), |first| size("first", first))?,
                backward: false,
                cursor: after,
                descending,
            }),
            (_, Some(_), Some(_), None) => Err(AppError::BadUserInput(
                "last pages backward from before, not from after".into(),
            )),
            (Some(_), None, None, Some(_)) => Err(AppError::BadUserInput(
                "first pages forward from after, not from before".into(),
            )),
        }
    }
}

/// One page and whether rows exist beyond each end.
pub struct Page<M> {
    pub rows: Vec<M>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

/// Applies the window to `query` sorted by `sort` then `id`, and runs it.
pub async fn fetch_page<E>(
    db: &impl sea_orm::ConnectionTrait,
    query: Select<E>,
    sort: E::Column,
    id: E::Column,
    window: &Window,
) -> AppResult<Page<E::Model>>
where
    E: EntityTrait,
    E::Column: ColumnTrait + Copy,
{
    let rows = windowed(query, sort, id, window).all(db).await?;
    Ok(page_of(rows, window))
}

/// `query` limited to the window, sorted by `sort` then `id`, reading one
/// row beyond the page to learn whether more follow. Columns are qualified
/// with their table, so the query may join other tables.
pub fn windowed<E>(query: Select<E>, sort: E::Column, id: E::Column, window: &Window) -> Select<E>
where
    E: EntityTrait,
    E::Column: ColumnTrait + Copy,
{
    // Walking backward means reading the list in the opposite order.
    let reading_descending = window.descending != window.backward;
    let mut query = query;
    if let Some(position) = &window.cursor {
        query = query.filter(beyond(sort, id, position, reading_descending));
    }
    let order = if reading_descending {
        Order::Desc
    } else {
        Order::Asc
    };
    query
        .order_by(sort, order.clone())
        .order_by(id, order)
        .limit(window.size + 1)
}

/// The page from the rows a [`windowed`] query returned.
pub fn page_of<R>(mut rows: Vec<R>, window: &Window) -> Page<R> {
    let more = rows.len() as u64 > window.size;
    rows.truncate(window.size as usize);
    let has_cursor = window.cursor.is_some();
    if window.backward {
        rows.reverse();
        Page {
            rows,
            has_next_page: has_cursor,
            has_previous_page: more,
        }
    } else {
        Page {
            rows,
            has_next_page: more,
            has_previous_page: has_cursor,
        }
    }
}

/// Rows strictly after `position` in reading order.
fn beyond<C: ColumnTrait + Copy>(
    sort: C,
    id: C,
    position: &Position,
    descending: bool,
) -> SimpleExpr {
    let value: sea_orm::Value = position.value.clone().into();
    let (sort_column, id_column) = (
        Expr::col(sort.as_column_ref()),
        Expr::col(id.as_column_ref()),
    );
    if descending {
        sort_column
            .clone()
            .lt(value.clone())
            .or(sort_column.eq(value).and(id_column.lt(position.id)))
    } else {
        sort_column
            .clone()
            .gt(value.clone())
            .or(sort_column.eq(value).and(id_column.gt(position.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> Position {
        Position {
            value: SortValue::Text("a".into()),
            id: Uuid::now_v7(),
        }
    }

    #[test]
    fn windows_follow_relay_arguments() {
        let forward = Window::new(Some(10), Some(position()), None, None, false).expect("valid");
        assert!(!forward.backward);
        assert_eq!(forward.size, 10);
        let backward = Window::new(None, None, Some(5), Some(position()), true).expect("valid");
        assert!(backward.backward);
        assert_eq!(backward.size, 5);
        let default = Window::new(None, None, None, None, false).expect("valid");
        assert_eq!(default.size, DEFAULT_PAGE_SIZE);
    }

    #[test]
    fn bad_page_arguments_are_refused() {
        for window in [
            Window::new(Some(101), None, None, None, false),
            Window::new(Some(-1), None, None, None, false),
            Window::new(Some(1), None, Some(1), None, false),
            Window::new(None, Some(position()), None, Some(position()), false),
            Window::new(None, Some(position()), Some(3), None, false),
        ] {
            assert!(matches!(window, Err(AppError::BadUserInput(_))));
        }
    }
}
