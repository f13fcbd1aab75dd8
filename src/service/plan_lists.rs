//! The read side of plans: lists filtered, sorted and paged in one
//! statement with the rows they join ([`PlanJoins`]), their counts, and a
//! plan's events.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, JoinType, LikeExpr};
use sea_orm::{
    ColumnTrait, EntityTrait, IdenStatic, Iterable, PaginatorTrait, QueryFilter, QueryResult,
    QuerySelect, QueryTrait, Select,
};
use uuid::Uuid;

use super::changes::{drifted_condition, has_blocker};
use super::pagination::{Page, Position, SortValue, Window, newest_of_each, page_of, windowed};
use super::plan_rows::{JoinColumns, JoinedRows, PlanColumns};
use super::projects::member_projects;
use super::{Services, Viewer, parse_id};
use crate::error::{AppResult, Argument};
use crate::workflow::PlanStatus;
use entity::{feature, plan, plan_event, project, user};

/// Filters of `plans(...)`; every list is further limited to the viewer's projects.
#[derive(Debug, Default, Clone)]
pub struct PlanFilter {
    pub project: Option<Uuid>,
    pub feature: Option<Uuid>,
    pub statuses: Vec<PlanStatus>,
    pub claimed_by: Option<Uuid>,
    pub updated_since: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the title.
    pub search: Option<String>,
    /// Only plans whose spec is stale (`true`) or not (`false`); see `crate::drift`.
    pub drifted: Option<bool>,
    /// Only these priorities (none: any).
    pub priorities: Vec<i32>,
    /// Only plans that wait for an unfinished plan (`true`) or for none.
    pub blocked: Option<bool>,
    /// Only plans that wait for a FAILED plan (`true`) or for none: the
    /// plans a person must unblock by removing or replacing a dependency.
    pub blocked_by_failed: Option<bool>,
}

impl PlanFilter {
    /// The filter of a plan list's arguments as a client sends them (GraphQL
    /// `plans` and `Feature.plans`, MCP `list_plans`): ids still strings, a
    /// malformed one BAD_USER_INPUT naming its argument; statuses of any of
    /// the interfaces' status types. The rest is set on the result.
    pub fn parse<S: Into<PlanStatus>>(
        project_id: Option<&str>,
        feature_id: Option<&str>,
        claimed_by: Option<&str>,
        statuses: impl IntoIterator<Item = S>,
    ) -> AppResult<PlanFilter> {
        let id = |argument, value: Option<&str>| {
            value.map(|value| parse_id(argument, value)).transpose()
        };
        Ok(PlanFilter {
            project: id(Argument::ProjectId, project_id)?,
            feature: id(Argument::FeatureId, feature_id)?,
            claimed_by: id(Argument::ClaimedBy, claimed_by)?,
            statuses: distinct(statuses.into_iter().map(Into::into)),
            ..PlanFilter::default()
        })
    }

    /// Only plans with these priorities, each a priority plans can have: a
    /// value outside 0..=4 is refused rather than matched by nothing, and
    /// repeats are dropped, so the filter's statement stays small however
    /// long the list sent.
    pub fn with_priorities(self, priorities: Vec<i32>) -> AppResult<PlanFilter> {
        for priority in &priorities {
            super::fleet::validate_priority(*priority)?;
        }
        Ok(PlanFilter {
            priorities: distinct(priorities),
            ..self
        })
    }
}

/// `values` without repeats, in their first order.
fn distinct<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut kept = Vec::new();
    for value in values {
        if !kept.contains(&value) {
            kept.push(value);
        }
    }
    kept
}

/// The rows related to a page of plans that its fields will show. Fetched
/// in the page's own statement (LEFT JOINs): a dashboard page then costs one
/// round trip to the database instead of one per relation.
#[derive(Debug, Clone, Copy)]
pub struct PlanJoins {
    pub feature: JoinColumns,
    pub project: JoinColumns,
    pub claimer: JoinColumns,
}

