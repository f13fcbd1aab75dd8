//! Logs and metrics. One log line per GraphQL operation (name, duration,
//! error codes — never spec contents or keys) inside a per-request span that
//! carries the request id; Prometheus metrics through the `metrics` facade.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Colours only on a terminal: a log file or a collector reading stderr
/// would otherwise get escape codes around every level and field name.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLANGRAPH_LOG")
        .unwrap_or_else(|_| "plangraph=info,warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder. `None` if one is installed
/// already (only possible when embedding the library twice in one process).
pub fn install_metrics() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
        .ok()?;
    let handle = builder.install_recorder().ok()?;
    metrics::describe_counter!(
        "plangraph_graphql_requests_total",
        "GraphQL operations executed."
    );
    metrics::describe_histogram!(
        "plangraph_graphql_request_duration_seconds",
        metrics::Unit::Seconds,
        "GraphQL operation latency."
    );
    metrics::describe_counter!(
        "plangraph_graphql_errors_total",
        "GraphQL errors by extensions.code."
    );
    metrics::describe_gauge!(
        "plangraph_active_subscriptions",
        "Open planEvents subscriptions."
    );
    metrics::describe_gauge!(
        "plangraph_subscription_groups",
        "Groups of identical planEvents subscriptions, each resolving an event once for all its members."
    );
    metrics::describe_counter!(
        "plangraph_subscription_group_results_total",
        "Live planEvents results resolved and serialized by subscription groups (once per group, not per member)."
    );
    metrics::describe_gauge!(
        "plangraph_db_pool_connections",
        "Database pool connections by state."
    );
    metrics::describe_counter!("plangraph_sweeper_runs_total", "Stale sweeps run.");
    metrics::describe_counter!(
        "plangraph_plans_stalled_total",
        "Plans the sweeper marked STALLED."
    );
    metrics::describe_counter!(
        "plangraph_auth_failures_total",
        "Requests with a refused API key."
    );
    metrics::describe_counter!(
        "plangraph_anonymous_requests_refused_total",
        "Requests without an API key refused because their address had as many open as --max-anonymous-requests-per-address allows."
    );
    metrics::describe_counter!(
        "plangraph_spec_diffs_total",
        "Spec diffs computed (each in one of --max-concurrent-diffs turns)."
    );
    metrics::describe_gauge!(
        "plangraph_document_cache_bytes",
        metrics::Unit::Bytes,
        "Parsed query documents kept for reuse, weighed by their parsed size."
    );
    metrics::describe_counter!(
        "plangraph_mcp_tool_calls_total",
        "MCP tool calls by tool and result (ok, or the error's code)."
    );
    metrics::describe_histogram!(
        "plangraph_mcp_tool_call_duration_seconds",
        metrics::Unit::Seconds,
        "MCP tool call latency."
    );
    metrics::describe_counter!(
        "plangraph_webhook_deliveries_total",
        "Webhook delivery attempts by result (delivered, rejected, failed_*)."
    );
    metrics::describe_histogram!(
        "plangraph_webhook_delivery_duration_seconds",
        metrics::Unit::Seconds,
        "Webhook delivery attempt latency by result."
    );
    metrics::describe_counter!(
        "plangraph_webhooks_disabled_total",
        "Webhooks disabled after failing for long."
    );
    Some(handle)
}

/// A bounded label for a client-chosen operation name, so a client cannot
/// create unbounded metric series.
pub fn operation_label(name: Option<&str>) -> String {
    match name {
        None => "anonymous".into(),
        Some(name)
            if !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            name.to_owned()
        }
        Some(_) => "other".into(),
    }
}

/// The operation names that get metric series of their own: the first
/// `limit` distinct names seen (a server's clients use a handful); any
/// further name is counted as `other`, so a client sending ever new names
/// cannot grow `/metrics` without bound. Each series keeps its metric
/// handles: looking them up by name and labels in the recorder on every
/// operation cost more than the rest of recording it.
pub struct OperationSeries {
    limit: usize,
    known: Mutex<HashMap<String, Vec<OperationMetrics>>>,
}

/// The metrics of one series of one kind of operation.
#[derive(Clone)]
pub struct OperationMetrics {
    kind: &'static str,
    requests: Counter,
    duration: Histogram,
}

impl OperationSeries {
    pub fn new(limit: usize) -> OperationSeries {
        OperationSeries {
            limit,
            known: Mutex::default(),
        }
    }

