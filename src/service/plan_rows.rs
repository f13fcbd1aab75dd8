//! Decoding a page of plans, and the rows its statement joined in, by
//! column position.
//!
//! sea-orm decodes a model by column name: each of a plan's columns is looked
//! up in the row by hashing its name (two or three times per value), and every
//! NULL formats an error message on its way to `None`. On a dashboard page of
//! 50 plans that was a large share of the server's CPU per request (perf,
//! see docs/benchmarks.md). Here the positions are found once per page, by name,
//! and each value is decoded straight from sqlx with the same Rust type
//! sea-orm would have used, so both databases read exactly what sea-orm reads.
//!
//! sqlx's `try_get` also compares the column's type with the Rust type on
//! every non-null value, a large part of the decoding. A result set has one type
//! per column, so once a column's value passed that check, its later rows
//! decode with `try_get_unchecked`: the same checks, made once per page.
//!
//! A page selects only the columns its fields read ([`PlanColumns`]); the
//! others are left at their type's default in the decoded models, which
//! those fields never look at. The feature, project and claimer joined in
//! ([`JoinedRows`]) are decoded whole, once per distinct row.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::error::UnexpectedNullError;
use sea_orm::sqlx::postgres::{PgRow, PgValueFormat};
use sea_orm::sqlx::sqlite::SqliteRow;
use sea_orm::sqlx::{Column, ColumnIndex, Decode, Row, Type, ValueRef};
use sea_orm::{ActiveEnum, DbErr, FromQueryResult, IdenStatic, Iterable, QueryResult};

use uuid::Uuid;

use entity::enums::{PlanStatus, ReviewPolicy};
use entity::{api_key, feature, plan, project, user};

/// A set of the plan's columns, one bit per `plan::Column` (24 of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanColumns(u64);

impl PlanColumns {
    /// Every column.
    pub const ALL: PlanColumns = PlanColumns(u64::MAX);
    /// What every page reads: the keys its rows and their relations are
    /// found by, and the status every rule looks at.
    pub const KEYS: PlanColumns = PlanColumns::of(&[
        plan::Column::Id,
        plan::Column::ProjectId,
        plan::Column::FeatureId,
        plan::Column::Status,
    ]);

    pub const fn of(columns: &[plan::Column]) -> PlanColumns {
        let mut set = 0;
        let mut index = 0;
        while index < columns.len() {
            set |= 1 << columns[index] as u64;
            index += 1;
        }
        PlanColumns(set)
    }

    #[must_use]
    pub const fn and(self, other: PlanColumns) -> PlanColumns {
        PlanColumns(self.0 | other.0)
    }

    pub fn contains(self, column: plan::Column) -> bool {
        self.0 & (1 << column as u64) != 0
    }

    /// The columns in the set, in the table's order.
    pub fn iter(self) -> impl Iterator<Item = plan::Column> {
        plan::Column::iter().filter(move |column| self.contains(*column))
    }
}

/// The columns of a table a page joins in (`PlanJoins`), one bit per
/// column in the table's order: none (not joined), some, or all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinColumns(u64);

impl JoinColumns {
    /// Not joined.
    pub const NONE: JoinColumns = JoinColumns(0);
    /// Every column: a row that can stand for the table's row anywhere.
    pub const ALL: JoinColumns = JoinColumns(u64::MAX);

    /// The columns of `C` that `wanted` accepts.
    pub fn of<C: Iterable>(mut wanted: impl FnMut(C) -> bool) -> JoinColumns {
        let set = C::iter()
            .enumerate()
            .filter_map(|(index, column)| wanted(column).then_some(index))
            .fold(0, |set, index| set | 1 << index);
        JoinColumns(set)
    }

    pub fn joined(self) -> bool {
        self != JoinColumns::NONE
    }

    /// Whether the column at `index` in the table's order is selected.
    pub fn contains(self, index: usize) -> bool {
        self.0 & 1 << index != 0
    }
}

/// Where each column of one table is in the rows of one result set, indexed
/// by the table's `Column as usize`; `None` for one the page did not select.
pub struct Positions(Vec<Option<usize>>);