/// What a page's statement reads besides its plans' keys.
#[derive(Debug, Clone, Copy)]
pub struct PageReads {
    /// The plans' columns (those their selected fields show).
    pub columns: PlanColumns,
    /// The related rows to join in.
    pub joins: PlanJoins,
    /// The length of the whole list (`totalCount`), counted by the same statement.
    pub count: bool,
}

impl PageReads {
    /// Every column of the plans and their list's length, nothing joined.
    pub const PLANS_AND_COUNT: PageReads = PageReads {
        columns: PlanColumns::ALL,
        joins: PlanJoins::NONE,
        count: true,
    };
}

/// A plan of a page with the related rows its [`PlanJoins`] asked for; a
/// related row shared by several plans of the page (their feature) is one
/// row shared between them.
pub struct PlanRow {
    pub plan: plan::Model,
    pub feature: Option<Arc<feature::Model>>,
    pub project: Option<Arc<project::Model>>,
    pub claimer: Option<Arc<user::Model>>,
}

/// Column prefixes of the joined tables; the double underscore keeps them
/// apart from the plan's own columns (`feature_id` is one).
const FEATURE_PREFIX: &str = "feature__";

const PROJECT_PREFIX: &str = "project__";

const CLAIMER_PREFIX: &str = "claimer__";

/// The column of a page's statement that counts the whole list.
const TOTAL_COLUMN: &str = "total__count";

impl PlanJoins {
    pub const NONE: PlanJoins = PlanJoins {
        feature: JoinColumns::NONE,
        project: JoinColumns::NONE,
        claimer: JoinColumns::NONE,
    };

    fn apply(self, mut query: Select<plan::Entity>) -> Select<plan::Entity> {
        if self.feature.joined() {
            query = also_select::<feature::Entity>(
                query,
                plan::Column::FeatureId,
                feature::Column::Id,
                FEATURE_PREFIX,
                self.feature,
            );
        }
        if self.project.joined() {
            query = also_select::<project::Entity>(
                query,
                plan::Column::ProjectId,
                project::Column::Id,
                PROJECT_PREFIX,
                self.project,
            );
        }
        if self.claimer.joined() {
            query = also_select::<user::Entity>(
                query,
                plan::Column::ClaimedBy,
                user::Column::Id,
                CLAIMER_PREFIX,
                self.claimer,
            );
        }
        query
    }

    /// Decodes the page's rows. A related row repeats on every plan that
    /// refers to it (fifty plans of one feature carry that feature fifty
    /// times); it is decoded once, with the first of them, and shared.
    fn decode(
        self,
        rows: &[QueryResult],
        columns: PlanColumns,
    ) -> Result<Vec<PlanRow>, sea_orm::DbErr> {
        let mut features = JoinedRows::new(FEATURE_PREFIX, self.feature);
        let mut projects = JoinedRows::new(PROJECT_PREFIX, self.project);
        let mut claimers = JoinedRows::new(CLAIMER_PREFIX, self.claimer);
        let plans = super::plan_rows::decode_plans(rows, columns)?;
        let mut page = Vec::with_capacity(plans.len());
        for (row, plan) in rows.iter().zip(plans) {
            page.push(PlanRow {
                feature: features.shared(Some(plan.feature_id), row)?,
                project: projects.shared(Some(plan.project_id), row)?,
                claimer: claimers.shared(plan.claimed_by, row)?,
                plan,
            });
        }
        Ok(page)
    }
}

/// Joins the row of `R` that `from` points to, under the alias `prefix`,
/// and selects its `columns` as `prefix` + column name.
fn also_select<R: EntityTrait>(
    query: Select<plan::Entity>,
    from: plan::Column,
    to: R::Column,
    prefix: &'static str,
    columns: JoinColumns,
) -> Select<plan::Entity> {
    let relation = plan::Entity::belongs_to(R::default())
        .from(from)
        .to(to)
        .into();
    let mut query = query.join_as(JoinType::LeftJoin, relation, Alias::new(prefix));
    for (_, column) in R::Column::iter()
        .enumerate()
        .filter(|(index, _)| columns.contains(*index))
    {
        query = query.column_as(
            Expr::col((Alias::new(prefix), column)),
            format!("{prefix}{}", column.as_str()),
        );
    }
    query
}

