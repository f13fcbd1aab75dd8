//! The reads every request makes, run on sqlx's pool directly.
//!
//! sea-orm's executor boxes a future sized for every driver it supports at
//! each statement and copies it on the way (callgrind: about 15 000
//! instructions of `memcpy` per statement, more in cache traffic). The API
//! key lookup and a page of plans, the two statements of a dashboard
//! request, go straight to sqlx instead, with the SQL and
//! the bound values sea-query builds for sea-orm (through sea-orm's own
//! binding crate), and come back as sea-orm rows: the decoding and the
//! errors are the same as through sea-orm, and each statement is counted in
//! the statement metrics like every other.

use std::sync::Arc;
use std::time::Instant;

use sea_orm::sqlx::{self, PgPool, SqlitePool};
use sea_orm::{
    ColumnTrait, ConnAcquireErr, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryResult, QuerySelect, QueryTrait, RuntimeErr, SelectTwo, Statement, StatementBuilder,
    Values,
};
use sea_query_sqlx::SqlxValues;
use tracing::Dispatch;
use tracing::instrument::WithSubscriber;

use super::plan_rows::{JoinColumns, JoinedRows};
use crate::metrics::DatabaseMetrics;
use entity::{api_key, user};

/// The pool behind a [`DatabaseConnection`], reached without its executor.
#[derive(Clone)]
pub struct DirectReads {
    pool: Pool,
    metrics: Arc<DatabaseMetrics>,
    /// The API key lookup: its shape never changes, so it is built once
    /// instead of on every request.
    key_lookup: Arc<KeyLookup>,
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl DirectReads {
    pub fn new(db: &DatabaseConnection, metrics: Arc<DatabaseMetrics>) -> DirectReads {
        let backend = db.get_database_backend();
        let pool = match backend {
            DbBackend::Postgres => Pool::Postgres(db.get_postgres_connection_pool().clone()),
            // The only other database the server is built for.
            _ => Pool::Sqlite(db.get_sqlite_connection_pool().clone()),
        };
        let key_lookup = Arc::new(KeyLookup::new(backend));
        DirectReads {
            pool,
            metrics,
            key_lookup,
        }
    }

    fn backend(&self) -> DbBackend {
        match self.pool {
            Pool::Postgres(_) => DbBackend::Postgres,
            Pool::Sqlite(_) => DbBackend::Sqlite,
        }
    }

    /// Every row `statement` reads.
    pub async fn all(&self, statement: &impl StatementBuilder) -> Result<Vec<QueryResult>, DbErr> {
        let Statement { sql, values, .. } = statement.build(&self.backend());
        self.rows(&sql, values.unwrap_or_else(|| Values(Vec::new())))
            .await
    }

    /// The API key with `prefix` and its user, if there is such a key.
    pub async fn key_with_user(
        &self,
        prefix: &str,
    ) -> Result<Option<(api_key::Model, Option<user::Model>)>, DbErr> {
        let (sql, values) = self.key_lookup.with_prefix(prefix);
        let rows = self.rows(sql, values).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        // By position, under the prefixes sea-orm gives the two models.
        let key = JoinedRows::<api_key::Model>::new("A_", JoinColumns::ALL).decode(row)?;
        let user = JoinedRows::<user::Model>::new("B_", JoinColumns::ALL).decode(row)?;
        Ok(key.map(|key| (key, user)))
    }

    async fn rows(&self, sql: &str, values: Values) -> Result<Vec<QueryResult>, DbErr> {
        let values = SqlxValues(values);
        let sql = sqlx::AssertSqlSafe(sql);
        let started = Instant::now();
        // sqlx instruments its row streams with the span current when they
        // start, so the request's span would be entered and left again for
        // every row: ~170 times a dashboard request, a tenth of the server's
        // CPU per request (A/B at 16 connections, docs/benchmarks.md). The
        // statement runs under no subscriber instead. What that silences is
        // sqlx's own events during it: its statement logging is off anyway
        // (`sqlx_logging(false)`), its slow-acquire warning is not; the
        // server's own log lines, metrics and errors for the statement stay.
        let quiet = Dispatch::none();
        let rows = match &self.pool {
            Pool::Postgres(pool) => sqlx::query_with(sql, values)
                .fetch_all(pool)
                .with_subscriber(quiet)
                .await
                .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
            Pool::Sqlite(pool) => sqlx::query_with(sql, values)
                .fetch_all(pool)
                .with_subscriber(quiet)
                .await
                .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
        };
        self.metrics
            .record_statement(started.elapsed(), rows.is_err());
        rows.map_err(query_error)
    }
}

/// The key with `prefix`, and its user, in one statement.
fn key_lookup(prefix: &str) -> SelectTwo<api_key::Entity, user::Entity> {
    api_key::Entity::find()
        .filter(api_key::Column::Prefix.eq(prefix))
        .find_also_related(user::Entity)
        .limit(1)
}

/// The key lookup's statement, with the place of the prefix among its values.
struct KeyLookup {
    sql: String,
    values: Vec<sea_orm::Value>,
    prefix_at: usize,
}

impl KeyLookup {
    fn new(backend: DbBackend) -> KeyLookup {
        let Statement { sql, values, .. } = key_lookup("").build(backend);
        let values = values.map(|values| values.0).unwrap_or_default();
        let prefix_at = values
            .iter()
            .position(|value| *value == "".into())
            .unwrap_or_default();
        KeyLookup {
            sql,
            values,
            prefix_at,
        }
    }

    fn with_prefix(&self, prefix: &str) -> (&str, Values) {
        let mut values = self.values.clone();
        if let Some(value) = values.get_mut(self.prefix_at) {
            *value = prefix.into();
        }
        (&self.sql, Values(values))
    }
}

/// sqlx's error as sea-orm reports it from its own executor.
fn query_error(error: sqlx::Error) -> DbErr {
    match error {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        error => DbErr::Query(RuntimeErr::SqlxError(Arc::new(error))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statement built once, given a prefix, is the statement built
    /// for that prefix.
    #[test]
    fn the_key_lookup_built_once_fits_every_prefix() {
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            let once = KeyLookup::new(backend);
            let built = key_lookup("pg_abc").build(backend);
            let (sql, values) = once.with_prefix("pg_abc");
            assert_eq!(sql, built.sql);
            assert_eq!(Some(values), built.values);
        }
    }
}
