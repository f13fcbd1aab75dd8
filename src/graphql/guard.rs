//! The checks every operation passes, whatever transport it came by: one
//! wrapper around the schema ([`GuardedSchema`]) that HTTP requests, WebSocket
//! operations and grouped subscriptions all execute through, so they cannot
//! drift apart. It is not an async-graphql extension on purpose: a schema with
//! any extension pays for a registry lookup and an extra future on every field
//! it resolves, which was a measurable share of a dashboard page.
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
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Data, Executor, PathSegment, Request, Response, ServerError};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::AppSchema;
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

/// The schema behind the checks of this module; the only way operations run.
#[derive(Clone)]
pub struct GuardedSchema {
    schema: AppSchema,
    services: Services,
    limits: QueryLimits,
    /// Recently parsed documents by their text. Dashboards and agents send
    /// the same few documents over and over, and async-graphql's parser
    /// costs more than the rest of a small query's checks together.
    documents: moka::future::Cache<String, Arc<ExecutableDocument>>,
}

/// Bytes of query text the document cache keeps (the parsed form is a few
/// times larger).
const DOCUMENT_CACHE_BYTES: u64 = 2 * 1024 * 1024;

/// What [`GuardedSchema::prepare`] learned about an operation it let through.
struct Prepared {
    request: Request,
    /// The document holds no mutation or subscription, so stopping it midway
    /// changes nothing and `--query-timeout` applies.
    only_queries: bool,
}

impl GuardedSchema {
    pub fn new(schema: AppSchema, services: Services, limits: QueryLimits) -> GuardedSchema {
        let documents = moka::future::Cache::builder()
            .max_capacity(DOCUMENT_CACHE_BYTES)
            .weigher(|query: &String, _: &Arc<ExecutableDocument>| {
                u32::try_from(query.len()).unwrap_or(u32::MAX)
            })
            .build();
        GuardedSchema {
            schema,
            services,
            limits,
            documents,
        }
    }

    /// The parsed form of `query`: from the cache of recent documents, or
    /// parsed now and kept. `None` for a document over `--max-query-bytes`
    /// (refused unparsed) or one that does not parse (async-graphql reports
    /// the syntax error when it runs).
    pub async fn document(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        if query.len() > self.limits.max_query_bytes {
            return None;
        }
        if let Some(document) = self.documents.get(query).await {
            return Some(document);
        }
        let document = Arc::new(async_graphql::parser::parse_query(query).ok()?);
        self.documents
            .insert(query.to_owned(), Arc::clone(&document))
            .await;
        Some(document)
    }

    /// Runs a query or mutation sent over HTTP; `document` is its parse from
    /// [`Self::document`], which the caller already needed.
    pub async fn execute(
        &self,
        request: Request,
        document: Option<Arc<ExecutableDocument>>,
    ) -> Response {
        let prepared = match self.prepare(request, document) {
            Ok(prepared) => prepared,
            Err(error) => return self.refusal(error),
        };
        let execution = self.schema.execute(prepared.request);
        let response = if prepared.only_queries {
            self.within_timeout(execution).await
        } else {
            // A mutation runs to its end: stopping it between its steps would
            // leave the client unsure what was applied.
            execution.await
        };
        self.with_codes(response)
    }

    /// Runs any operation as a stream of responses: one for a query or
    /// mutation, one per event for a subscription. `session` is the
    /// WebSocket the operation came on, whose key is checked again and whose
    /// open operations are counted; grouped subscriptions (`fanout.rs`) pass
    /// `None`, having done both themselves.
    pub fn execute_stream(
        &self,
        request: Request,
        session: Option<&SocketSession>,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let limit = self.limits.max_operations_per_connection;
        // Counted now, in the order the client sent its operations.
        let open = match session.map(|session| session.open_operation(limit)) {
            Some(None) => {
                let refusal = Response::from_errors(vec![refuse(too_many_operations(limit))]);
                return futures::stream::once(async move { refusal }).boxed();
            }
            Some(Some(open)) => Some(open),
            None => None,
        };
        let guarded = self.clone();
        let session = session.cloned();
        async_stream::stream! {
            let _open = open;
            // As every operation on a socket: a key revoked since
            // connection_init stops working here too.
            if let Some(session) = &session
                && let Err(error) = guarded.services.require_active_key(&session.viewer).await
            {
                yield guarded.refusal(error);
                return;
            }
            let document = guarded.document(&request.query).await;
            let prepared = match guarded.prepare(request, document) {
                Ok(prepared) => prepared,
                Err(error) => {
                    yield guarded.refusal(error);
                    return;
                }
            };
            let mut responses = guarded
                .schema
                .execute_stream_with_session_data(prepared.request, session_data.unwrap_or_default());
            if prepared.only_queries {
                if let Some(response) = guarded.within_timeout(responses.next()).await {
                    yield guarded.with_codes(response);
                }
                return;
            }
            while let Some(response) = responses.next().await {
                yield guarded.with_codes(response);
            }
        }
        .boxed()
    }