impl Positions {
    /// The positions of the columns named `prefix` + each of `wanted`'s
    /// names that the page selected (`true`); one of those missing is an
    /// error.
    fn of<'a, C: Column>(
        columns: &[C],
        prefix: &str,
        wanted: impl Iterator<Item = (&'a str, bool)>,
    ) -> Result<Positions, DbErr> {
        // A table's columns are selected in its order, so each search
        // starts after the last column found.
        let mut from = 0;
        wanted
            .map(|(name, selected)| {
                if !selected {
                    return Ok(None);
                }
                let named = |column: &C| column.name().strip_prefix(prefix) == Some(name);
                let position = columns[from..]
                    .iter()
                    .position(named)
                    .map(|position| from + position)
                    .or_else(|| columns[..from].iter().position(named));
                if let Some(position) = position {
                    from = position + 1;
                }
                if position.is_none() {
                    return Err(DbErr::Type(format!(
                        "the plan page has no column `{prefix}{name}`"
                    )));
                }
                Ok(position)
            })
            .collect::<Result<_, _>>()
            .map(Positions)
    }

    fn at(&self, column: usize) -> Option<usize> {
        self.0[column]
    }
}

/// The columns of one table whose type was checked against the Rust type,
/// one bit per `Column as usize` (up to 64).
#[derive(Default)]
pub struct Checked(u64);

/// The plans of a page's rows (their `selected` columns; joined ones are
/// read by the caller). Rows not from sqlx's PostgreSQL or SQLite drivers
/// fall back to sea-orm's decoding, which needs every column.
pub fn decode_plans(
    rows: &[QueryResult],
    selected: PlanColumns,
) -> Result<Vec<plan::Model>, DbErr> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    if let Some(row) = first.try_as_pg_row() {
        return decode_all(rows, row, selected, QueryResult::try_as_pg_row, decode_pg);
    }
    if let Some(row) = first.try_as_sqlite_row() {
        return decode_all(
            rows,
            row,
            selected,
            QueryResult::try_as_sqlite_row,
            decode_sqlite,
        );
    }
    rows.iter()
        .map(|row| sea_orm::FromQueryResult::from_query_result(row, ""))
        .collect()
}

/// Every row through `decode`, with the positions read off the `first`;
/// `checked` holds the columns whose type was checked against the Rust type.
fn decode_all<R: Row>(
    rows: &[QueryResult],
    first: &R,
    selected: PlanColumns,
    driver_row: impl Fn(&QueryResult) -> Option<&R>,
    decode: fn(&R, &Positions, &mut Checked) -> Result<plan::Model, DbErr>,
) -> Result<Vec<plan::Model>, DbErr> {
    let wanted = plan::Column::iter().map(|column| (column.as_str(), selected.contains(column)));
    let positions = Positions::of(first.columns(), "", wanted)?;
    let mut checked = Checked::default();
    // Collected by hand: `collect` into a `Result` cannot size the vector
    // up front and would copy the large models at each doubling.
    let mut plans = Vec::with_capacity(rows.len());
    for row in rows {
        let row = driver_row(row)
            .ok_or_else(|| DbErr::Type("a plan page mixes database drivers".into()))?;
        plans.push(decode(row, &positions, &mut checked)?);
    }
    Ok(plans)
}

fn status(value: String) -> Result<PlanStatus, DbErr> {
    PlanStatus::try_from_value(&value)
}

/// A project's review policy; its default when the page did not read it
/// (the `Project` fields that show it read every column).
fn review_policy(value: String) -> Result<ReviewPolicy, DbErr> {
    if value.is_empty() {
        return Ok(ReviewPolicy::default());
    }
    ReviewPolicy::try_from_value(&value)
}

fn decode_error(error: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Type(format!("could not decode a plan row: {error}"))
}