/// What a plan list is sorted by (then by id, so the order is total).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum PlanSort {
    #[default]
    CreatedAt,
    UpdatedAt,
    LastActivityAt,
    Title,
    /// Most urgent first (ascending), then by id: ids are time-ordered
    /// (UUID v7), so within a priority the oldest comes first.
    Priority,
}

impl PlanSort {
    fn column(self) -> plan::Column {
        match self {
            PlanSort::CreatedAt => plan::Column::CreatedAt,
            PlanSort::UpdatedAt => plan::Column::UpdatedAt,
            PlanSort::LastActivityAt => plan::Column::LastActivityAt,
            PlanSort::Title => plan::Column::Title,
            PlanSort::Priority => plan::Column::Priority,
        }
    }

    /// The position of `plan` in a list sorted this way.
    pub fn position(self, plan: &plan::Model) -> Position {
        let value = match self {
            PlanSort::CreatedAt => SortValue::Time(plan.created_at),
            PlanSort::UpdatedAt => SortValue::Time(plan.updated_at),
            PlanSort::LastActivityAt => SortValue::Time(plan.last_activity_at),
            PlanSort::Title => SortValue::Text(plan.title.clone()),
            PlanSort::Priority => SortValue::Int(i64::from(plan.priority)),
        };
        Position { value, id: plan.id }
    }
}

