//! The reads every request makes, run on sqlx's pool directly.
//!
//! sea-orm's executor boxes a future sized for every driver it supports at
//! each statement: callgrind counted about 15 000 instructions of `memcpy`
//! per statement, a tenth of a small dashboard request's work. The API key
//! lookup and a page of plans go straight to sqlx instead, with the SQL and
//! the bound values sea-query builds for sea-orm (through sea-orm's own
//! binding crate), and come back as sea-orm rows: the decoding and the
//! errors are the same as through sea-orm, and each statement is counted in
//! the statement metrics like every other.

use std::sync::Arc;
use std::time::Instant;

use sea_orm::sqlx::{self, PgPool, SqlitePool};
use sea_orm::{
    ConnAcquireErr, DatabaseConnection, DbBackend, DbErr, QueryResult, RuntimeErr, Statement,
    StatementBuilder, Values,
};
use sea_query_sqlx::SqlxValues;

use crate::metrics::DatabaseMetrics;

/// The pool behind a [`DatabaseConnection`], reached without its executor.
#[derive(Clone)]
pub struct DirectReads {
    pool: Pool,
    metrics: Arc<DatabaseMetrics>,
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl DirectReads {
    pub fn new(db: &DatabaseConnection, metrics: Arc<DatabaseMetrics>) -> DirectReads {
        let pool = match db.get_database_backend() {
            DbBackend::Postgres => Pool::Postgres(db.get_postgres_connection_pool().clone()),
            // The only other database the server is built for.
            _ => Pool::Sqlite(db.get_sqlite_connection_pool().clone()),
        };
        DirectReads { pool, metrics }
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
        let values = SqlxValues(values.unwrap_or_else(|| Values(Vec::new())));
        let sql = sqlx::AssertSqlSafe(sql);
        let started = Instant::now();
        let rows = match &self.pool {
            Pool::Postgres(pool) => sqlx::query_with(sql, values)
                .fetch_all(pool)
                .await
                .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
            Pool::Sqlite(pool) => sqlx::query_with(sql, values)
                .fetch_all(pool)
                .await
                .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
        };
        self.metrics
            .record_statement(started.elapsed(), rows.is_err());
        rows.map_err(query_error)
    }

    /// The first row `statement` reads, if any (the caller limits it).
    pub async fn first(
        &self,
        statement: &impl StatementBuilder,
    ) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.all(statement).await?.into_iter().next())
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