/// The value of `column` (`Column as usize`) in `row`, its type checked as
/// sqlx's `try_get` does until one non-null value of the column passed; the
/// type's default for a column the page did not select.
fn read<'r, R, T>(
    row: &'r R,
    positions: &Positions,
    checked: &mut Checked,
    column: usize,
) -> Result<T, DbErr>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database> + Default,
{
    read_with(row, positions, checked, column, |row, index| {
        row.try_get_unchecked(index)
    })
}

/// [`read`], with `unchecked` decoding the values that follow the first one
/// whose type passed.
fn read_with<'r, R, T>(
    row: &'r R,
    positions: &Positions,
    checked: &mut Checked,
    column: usize,
    unchecked: impl FnOnce(&'r R, usize) -> Result<T, sea_orm::sqlx::Error>,
) -> Result<T, DbErr>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database> + Default,
{
    let Some(index) = positions.at(column) else {
        return Ok(T::default());
    };
    let bit = 1 << column;
    if checked.0 & bit != 0 {
        return unchecked(row, index).map_err(decode_error);
    }
    let value = row.try_get(index).map_err(decode_error)?;
    if !row.try_get_raw(index).map_err(decode_error)?.is_null() {
        checked.0 |= bit;
    }
    Ok(value)
}

/// A nullable timestamp column, as [`read`] reads it, through
/// [`Timestamps`] once the column's type was checked.
fn read_time<R>(
    row: &R,
    positions: &Positions,
    checked: &mut Checked,
    column: usize,
) -> Result<Option<DateTime<Utc>>, DbErr>
where
    R: Timestamps,
    usize: ColumnIndex<R>,
    for<'r> Option<DateTime<Utc>>: Decode<'r, R::Database> + Type<R::Database>,
{
    read_with(row, positions, checked, column, R::timestamp)
}

/// A timestamp column that is never null, the same way.
fn read_required_time<R>(
    row: &R,
    positions: &Positions,
    checked: &mut Checked,
    column: usize,
) -> Result<DateTime<Utc>, DbErr>
where
    R: Timestamps,
    usize: ColumnIndex<R>,
    for<'r> DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    read_with(row, positions, checked, column, |row, index| {
        row.timestamp(index)?
            .ok_or_else(|| sea_orm::sqlx::Error::Decode(Box::new(UnexpectedNullError)))
    })
}

/// Decoding a timestamp whose column type was checked.
pub trait Timestamps: Row {
    fn timestamp(&self, index: usize) -> Result<Option<DateTime<Utc>>, sea_orm::sqlx::Error>;
}

impl Timestamps for PgRow {
    /// sqlx decodes PostgreSQL's binary timestamp (microseconds since
    /// 2000-01-01) through a fixed offset, a naive date-time and chrono's
    /// date arithmetic: the dearest value of a page. It is one addition from
    /// the Unix epoch. Anything else (text, out of chrono's range) goes
    /// through sqlx.
    fn timestamp(&self, index: usize) -> Result<Option<DateTime<Utc>>, sea_orm::sqlx::Error> {
        /// 2000-01-01T00:00:00Z in microseconds since the Unix epoch.
        const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
        let value = self.try_get_raw(index)?;
        if value.is_null() {
            return Ok(None);
        }
        if value.format() == PgValueFormat::Binary
            && let Some(instant) = value
                .as_bytes()
                .ok()
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .and_then(|bytes| i64::from_be_bytes(bytes).checked_add(POSTGRES_EPOCH_MICROS))
                .and_then(DateTime::from_timestamp_micros)
        {
            return Ok(Some(instant));
        }
        self.try_get_unchecked(index)
    }
}

impl Timestamps for SqliteRow {
    fn timestamp(&self, index: usize) -> Result<Option<DateTime<Utc>>, sea_orm::sqlx::Error> {
        self.try_get_unchecked(index)
    }
}