impl Services {
    /// One page of the viewer's plans matching `filter`, each with the
    /// related rows `joins` asks for, all in one statement. With `count`, a
    /// first page (no cursor, not `first: 0`) also says how many plans match
    /// the filter, counted in the same statement; otherwise the count is
    /// `None` and [`Services::count_plans`] gives it.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_plans(
        &self,
        viewer: &Viewer,
        filter: &PlanFilter,
        sort: PlanSort,
        window: &Window,
        reads: PageReads,
    ) -> AppResult<(Page<PlanRow>, Option<u64>)> {
        self.validate_search(filter.search.as_deref())?;
        // `plan::Entity::find()` would list every column, each an expression
        // to build and drop again; a page starts from none.
        static NO_COLUMNS: LazyLock<Select<plan::Entity>> =
            LazyLock::new(|| plan::Entity::find().select_only());
        let mut query = windowed(
            visible_plans(NO_COLUMNS.clone(), viewer, filter),
            sort.column(),
            plan::Column::Id,
            window,
        );
        // The keys, and the sort column for the rows' cursors.
        let columns = reads
            .columns
            .and(PlanColumns::KEYS)
            .and(PlanColumns::of(&[sort.column()]));
        query = query.columns(columns.iter());
        // The window function sees every matching row before the LIMIT;
        // past a cursor the page's rows are no longer all of them.
        let count = reads.count && window.cursor.is_none();
        if count {
            query = query.column_as(Expr::cust("COUNT(*) OVER ()"), TOTAL_COLUMN);
        }
        let rows = self
            .reads
            .all(&reads.joins.apply(query).into_query())
            .await?;
        let total = match rows.first() {
            Some(row) if count => {
                Some(u64::try_from(row.try_get::<i64>("", TOTAL_COLUMN)?).unwrap_or(0))
            }
            // An empty first page is an empty list, seen by this statement:
            // counting again would be another snapshot, which may already
            // hold a plan created since.
            None if count && window.size > 0 => Some(0),
            _ => None,
        };
        Ok((page_of(reads.joins.decode(&rows, columns)?, window), total))
    }

    /// Plans per status for each feature, in one query.
    pub async fn plan_counts_by_feature(
        &self,
        features: &[Uuid],
    ) -> AppResult<HashMap<Uuid, HashMap<PlanStatus, u64>>> {
        self.plan_counts(plan::Column::FeatureId, features).await
    }

    /// Plans per status for each project, in one query.
    pub async fn plan_counts_by_project(
        &self,
        projects: &[Uuid],
    ) -> AppResult<HashMap<Uuid, HashMap<PlanStatus, u64>>> {
        self.plan_counts(plan::Column::ProjectId, projects).await
    }

    async fn plan_counts(
        &self,
        group: plan::Column,
        ids: &[Uuid],
    ) -> AppResult<HashMap<Uuid, HashMap<PlanStatus, u64>>> {
        let rows: Vec<(Uuid, PlanStatus, i64)> = plan::Entity::find()
            .select_only()
            .column(group)
            .column(plan::Column::Status)
            .column_as(plan::Column::Id.count(), "count")
            .filter(group.is_in(ids.iter().copied()))
            .group_by(group)
            .group_by(plan::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut counts: HashMap<Uuid, HashMap<PlanStatus, u64>> = HashMap::new();
        for (id, status, count) in rows {
            counts
                .entry(id)
                .or_default()
                .insert(status, u64::try_from(count).unwrap_or(0));
        }
        Ok(counts)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn count_plans(&self, viewer: &Viewer, filter: &PlanFilter) -> AppResult<u64> {
        self.validate_search(filter.search.as_deref())?;
        Ok(visible_plans(plan::Entity::find(), viewer, filter)
            .count(&self.db)
            .await?)
    }

    /// The newest `count` events of each plan's audit trail, oldest first,
    /// in one query.
    pub async fn events_of(
        &self,
        plans: &[Uuid],
        count: u64,
    ) -> AppResult<HashMap<Uuid, Vec<plan_event::Model>>> {
        newest_of_each::<plan_event::Entity>(
            &self.db,
            plan_event::Column::PlanId,
            |event| event.plan_id,
            plan_event::Column::Id,
            plans,
            count,
        )
        .await
    }

    pub async fn plans_by_ids(&self, ids: &[Uuid]) -> AppResult<Vec<plan::Model>> {
        Ok(plan::Entity::find()
            .filter(plan::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?)
    }
}

/// `plans` narrowed to the plans `viewer` may see that match `filter`.
fn visible_plans(
    plans: Select<plan::Entity>,
    viewer: &Viewer,
    filter: &PlanFilter,
) -> Select<plan::Entity> {
    let mut query = plans.filter(plan::Column::ProjectId.in_subquery(member_projects(viewer.id())));
    if let Some(project) = filter.project {
        query = query.filter(plan::Column::ProjectId.eq(project));
    }
    if let Some(feature) = filter.feature {
        query = query.filter(plan::Column::FeatureId.eq(feature));
    }
    if !filter.statuses.is_empty() {
        query = query.filter(plan::Column::Status.is_in(filter.statuses.iter().copied()));
    }
    if let Some(claimer) = filter.claimed_by {
        query = query.filter(plan::Column::ClaimedBy.eq(claimer));
    }
    if let Some(drifted) = filter.drifted {
        query = query.filter(drifted_condition(drifted));
    }
    if !filter.priorities.is_empty() {
        query = query.filter(plan::Column::Priority.is_in(filter.priorities.iter().copied()));
    }
    for (wanted, failed_only) in [(filter.blocked, false), (filter.blocked_by_failed, true)] {
        if let Some(wanted) = wanted {
            let blocked = has_blocker(Expr::col((plan::Entity, plan::Column::Id)), failed_only);
            query = query.filter(if wanted { blocked } else { blocked.not() });
        }
    }
    if let Some(since) = filter.updated_since {
        query = query.filter(plan::Column::UpdatedAt.gte(since));
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
    {
        // Lower-cased on both sides: SQLite's LIKE ignores ASCII case,
        // PostgreSQL's does not; this way both match the same rows.
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = LikeExpr::new(format!("%{escaped}%")).escape('\\');
        let title = Expr::col(plan::Column::Title.as_column_ref());
        query = query.filter(Func::lower(title).like(pattern));
    }
    query
}
