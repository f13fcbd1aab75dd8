//! Database statement counters for `/metrics`, fed by sea-orm's per-statement
//! callback. They also let tests prove a page costs a fixed number of queries.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct DatabaseMetrics {
    statements: AtomicU64,
    failed: AtomicU64,
    micros: AtomicU64,
}

impl DatabaseMetrics {
    /// sea-orm's callback for each statement it runs.
    pub fn record(&self, info: &sea_orm::metric::Info<'_>) {
        self.record_statement(info.elapsed, info.failed);
    }

    pub fn record_statement(&self, elapsed: std::time::Duration, failed: bool) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn prometheus_text(&self) -> String {
        let mut text = String::new();
        let statements = self.statements.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let seconds = self.micros.load(Ordering::Relaxed) as f64 / 1e6;
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "# HELP plangraph_db_statements_total SQL statements executed.\n\
             # TYPE plangraph_db_statements_total counter\n\
             plangraph_db_statements_total {statements}\n\
             # HELP plangraph_db_statement_errors_total SQL statements that failed.\n\
             # TYPE plangraph_db_statement_errors_total counter\n\
             plangraph_db_statement_errors_total {failed}\n\
             # HELP plangraph_db_statement_seconds_total Time spent executing SQL statements.\n\
             # TYPE plangraph_db_statement_seconds_total counter\n\
             plangraph_db_statement_seconds_total {seconds}\n"
        );
        text
    }
}