/// The same body for both drivers' row types (sqlx's traits differ per
/// database, so a generic function would need a bound per column type).
macro_rules! plan_decoder {
    ($name:ident, $row:ty) => {
        fn $name(
            row: &$row,
            positions: &Positions,
            checked: &mut Checked,
        ) -> Result<plan::Model, DbErr> {
            use plan::Column as C;
            Ok(plan::Model {
                id: read(row, positions, checked, C::Id as usize)?,
                project_id: read(row, positions, checked, C::ProjectId as usize)?,
                feature_id: read(row, positions, checked, C::FeatureId as usize)?,
                title: read(row, positions, checked, C::Title as usize)?,
                description: read(row, positions, checked, C::Description as usize)?,
                status: status(read(row, positions, checked, C::Status as usize)?)?,
                spec_key: read(row, positions, checked, C::SpecKey as usize)?,
                spec_sha256: read(row, positions, checked, C::SpecSha256 as usize)?,
                spec_size: read(row, positions, checked, C::SpecSize as usize)?,
                work_artifacts: read(row, positions, checked, C::WorkArtifacts as usize)?,
                claimed_by: read(row, positions, checked, C::ClaimedBy as usize)?,
                claimed_at: read_time(row, positions, checked, C::ClaimedAt as usize)?,
                submitted_by: read(row, positions, checked, C::SubmittedBy as usize)?,
                implemented_version: read(row, positions, checked, C::ImplementedVersion as usize)?,
                last_activity_at: read_required_time(
                    row,
                    positions,
                    checked,
                    C::LastActivityAt as usize,
                )?,
                created_by: read(row, positions, checked, C::CreatedBy as usize)?,
                created_at: read_required_time(row, positions, checked, C::CreatedAt as usize)?,
                updated_at: read_required_time(row, positions, checked, C::UpdatedAt as usize)?,
                based_on_version: read(row, positions, checked, C::BasedOnVersion as usize)?,
                based_on_spec_key: read(row, positions, checked, C::BasedOnSpecKey as usize)?,
                priority: read(row, positions, checked, C::Priority as usize)?,
                claim_generation: read(row, positions, checked, C::ClaimGeneration as usize)?,
                lease_seconds: read(row, positions, checked, C::LeaseSeconds as usize)?,
                lease_expires_at: read_time(row, positions, checked, C::LeaseExpiresAt as usize)?,
            })
        }
    };
}

plan_decoder!(decode_pg, PgRow);
plan_decoder!(decode_sqlite, SqliteRow);

/// A row a plan page's statement joins in under a prefix (`PlanJoins`).
pub trait JoinedRow: FromQueryResult {
    type Column: IdenStatic + Iterable + Copy;
    /// `Self::Column::Id as usize`: a row whose id is null was not found.
    const ID: usize;
    fn decode_pg(row: &PgRow, positions: &Positions, checked: &mut Checked) -> Result<Self, DbErr>;
    fn decode_sqlite(
        row: &SqliteRow,
        positions: &Positions,
        checked: &mut Checked,
    ) -> Result<Self, DbErr>;
}

/// Implements [`JoinedRow`] for a model, each field read from its column
/// (the struct literal makes the compiler name any field left out);
/// `field: Column => convert` reads the column's text and converts it.
macro_rules! joined_row {
    ($model:ty, $column:ident, { $($field:ident: $variant:ident $(=> $convert:path)?),* $(,)? }) => {
        impl JoinedRow for $model {
            type Column = $column::Column;
            const ID: usize = $column::Column::Id as usize;

            fn decode_pg(
                row: &PgRow,
                positions: &Positions,
                checked: &mut Checked,
            ) -> Result<Self, DbErr> {
                Ok(Self {
                    $($field: {
                        let value = read(row, positions, checked, $column::Column::$variant as usize)?;
                        $(let value = $convert(value)?;)?
                        value
                    },)*
                })
            }

            fn decode_sqlite(
                row: &SqliteRow,
                positions: &Positions,
                checked: &mut Checked,
            ) -> Result<Self, DbErr> {
                Ok(Self {
                    $($field: {
                        let value = read(row, positions, checked, $column::Column::$variant as usize)?;
                        $(let value = $convert(value)?;)?
                        value
                    },)*
                })
            }
        }
    };
}