    /// The series label for an operation labelled `label` in logs.
    fn series_in<'a>(
        known: &mut HashMap<String, Vec<OperationMetrics>>,
        limit: usize,
        label: &'a str,
    ) -> &'a str {
        if known.contains_key(label) {
            return label;
        }
        if known.len() < limit {
            known.insert(label.to_owned(), Vec::new());
            return label;
        }
        "other"
    }

    /// The metrics an operation of `kind` labelled `label` is counted in.
    pub fn metrics(&self, kind: &'static str, label: &str) -> OperationMetrics {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let series = Self::series_in(&mut known, self.limit, label);
        // `other` has no entry of its own: it must not take up the room
        // of a name.
        let mut others = Vec::new();
        let kinds = known.get_mut(series).unwrap_or(&mut others);
        if let Some(metrics) = kinds.iter().find(|metrics| metrics.kind == kind) {
            return metrics.clone();
        }
        let labels = [("kind", kind.to_owned()), ("operation", series.to_owned())];
        let metrics = OperationMetrics {
            kind,
            requests: metrics::counter!("plangraph_graphql_requests_total", &labels),
            duration: metrics::histogram!("plangraph_graphql_request_duration_seconds", &labels),
        };
        kinds.push(metrics.clone());
        metrics
    }
}

impl Default for OperationSeries {
    /// Room for the operations of a few dashboards and scripts.
    fn default() -> OperationSeries {
        OperationSeries::new(200)
    }
}

/// Records one executed operation: the log line (with the operation's own
/// label) and its metrics (under its bounded series).
pub fn record_operation(
    name: &str,
    metrics: &OperationMetrics,
    duration: Duration,
    codes: &[String],
) {
    let milliseconds = duration.as_secs_f64() * 1000.0;
    let kind = metrics.kind;
    if codes.is_empty() {
        tracing::info!(
            operation = name,
            kind,
            duration_ms = milliseconds,
            "graphql operation"
        );
    } else {
        tracing::info!(operation = name, kind, duration_ms = milliseconds, errors = ?codes, "graphql operation");
    }
    metrics.requests.increment(1);
    metrics.duration.record(duration.as_secs_f64());
    for code in codes {
        metrics::counter!("plangraph_graphql_errors_total", "code" => code.clone()).increment(1);
    }
}

/// Records one MCP tool call: the log line and its metrics. `error` is the
/// code of the error it ended with, if any.
pub fn record_tool_call(tool: &'static str, duration: Duration, error: Option<&'static str>) {
    let duration_ms = duration.as_secs_f64() * 1000.0;
    match error {
        None => tracing::info!(tool, duration_ms, "mcp tool call"),
        Some(code) => tracing::info!(tool, duration_ms, error = code, "mcp tool call"),
    }
    let result = error.unwrap_or("ok");
    metrics::counter!("plangraph_mcp_tool_calls_total", "tool" => tool, "result" => result)
        .increment(1);
    metrics::histogram!("plangraph_mcp_tool_call_duration_seconds", "tool" => tool)
        .record(duration.as_secs_f64());
}

/// Counts an open subscription for as long as it lives.
pub struct ActiveSubscription;

impl ActiveSubscription {
    pub fn open() -> ActiveSubscription {
        metrics::gauge!("plangraph_active_subscriptions").increment(1.0);
        ActiveSubscription
    }
}

impl Drop for ActiveSubscription {
    fn drop(&mut self) {
        metrics::gauge!("plangraph_active_subscriptions").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_labels_are_bounded() {
        assert_eq!(operation_label(None), "anonymous");
        assert_eq!(operation_label(Some("Dashboard_1")), "Dashboard_1");
        assert_eq!(operation_label(Some("weird name!")), "other");
        assert_eq!(operation_label(Some(&"x".repeat(65))), "other");
    }

    #[test]
    fn operation_series_stop_growing_at_their_limit() {
        let series = OperationSeries::new(2);
        for label in ["A", "B", "C", "A", "D"] {
            series.metrics("query", label);
        }
        series.metrics("mutation", "A");
        let known = series.known.lock().unwrap();
        let mut labels: Vec<&str> = known.keys().map(String::as_str).collect();
        labels.sort_unstable();
        assert_eq!(labels, ["A", "B"]);
        // One set of handles per kind of operation, kept.
        assert_eq!(known["A"].len(), 2);
        assert_eq!(known["B"].len(), 1);
    }
}
