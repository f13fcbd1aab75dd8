//! Relay-style connections: opaque cursors, `first/after` and `last/before`,
//! stable ordering with the id as tie-breaker, and a `totalCount` computed only
//! when a client asks for it.

use std::sync::Arc;

use async_graphql::{Context, Enum, InputObject, Object, OutputType, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::loaders::{
    FeatureId, FeaturePlanCounts, FeatureVersions, ProjectId, SpecKey, UserId, prime,
};
use super::types::{Feature, Plan};
use super::{loaders, services, viewer};
use crate::error::{AppError, AppResult};
use crate::service::pagination::{Page, Position, SortValue, Window};
use crate::service::plans::{PlanFilter, PlanJoins, PlanRow, PlanSort};
use crate::service::{parse_rfc3339, rfc3339};
use entity::feature;

/// Sort keys of plan lists.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
#[graphql(remote = "crate::service::plans::PlanSort")]
pub enum PlanOrderField {
    /// When the plan was created (the default).
    #[default]
    CreatedAt,
    /// When anything about the plan last changed.
    UpdatedAt,
    /// Last claimer activity.
    LastActivityAt,
    /// Title, alphabetically.
    Title,
}

/// Sort direction.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderDirection {
    /// Smallest first (the default).
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// How to order a plan list; ties are broken by id, so the order is stable.
#[derive(InputObject, Clone, Copy, Default)]
pub struct PlanOrder {
    /// What to sort by.
    #[graphql(default)]
    pub field: PlanOrderField,
    /// Which way.
    #[graphql(default)]
    pub direction: OrderDirection,
}

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

fn sort_name(sort: PlanSort) -> &'static str {
    match sort {
        PlanSort::CreatedAt => "created_at",
        PlanSort::UpdatedAt => "updated_at",
        PlanSort::LastActivityAt => "last_activity_at",
        PlanSort::Title => "title",
    }
}

fn encode_cursor(sort: &str, position: &Position) -> String {
    let value = match &position.value {
        SortValue::Time(time) => rfc3339(*time),
        SortValue::Text(text) => text.clone(),
    };
    let data = CursorData {
        sort: sort.to_owned(),
        value,
        id: position.id,
    };
    // Serializing a struct of strings and a UUID cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&data).unwrap_or_default())
}

fn decode_cursor(argument: &str, cursor: &str, sort: &str, textual: bool) -> AppResult<Position> {
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
    let value = if textual {
        SortValue::Text(data.value)
    } else {
        SortValue::Time(parse_rfc3339(&data.value).ok_or_else(|| invalid("malformed"))?)
    };
    Ok(Position { value, id: data.id })
}

fn window(
    arguments: PageArguments,
    sort: &str,
    textual: bool,
    descending: bool,
) -> AppResult<Window> {
    let decode = |argument: &str, cursor: Option<String>| {
        cursor
            .map(|cursor| decode_cursor(argument, &cursor, sort, textual))
            .transpose()
    };
    let after = decode("after", arguments.after)?;
    let before = decode("before", arguments.before)?;
    Window::new(arguments.first, after, arguments.last, before, descending)
}

/// Where `totalCount` comes from, evaluated only when selected.
enum Total {
    Plans(PlanFilter),
    Features(Uuid),
}

/// A position in a list.
#[derive(SimpleObject)]
#[graphql(
    concrete(name = "PlanEdge", params(Plan)),
    concrete(name = "FeatureEdge", params(Feature))
)]
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
    total: Total,
}

impl<N> Connection<N> {
    fn from_page<M>(
        page: Page<M>,
        total: Total,
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
#[Object(
    concrete(name = "PlanConnection", params(Plan)),
    concrete(name = "FeatureConnection", params(Feature))
)]
impl<N: OutputType + Clone> Connection<N>
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
    async fn nodes(&self) -> Vec<&N> {
        self.items.iter().map(|(_, node)| node).collect()
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
        match &self.total {
            Total::Plans(filter) => services(ctx).count_plans(viewer(ctx)?, filter).await,
            Total::Features(project) => services(ctx).count_features(*project).await,
        }
    }
}

pub type PlanConnection = Connection<Plan>;
pub type FeatureConnection = Connection<Feature>;

/// One page of the viewer's plans matching `filter`.
pub async fn load_plans(
    ctx: &Context<'_>,
    filter: PlanFilter,
    order: PlanOrder,
    arguments: PageArguments,
) -> AppResult<PlanConnection> {
    let sort: PlanSort = order.field.into();
    let name = sort_name(sort);
    let descending = order.direction == OrderDirection::Desc;
    let window = window(arguments, name, sort == PlanSort::Title, descending)?;
    let joins = PlanJoins {
        feature: row_field_selected(ctx, "feature"),
        project: row_field_selected(ctx, "project"),
        claimer: row_field_selected(ctx, "claimedBy"),
    };
    let mut page = services(ctx)
        .list_plans(viewer(ctx)?, &filter, sort, &window, joins)
        .await?;
    prime_plan_rows(ctx, &mut page.rows).await?;
    Ok(Connection::from_page(
        page,
        Total::Plans(filter),
        name,
        |row| sort.position(&row.plan),
        |row| Plan(row.plan),
    ))
}