    /// An executor for async-graphql's WebSocket protocol handler: every
    /// operation of the connection goes through [`Self::execute_stream`].
    pub fn for_socket(&self, session: SocketSession) -> SocketExecutor {
        SocketExecutor {
            guarded: self.clone(),
            session,
        }
    }

    /// A refusal of the whole operation, as its only response.
    fn refusal(&self, error: AppError) -> Response {
        self.with_codes(Response::from_errors(vec![refuse(error)]))
    }

    /// The checks on the document (`document`: its parse, if it parsed)
    /// before anything runs; a refusal ends the operation (see [`Self::refusal`]).
    fn prepare(
        &self,
        mut request: Request,
        document: Option<Arc<ExecutableDocument>>,
    ) -> Result<Prepared, AppError> {
        let max_bytes = self.limits.max_query_bytes;
        if request.query.len() > max_bytes {
            return Err(query_too_long(max_bytes));
        }
        // Measured here, before async-graphql's own checks: they already
        // walk the document with every fragment expanded. The parse is handed
        // to async-graphql, not repeated; a document that does not parse is
        // left for async-graphql to report.
        let mut only_queries = false;
        if let Some(document) = document {
            expanded_field_count(&document, self.limits.max_fields).map_err(too_many_fields)?;
            only_queries = document
                .operations
                .iter()
                .all(|(_, operation)| operation.node.ty == OperationType::Query);
            request.set_parsed_query(ExecutableDocument::clone(&document));
        }
        let request = request
            .data(Arc::new(Loaders::new(&self.services)))
            .data(Arc::new(DocumentBudget::new(
                self.limits.max_document_bytes,
            )));
        Ok(Prepared {
            request,
            only_queries,
        })
    }

    /// `execution`'s output, or a `TIMEOUT` error once `--query-timeout` has passed.
    async fn within_timeout<T: From<Response>>(&self, execution: impl Future<Output = T>) -> T {
        let timeout = self.limits.query_timeout;
        match tokio::time::timeout(timeout, execution).await {
            Ok(output) => output,
            Err(_) => T::from(Response::from_errors(vec![refuse(AppError::Timeout(
                format!(
                    "The query ran longer than {} s, the server's limit (--query-timeout), and was stopped; ask for less at once (smaller pages, fewer nested lists) or retry later",
                    timeout.as_secs_f64()
                ),
            ))])),
        }
    }

    /// The way out of every response: internal errors are logged (with the
    /// field's path), async-graphql's limit errors say which limit and what
    /// to do, and every error without a code gets `BAD_USER_INPUT` — ours all
    /// carry one, so the rest come from async-graphql's checks of the request
    /// itself.
    fn with_codes(&self, mut response: Response) -> Response {
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
            if error.path.is_empty()
                && let Some(explained) = self.explain(&error.message)
            {
                *error = refuse(explained);
            }
            let extensions = error.extensions.get_or_insert_with(Default::default);
            if extensions.get("code").is_none() {
                extensions.set("code", "BAD_USER_INPUT");
            }
        }
        response
    }

    /// async-graphql's limit errors say only that a limit was hit; say which,
    /// and what to do about it.
    fn explain(&self, message: &str) -> Option<AppError> {
        match message {
            "Query is too complex." => Some(AppError::BadUserInput(format!(
                "The query is too complex: its cost (one per field, {} per document, lists multiplied by the page they ask for) is over the server's limit of {} (--max-query-complexity); ask for smaller pages or fewer nested lists",
                super::limits::DOCUMENT_COMPLEXITY,
                self.limits.max_complexity
            ))),
            "Query is nested too deep." => Some(AppError::BadUserInput(format!(
                "The query is nested too deep: at most {} levels (--max-query-depth)",
                self.limits.max_depth
            ))),
            _ => None,
        }
    }
}

/// The operations of one WebSocket connection, through the guard.
#[derive(Clone)]
pub struct SocketExecutor {
    guarded: GuardedSchema,
    session: SocketSession,
}

impl Executor for SocketExecutor {
    async fn execute(&self, request: Request) -> Response {
        let mut responses = self.execute_stream(request, None);
        responses.next().await.unwrap_or_default()
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        self.guarded
            .execute_stream(request, Some(&self.session), session_data)
    }
}

fn refuse(error: AppError) -> ServerError {
    error.into_server_error()
}