joined_row!(feature::Model, feature, {
    id: Id,
    project_id: ProjectId,
    title: Title,
    description: Description,
    current_version: CurrentVersion,
    spec_key: SpecKey,
    created_at: CreatedAt,
    updated_at: UpdatedAt,
});
joined_row!(project::Model, project, {
    id: Id,
    name: Name,
    description: Description,
    created_by: CreatedBy,
    created_at: CreatedAt,
    updated_at: UpdatedAt,
    review_policy: ReviewPolicy => review_policy,
});
joined_row!(api_key::Model, api_key, {
    id: Id,
    user_id: UserId,
    label: Label,
    prefix: Prefix,
    secret_hash: SecretHash,
    created_at: CreatedAt,
    last_used_at: LastUsedAt,
    revoked_at: RevokedAt,
});
joined_row!(user::Model, user, {
    id: Id,
    email: Email,
    display_name: DisplayName,
    is_admin: IsAdmin,
    created_at: CreatedAt,
});

/// The rows of `M` that a page's statement joined in under `prefix`,
/// decoded by position (found once per page by name, as a page's plans)
/// and once per distinct row: fifty plans of one feature share it. The
/// columns the page did not select hold their type's default.
pub struct JoinedRows<M> {
    prefix: &'static str,
    columns: JoinColumns,
    positions: Option<Positions>,
    checked: Checked,
    /// A page refers to few distinct related rows (one feature, one
    /// project, a few claimers): a list searched from the most recent
    /// beats hashing each row's key.
    decoded: Vec<(Uuid, Arc<M>)>,
}

impl<M: JoinedRow> JoinedRows<M> {
    pub fn new(prefix: &'static str, columns: JoinColumns) -> JoinedRows<M> {
        JoinedRows {
            prefix,
            columns,
            positions: None,
            checked: Checked::default(),
            decoded: Vec::new(),
        }
    }

    /// The `M` with this `id` joined to `row`, decoded if it is the first
    /// row to refer to it; `None` without an id, when the page does not
    /// join `M`, or when the join found none.
    pub fn shared(&mut self, id: Option<Uuid>, row: &QueryResult) -> Result<Option<Arc<M>>, DbErr> {
        let Some(id) = id.filter(|_| self.columns.joined()) else {
            return Ok(None);
        };
        if let Some((_, model)) = self.decoded.iter().rev().find(|(seen, _)| *seen == id) {
            return Ok(Some(Arc::clone(model)));
        }
        let Some(model) = self.decode(row)? else {
            return Ok(None);
        };
        let model = Arc::new(model);
        self.decoded.push((id, Arc::clone(&model)));
        Ok(Some(model))
    }

    /// The `M` joined to `row`; `None` when the join found none. Rows not
    /// from sqlx's PostgreSQL or SQLite drivers go through sea-orm.
    pub fn decode(&mut self, row: &QueryResult) -> Result<Option<M>, DbErr> {
        if let Some(row) = row.try_as_pg_row() {
            return self.decode_with(row, M::decode_pg);
        }
        if let Some(row) = row.try_as_sqlite_row() {
            return self.decode_with(row, M::decode_sqlite);
        }
        M::from_query_result_optional(row, self.prefix)
    }

    fn decode_with<R: Row>(
        &mut self,
        row: &R,
        decode: fn(&R, &Positions, &mut Checked) -> Result<M, DbErr>,
    ) -> Result<Option<M>, DbErr>
    where
        usize: ColumnIndex<R>,
    {
        let positions = match &mut self.positions {
            Some(positions) => positions,
            empty => {
                let columns = self.columns;
                let wanted = M::Column::iter()
                    .enumerate()
                    .map(|(index, column)| (column.as_str(), columns.contains(index)));
                empty.insert(Positions::of(row.columns(), self.prefix, wanted)?)
            }
        };
        let Some(id) = positions.at(M::ID) else {
            return Ok(None);
        };
        if row.try_get_raw(id).map_err(decode_error)?.is_null() {
            return Ok(None);
        }
        decode(row, positions, &mut self.checked).map(Some)
    }
}
