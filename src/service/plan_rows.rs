//! Decoding a page of plans by column position.
//!
//! sea-orm decodes a model by column name: each of a plan's columns is looked
//! up in the row by hashing its name (two or three times per value), and every
//! NULL formats an error message on its way to `None`. On a dashboard page of
//! 50 plans that was a fifth of the server's CPU per request (perf, see
//! docs/benchmarks.md). Here the positions are found once per page, by name,
//! and each value is decoded straight from sqlx with the same Rust type
//! sea-orm would have used, so both databases read exactly what sea-orm reads.
//!
//! sqlx's `try_get` also compares the column's type with the Rust type on
//! every non-null value, a fifth of the decoding. A result set has one type
//! per column, so once a column's value passed that check, its later rows
//! decode with `try_get_unchecked`: the same checks, made once per page.
//!
//! A page selects only the columns its fields read ([`PlanColumns`]); the
//! others are left at their type's default in the decoded models, which
//! those fields never look at.

use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::sqlite::SqliteRow;
use sea_orm::sqlx::{Column, ColumnIndex, Decode, Row, Type, ValueRef};
use sea_orm::{ActiveEnum, DbErr, Iterable, QueryResult};

use entity::enums::PlanStatus;
use entity::plan;

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

/// Where each of the plan's own columns is in the rows of one result set,
/// indexed by `plan::Column as usize`; `None` for one the page did not select.
struct Positions(Vec<Option<usize>>);

impl Positions {
    fn of<C: Column>(columns: &[C], selected: PlanColumns) -> Result<Positions, DbErr> {
        plan::Column::iter()
            .map(|wanted| {
                let name = sea_orm::IdenStatic::as_str(&wanted);
                let position = columns.iter().position(|column| column.name() == name);
                if position.is_none() && selected.contains(wanted) {
                    return Err(DbErr::Type(format!("the plan page has no column `{name}`")));
                }
                Ok(position)
            })
            .collect::<Result<_, _>>()
            .map(Positions)
    }

    fn at(&self, column: plan::Column) -> Option<usize> {
        self.0[column as usize]
    }
}

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
    decode: fn(&R, &Positions, &mut PlanColumns) -> Result<plan::Model, DbErr>,
) -> Result<Vec<plan::Model>, DbErr> {
    let positions = Positions::of(first.columns(), selected)?;
    let mut checked = PlanColumns::default();
    rows.iter()
        .map(|row| match driver_row(row) {
            Some(row) => decode(row, &positions, &mut checked),
            None => Err(DbErr::Type("a plan page mixes database drivers".into())),
        })
        .collect()
}

fn status(value: String) -> Result<PlanStatus, DbErr> {
    PlanStatus::try_from_value(&value)
}

fn decode_error(error: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Type(format!("could not decode a plan row: {error}"))
}

/// The value of `column` in `row`, its type checked as sqlx's `try_get`
/// does until one non-null value of the column passed; the type's default
/// for a column the page did not select.
fn read<'r, R, T>(
    row: &'r R,
    positions: &Positions,
    checked: &mut PlanColumns,
    column: plan::Column,
) -> Result<T, DbErr>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database> + Default,
{
    let Some(index) = positions.at(column) else {
        return Ok(T::default());
    };
    if checked.contains(column) {
        return row.try_get_unchecked(index).map_err(decode_error);
    }
    let value = row.try_get(index).map_err(decode_error)?;
    if !row.try_get_raw(index).map_err(decode_error)?.is_null() {
        *checked = checked.and(PlanColumns::of(&[column]));
    }
    Ok(value)
}

/// The same body for both drivers' row types (sqlx's traits differ per
/// database, so a generic function would need a bound per column type).
macro_rules! plan_decoder {
    ($name:ident, $row:ty) => {
        fn $name(
            row: &$row,
            positions: &Positions,
            checked: &mut PlanColumns,
        ) -> Result<plan::Model, DbErr> {
            use plan::Column as C;
            Ok(plan::Model {
                id: read(row, positions, checked, C::Id)?,
                project_id: read(row, positions, checked, C::ProjectId)?,
                feature_id: read(row, positions, checked, C::FeatureId)?,
                title: read(row, positions, checked, C::Title)?,
                description: read(row, positions, checked, C::Description)?,
                status: status(read(row, positions, checked, C::Status)?)?,
                spec_key: read(row, positions, checked, C::SpecKey)?,
                spec_sha256: read(row, positions, checked, C::SpecSha256)?,
                spec_size: read(row, positions, checked, C::SpecSize)?,
                work_artifacts: read(row, positions, checked, C::WorkArtifacts)?,
                claimed_by: read(row, positions, checked, C::ClaimedBy)?,
                claimed_at: read(row, positions, checked, C::ClaimedAt)?,
                submitted_by: read(row, positions, checked, C::SubmittedBy)?,
                implemented_version: read(row, positions, checked, C::ImplementedVersion)?,
                last_activity_at: read(row, positions, checked, C::LastActivityAt)?,
                created_by: read(row, positions, checked, C::CreatedBy)?,
                created_at: read(row, positions, checked, C::CreatedAt)?,
                updated_at: read(row, positions, checked, C::UpdatedAt)?,
                based_on_version: read(row, positions, checked, C::BasedOnVersion)?,
                based_on_spec_key: read(row, positions, checked, C::BasedOnSpecKey)?,
                priority: read(row, positions, checked, C::Priority)?,
                claim_generation: read(row, positions, checked, C::ClaimGeneration)?,
                lease_seconds: read(row, positions, checked, C::LeaseSeconds)?,
                lease_expires_at: read(row, positions, checked, C::LeaseExpiresAt)?,
            })
        }
    };
}

plan_decoder!(decode_pg, PgRow);
plan_decoder!(decode_sqlite, SqliteRow);
