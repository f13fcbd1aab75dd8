//! The checks every operation passes, whatever transport it came by: one
//! schema extension, so HTTP requests and WebSocket operations cannot drift apart.
//!
//! - Each operation gets its own loaders and document budget (never a
//!   connection's: a cache that lived as long as a WebSocket would grow without
//!   bound and serve rows changed since).
//! - An operation on a WebSocket re-checks the connection's API key, so a key
//!   revoked after `connection_init` stops working on open sockets too.
//! - The document's expanded size is checked before anything expands it.
//! - A WebSocket may have only so many operations open at once.
//! - A query that runs too long is stopped.
//! - Every error leaves with an `extensions.code`: async-graphql's own
//!   (syntax, unknown fields, wrongly typed variables, limits) are the
//!   client's to fix, and its limit errors name the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextRequest,
    NextSubscribe, NextValidation,
};
use async_graphql::parser::types::OperationType;
use async_graphql::{PathSegment, Request, Response, ServerError, ServerResult, ValidationResult};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::limits::{
    DocumentBudget, QueryLimits, expanded_field_count, query_too_long, too_many_fields,
};
use super::loaders::Loaders;
use crate::error::AppError;
use crate::service::{Services, Viewer};

/// What the operations of one WebSocket connection share (clones share the count).
#[derive(Clone)]
pub struct SocketSession {
    /// Who authenticated in `connection_init`, with which key.
    pub viewer: Viewer,
    open_operations: Arc<AtomicUsize>,
}

impl SocketSession {
    pub fn new(viewer: Viewer) -> SocketSession {
        SocketSession {
            viewer,
            open_operations: Arc::default(),
        }
    }

    /// Counts one more open operation, unless `limit` are open already.
    /// Grouped `planEvents` subscriptions (`fanout.rs`) count themselves here too.
    pub(crate) fn open_operation(&self, limit: usize) -> Option<OpenOperation> {
        self.open_operations
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            })
            .ok()
            .map(|_| OpenOperation(Arc::clone(&self.open_operations)))
    }
}

/// An operation counted against its connection until it ends.
pub(crate) struct OpenOperation(Arc<AtomicUsize>);

impl Drop for OpenOperation {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The refusal of an operation beyond `--max-operations-per-connection`.
pub(crate) fn too_many_operations(limit: usize) -> AppError {
    AppError::BadUserInput(format!(
        "This connection already has {limit} operations open, the server's limit (--max-operations-per-connection); complete some subscriptions or open another connection"
    ))
}

/// Installs [`OperationChecks`] on the schema.
pub struct OperationGuard {
    limits: QueryLimits,
}

impl OperationGuard {
    pub fn new(limits: QueryLimits) -> OperationGuard {
        OperationGuard { limits }
    }
}

impl ExtensionFactory for OperationGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationChecks {
            limits: self.limits,
            only_queries: AtomicBool::new(false),
        })
    }
}

/// One per operation (async-graphql creates extensions per request).
struct OperationChecks {
    limits: QueryLimits,
    /// The document holds no mutation, so stopping it midway changes nothing.
    only_queries: AtomicBool,
}

fn refuse(error: AppError) -> ServerError {
    error.into_server_error()
}

/// The way out of every response: internal errors are logged (with the
/// field's path) and every error without a code gets `BAD_USER_INPUT` —
/// ours all carry one, so the rest come from async-graphql's checks of the
/// request itself.
fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        if let Some(cause) = error.source::<AppError>() {
            let path: Vec<String> = error
                .path
                .iter()
                .map(|segment| match segment {
                    PathSegment::Field(name) => name.clone(),
                    PathSegment::Index(index) => index.to_string(),
                })
                .collect();
            cause.log_if_internal(&format!("graphql {}", path.join(".")));
        }
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "BAD_USER_INPUT");
        }
    }
    response
}

impl OperationChecks {
    /// async-graphql's limit errors say only that a limit was hit; say which,
    /// and what to do about it.
    fn explain(&self, error: ServerError) -> ServerError {
        let explained = match error.message.as_str() {
            "Query is too complex." => AppError::BadUserInput(format!(
                "The query is too complex: its cost (one per field, {} per document, lists multiplied by the page they ask for) is over the server's limit of {} (--max-query-complexity); ask for smaller pages or fewer nested lists",
                super::limits::DOCUMENT_COMPLEXITY,
                self.limits.max_complexity
            )),
            "Query is nested too deep." => AppError::BadUserInput(format!(
                "The query is nested too deep: at most {} levels (--max-query-depth)",
                self.limits.max_depth
            )),
            _ => return error,
        };
        refuse(explained)
    }
}

#[async_trait::async_trait]
impl Extension for OperationChecks {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        with_codes(next.run(ctx).await)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let Some(session) = ctx.data_opt::<SocketSession>() else {
            return next.run(ctx, stream.map(with_codes).boxed());
        };
        let limit = self.limits.max_operations_per_connection;
        let Some(open) = session.open_operation(limit) else {
            let error = too_many_operations(limit);
            return futures::stream::once(
                async move { Response::from_errors(vec![refuse(error)]) },
            )
            .boxed();
        };
        let counted = stream.map(move |response| {
            let _ = &open;
            with_codes(response)
        });
        next.run(ctx, counted.boxed())
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let services = ctx.data_unchecked::<Services>();
        if let Some(session) = ctx.data_opt::<SocketSession>() {
            services
                .require_active_key(&session.viewer)
                .await
                .map_err(refuse)?;
        }
        let max_bytes = self.limits.max_query_bytes;
        if request.query.len() > max_bytes {
            return Err(refuse(query_too_long(max_bytes)));
        }
        // Measured here, before async-graphql's own checks: they already
        // walk the document with every fragment expanded. The parse is kept
        // in the request and not repeated; a document that does not parse is
        // left for async-graphql to report.
        if let Ok(document) = request.parsed_query() {
            expanded_field_count(document, self.limits.max_fields)
                .map_err(|limit| refuse(too_many_fields(limit)))?;
            let only_queries = document
                .operations
                .iter()
                .all(|(_, operation)| operation.node.ty == OperationType::Query);
            self.only_queries.store(only_queries, Ordering::Relaxed);
        }
        let request = request
            .data(Arc::new(Loaders::new(services)))
            .data(Arc::new(DocumentBudget::new(
                self.limits.max_document_bytes,
            )));
        next.run(ctx, request).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|error| self.explain(error))
                .collect()
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        // A mutation runs to its end: stopping it between its steps would
        // leave the client unsure what was applied.
        if !self.only_queries.load(Ordering::Relaxed) {
            return next.run(ctx, operation_name).await;
        }
        let timeout = self.limits.query_timeout;
        match tokio::time::timeout(timeout, next.run(ctx, operation_name)).await {
            Ok(response) => response,
            Err(_) => Response::from_errors(vec![refuse(AppError::Timeout(format!(
                "The query ran longer than {} s, the server's limit (--query-timeout), and was stopped; ask for less at once (smaller pages, fewer nested lists) or retry later",
                timeout.as_secs_f64()
            )))]),
        }
    }
}
