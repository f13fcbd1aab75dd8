//! Decoding a page of plans by column position.
//!
//! sea-orm decodes a model by column name: each of a plan's columns is looked
//! up in the row by hashing its name (two or three times per value), and every
//! NULL formats an error message on its way to `None`. On a dashboard page of
//! 50 plans that was a fifth of the server's CPU per request (perf, see
//! docs/benchmarks.md). Here the positions are found once per page, by name,
//! and each value is decoded straight from sqlx with the same Rust type
//! sea-orm would have used, so both databases read exactly what sea-orm reads.

use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::sqlite::SqliteRow;
use sea_orm::sqlx::{Column, Row};
use sea_orm::{ActiveEnum, DbErr, Iterable, QueryResult};

use entity::enums::PlanStatus;
use entity::plan;

/// Where each of the plan's own columns is in the rows of one result set,
/// indexed by `plan::Column as usize`.
struct Positions(Vec<usize>);

impl Positions {
    fn of<C: Column>(columns: &[C]) -> Result<Positions, DbErr> {
        plan::Column::iter()
            .map(|wanted| {
                let name = sea_orm::IdenStatic::as_str(&wanted);
                columns
                    .iter()
                    .position(|column| column.name() == name)
                    .ok_or_else(|| DbErr::Type(format!("the plan page has no column `{name}`")))
            })
            .collect::<Result<_, _>>()
            .map(Positions)
    }

    fn at(&self, column: plan::Column) -> usize {
        self.0[column as usize]
    }
}

/// The plans of a page's rows (their own columns; joined ones are read by
/// the caller). Rows not from sqlx's PostgreSQL or SQLite drivers fall back
/// to sea-orm's decoding.
pub fn decode_plans(rows: &[QueryResult]) -> Result<Vec<plan::Model>, DbErr> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    if let Some(row) = first.try_as_pg_row() {
        return decode_all(rows, row, QueryResult::try_as_pg_row, decode_pg);
    }
    if let Some(row) = first.try_as_sqlite_row() {
        return decode_all(rows, row, QueryResult::try_as_sqlite_row, decode_sqlite);
    }
    rows.iter()
        .map(|row| sea_orm::FromQueryResult::from_query_result(row, ""))
        .collect()
}

/// Every row through `decode`, with the positions read off the `first`.
fn decode_all<R: Row>(
    rows: &[QueryResult],
    first: &R,
    driver_row: impl Fn(&QueryResult) -> Option<&R>,
    decode: fn(&R, &Positions) -> Result<plan::Model, DbErr>,
) -> Result<Vec<plan::Model>, DbErr> {
    let positions = Positions::of(first.columns())?;
    rows.iter()
        .map(|row| match driver_row(row) {
            Some(row) => decode(row, &positions),
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

/// The same body for both drivers' row types (sqlx's traits differ per
/// database, so a generic function would need a bound per column type).
macro_rules! plan_decoder {
    ($name:ident, $row:ty) => {
        fn $name(row: &$row, positions: &Positions) -> Result<plan::Model, DbErr> {
            use plan::Column as C;
            let get = |column: C| positions.at(column);
            Ok(plan::Model {
                id: row.try_get(get(C::Id)).map_err(decode_error)?,
                project_id: row.try_get(get(C::ProjectId)).map_err(decode_error)?,
                feature_id: row.try_get(get(C::FeatureId)).map_err(decode_error)?,
                title: row.try_get(get(C::Title)).map_err(decode_error)?,
                description: row.try_get(get(C::Description)).map_err(decode_error)?,
                status: status(row.try_get(get(C::Status)).map_err(decode_error)?)?,
                spec_key: row.try_get(get(C::SpecKey)).map_err(decode_error)?,
                spec_sha256: row.try_get(get(C::SpecSha256)).map_err(decode_error)?,
                spec_size: row.try_get(get(C::SpecSize)).map_err(decode_error)?,
                work_artifacts: row.try_get(get(C::WorkArtifacts)).map_err(decode_error)?,
                claimed_by: row.try_get(get(C::ClaimedBy)).map_err(decode_error)?,
                claimed_at: row.try_get(get(C::ClaimedAt)).map_err(decode_error)?,
                submitted_by: row.try_get(get(C::SubmittedBy)).map_err(decode_error)?,
                implemented_version: row
                    .try_get(get(C::ImplementedVersion))
                    .map_err(decode_error)?,
                last_activity_at: row.try_get(get(C::LastActivityAt)).map_err(decode_error)?,
                created_by: row.try_get(get(C::CreatedBy)).map_err(decode_error)?,
                created_at: row.try_get(get(C::CreatedAt)).map_err(decode_error)?,
                updated_at: row.try_get(get(C::UpdatedAt)).map_err(decode_error)?,
                based_on_version: row.try_get(get(C::BasedOnVersion)).map_err(decode_error)?,
                based_on_spec_key: row.try_get(get(C::BasedOnSpecKey)).map_err(decode_error)?,
                priority: row.try_get(get(C::Priority)).map_err(decode_error)?,
                claim_generation: row.try_get(get(C::ClaimGeneration)).map_err(decode_error)?,
                lease_seconds: row.try_get(get(C::LeaseSeconds)).map_err(decode_error)?,
                lease_expires_at: row.try_get(get(C::LeaseExpiresAt)).map_err(decode_error)?,
            })
        }
    };
}

plan_decoder!(decode_pg, PgRow);
plan_decoder!(decode_sqlite, SqliteRow);