/// One page of a project's features, oldest first.
pub async fn load_features(
    ctx: &Context<'_>,
    project: Uuid,
    arguments: PageArguments,
) -> AppResult<FeatureConnection> {
    const SORT: &str = "feature_created_at";
    let window = window(arguments, SORT, false, false)?;
    let page = services(ctx).list_features(project, &window).await?;
    prime_feature_rows(ctx, &page.rows).await?;
    Ok(Connection::from_page(
        page,
        Total::Features(project),
        SORT,
        |feature| Position {
            value: SortValue::Time(feature.created_at),
            id: feature.id,
        },
        Feature::from,
    ))
}

/// Whether the client selected `field` on the rows of this connection.
fn row_field_selected(ctx: &Context<'_>, field: &str) -> bool {
    let look = ctx.look_ahead();
    look.field("nodes").field(field).exists()
        || look.field("edges").field("node").field(field).exists()
}

/// The keys a selected field needs, collected before any await: iterators
/// borrowing the rows would keep the resolver's future from being `Send`.
fn keys_if<M, K>(selected: bool, rows: &[M], key: impl Fn(&M) -> K) -> Vec<K> {
    if selected {
        rows.iter().map(key).collect()
    } else {
        Vec::new()
    }
}

/// Puts everything the selected row fields need into the request's loader
/// caches, so that the rows' fields are answered from memory: what the page
/// statement joined is fed in as it is, the rest is loaded in one query per
/// relation, all at once. Without this the fields still batch through the
/// loaders, but each batch first waits 1 ms for more keys and a
/// slow-to-resolve page could split into several queries; priming makes the
/// statement count independent of page size and timing, and costs no waiting.
async fn prime_plan_rows(ctx: &Context<'_>, rows: &mut [PlanRow]) -> AppResult<()> {
    let loaders = loaders(ctx);
    let db = &loaders.db;
    db.feed_many(rows.iter_mut().filter_map(|row| {
        let feature = row.feature.take()?;
        Some((FeatureId(feature.id), Arc::new(feature)))
    }))
    .await;
    db.feed_many(rows.iter_mut().filter_map(|row| {
        let project = row.project.take()?;
        Some((ProjectId(project.id), Arc::new(project)))
    }))
    .await;
    db.feed_many(rows.iter_mut().filter_map(|row| {
        let claimer = row.claimer.take()?;
        Some((UserId(claimer.id), Arc::new(claimer)))
    }))
    .await;
    let selected = |field| row_field_selected(ctx, field);
    let mut users = keys_if(selected("submittedBy"), rows, |row| row.plan.submitted_by);
    users.extend(keys_if(selected("createdBy"), rows, |row| {
        Some(row.plan.created_by)
    }));
    let users: Vec<UserId> = users.into_iter().flatten().map(UserId).collect();
    let specs = keys_if(selected("spec"), rows, |row| {
        SpecKey(row.plan.spec_key.clone())
    });
    let (users, ()) = futures::join!(
        prime(db, users),
        // A store outage must fail only the `spec` fields (they ask again
        // and report it at their paths), never the page.
        async {
            let _ = loaders.prime_specs(specs).await;
        }
    );
    users
}

async fn prime_feature_rows(ctx: &Context<'_>, features: &[feature::Model]) -> AppResult<()> {
    let loaders = loaders(ctx);
    let selected = |field| row_field_selected(ctx, field);
    let counts = keys_if(selected("planCounts"), features, |feature| {
        FeaturePlanCounts(feature.id)
    });
    let versions = keys_if(selected("versions"), features, |feature| {
        FeatureVersions(feature.id)
    });
    let specs = keys_if(selected("spec"), features, |feature| {
        SpecKey(feature.spec_key.clone())
    });
    let (counts, versions, ()) = futures::join!(
        prime(&loaders.db, counts),
        prime(&loaders.db, versions),
        async {
            let _ = loaders.prime_specs(specs).await;
        }
    );
    counts.and(versions)
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
            decode_cursor("after", &cursor, "created_at", false).expect("valid"),
            position
        );
        assert!(decode_cursor("after", &cursor, "updated_at", false).is_err());
        assert!(decode_cursor("after", "not a cursor", "created_at", false).is_err());
        let titled = Position {
            value: SortValue::Text("Ünïcode title".into()),
            id: Uuid::now_v7(),
        };
        let cursor = encode_cursor("title", &titled);
        assert_eq!(
            decode_cursor("before", &cursor, "title", true).expect("valid"),
            titled
        );
    }
}
