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
//! - The document's expanded size, the price of its introspection and its
//!   list arguments are checked before anything expands or runs it.
//! - A WebSocket may have only so many operations open at once.
//! - A query that runs too long is stopped.
//! - Every error leaves with an `extensions.code`: async-graphql's own
//!   (syntax, unknown fields, wrongly typed variables, limits) are the
//!   client's to fix, and its limit errors name the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Data, Executor, PathSegment, Request, Response, ServerError, Variables};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::AppSchema;
use super::limits::{
    DocumentBudget, IntrospectionPrices, MAX_LIST_ARGUMENT_ITEMS, QueryLimits, expanded_cost,
    introspection_too_costly, list_too_long, longest_list_argument, parsed_size, query_too_long,
    too_many_fields,
};
use super::loaders::Loaders;
use super::order::in_document_order;
use super::persisted::PersistedQueries;
use super::pricing::{Pricing, TOO_COMPLEX, kept_for_pricing, too_complex};
use super::types::ClaimsMade;
use crate::config::Introspection;
use crate::error::{AppError, AppResult};
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
    introspection: Introspection,
    prices: IntrospectionPrices,
    /// Recently run documents by their text. Dashboards and agents send
    /// the same few documents over and over, and async-graphql's parser
    /// costs more than the rest of a small query's checks together. Only
    /// documents that passed validation are kept: a refused one is not worth
    /// memory, and would otherwise let anyone fill the cache for free.
    documents: moka::future::Cache<String, Arc<ExecutableDocument>>,
    /// Documents named by hash, and the trusted ones when only they run.
    persisted: Arc<PersistedQueries>,
    /// The cost of documents refused as too complex, for their message.
    pricing: Arc<Pricing>,
}

/// Memory the document cache may hold, weighed by the documents' parsed
/// size ([`parsed_size`]), which is tens of times their text.
const DOCUMENT_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// A document larger than this once parsed is not cached: the documents
/// worth keeping are the small ones sent over and over.
const LARGEST_CACHED_DOCUMENT: usize = 1024 * 1024;

/// A parsed query document (see [`GuardedSchema::document`]).
#[derive(Clone)]
pub struct Parsed {
    pub document: Arc<ExecutableDocument>,
    /// It came from the cache, so there is nothing to remember.
    cached: bool,
}

/// What [`GuardedSchema::prepare`] learned about an operation it let through.
struct Prepared {
    request: Request,
    /// The document holds no mutation or subscription, so stopping it midway
    /// changes nothing and `--query-timeout` applies.
    only_queries: bool,
    /// The parsed document and the operation run, to put the answer in
    /// the document's field order (`order.rs`).
    document: Arc<ExecutableDocument>,
    operation_name: Option<String>,
    /// The variables, should the document be refused as too complex (see
    /// `pricing.rs`); `None` when they are large.
    pricing_variables: Option<Variables>,
}

impl GuardedSchema {
    pub fn new(
        schema: AppSchema,
        services: Services,
        limits: QueryLimits,
        introspection: Introspection,
        prices: IntrospectionPrices,
        persisted: PersistedQueries,
        pricing: Pricing,
    ) -> GuardedSchema {
        let documents = moka::future::Cache::builder()
            .max_capacity(DOCUMENT_CACHE_BYTES)
            .weigher(|query: &String, document: &Arc<ExecutableDocument>| {
                let weight = query.len().saturating_add(parsed_size(document));
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .build();
        GuardedSchema {
            schema,
            services,
            limits,
            introspection,
            prices,
            documents,
            persisted: Arc::new(persisted),
            pricing: Arc::new(pricing),
        }
    }

    /// The bounds every operation runs under.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// The parsed form of `request`'s document — sent in full, or named by
    /// its hash (`persisted.rs`): from the cache of recent documents, or
    /// parsed now (and kept once it has passed validation). A document over
    /// `--max-query-bytes` is refused unparsed; one that does not parse is
    /// refused with where and what the parser expected.
    pub async fn document(&self, request: &mut Request) -> AppResult<Parsed> {
        self.persisted.resolve(request).await?;
        let query = request.query.as_str();
        let max_bytes = self.limits.max_query_bytes;
        if query.len() > max_bytes {
            return Err(query_too_long(max_bytes));
        }
        if let Some(document) = self.documents.get(query).await {
            return Ok(Parsed {
                document,
                cached: true,
            });
        }
        let document =
            async_graphql::parser::parse_query(query).map_err(|error| unparsable(query, &error))?;
        Ok(Parsed {
            document: Arc::new(document),
            cached: false,
        })
    }

    /// Keeps a document that `response` shows passed validation: every
    /// error it has, if any, belongs to a field. Refusals of the whole
    /// document (limits, validation, timeouts) have no path.
    async fn remember(
        &self,
        query: String,
        document: Arc<ExecutableDocument>,
        response: &Response,
    ) {
        let passed = response.errors.iter().all(|error| !error.path.is_empty());
        if passed && parsed_size(&document) <= LARGEST_CACHED_DOCUMENT {
            self.documents.insert(query, document).await;
            // Rare (a document not seen lately), so settling the cache's
            // bookkeeping for an exact figure costs nothing that matters.
            self.documents.run_pending_tasks().await;
            metrics::gauge!("plangraph_document_cache_bytes")
                .set(self.documents.weighted_size() as f64);
        }
    }

    /// Runs a query or mutation sent over HTTP; `document` is its parse from
    /// [`Self::document`], which the caller already needed. `anonymous`: it
    /// came without an API key.
    pub async fn execute(
        &self,
        request: Request,
        document: AppResult<Parsed>,
        anonymous: bool,
    ) -> Response {
        let unremembered = document
            .as_ref()
            .ok()
            .filter(|parsed| !parsed.cached)
            .map(|parsed| (request.query.clone(), Arc::clone(&parsed.document)));
        let prepared = match self.prepare(request, document, anonymous) {
            Ok(prepared) => prepared,
            Err(error) => return self.refusal(error),
        };
        let Prepared {
            request,
            only_queries,
            document: parsed,
            operation_name,
            pricing_variables,
        } = prepared;
        let execution = self.schema.execute(request);
        let response = if only_queries {
            self.within_timeout(execution).await
        } else {
            // A mutation runs to its end: stopping it between its steps would
            // leave the client unsure what was applied.
            execution.await
        };
        if let Some((query, document)) = unremembered {
            self.remember(query, document, &response).await;
        }
        let mut response = response;
        in_document_order(&mut response.data, &parsed, operation_name.as_deref());
        self.price_refusal(&mut response, &parsed, pricing_variables, operation_name)
            .await;
        self.with_codes(response)
    }

    /// Runs any operation as a stream of responses: one for a query or
    /// mutation, one per event for a subscription. `session` is the
    /// WebSocket the operation came on, whose key is checked again and whose
    /// open operations are counted; grouped subscriptions (`fanout.rs`) pass
    /// `None`, having done both themselves.
    ///
    /// With `requests` (the request runtime), everything up to a
    /// subscription's first event runs there, and a query or mutation runs
    /// there to its end: the stream itself lives on the fan-out thread
    /// (`websocket/fanout.rs`), which one heavy query would otherwise hold
    /// up for every subscriber and every new connection. Subscriptions stay
    /// on the fan-out thread, where their deliveries belong.
    pub fn execute_stream(
        &self,
        request: Request,
        session: Option<&SocketSession>,
        session_data: Option<Arc<Data>>,
        requests: Option<&tokio::runtime::Handle>,
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
        let requests = requests.cloned();
        let on_socket = session.is_some();
        async_stream::stream! {
            let _open = open;
            let session_data = session_data.unwrap_or_default();
            let start = guarded.clone().start(request, session, Arc::clone(&session_data));
            let started = match &requests {
                Some(requests) => run_on(requests, start).await,
                None => start.await,
            };
            let request = match started {
                Started::Done(response) => {
                    yield response;
                    return;
                }
                Started::Subscription(request) => request,
            };
            let mut responses = guarded
                .schema
                .execute_stream_with_session_data(request, session_data);
            while let Some(response) = responses.next().await {
                yield guarded.bounded(guarded.with_codes(response), on_socket);
            }
        }
        .boxed()
    }

    /// An operation's checks, and the whole of it unless it is a subscription.
    async fn start(
        self,
        request: Request,
        session: Option<SocketSession>,
        session_data: Arc<Data>,
    ) -> Started {
        // As every operation on a socket: a key revoked since
        // connection_init stops working here too.
        if let Some(session) = &session
            && let Err(error) = self.services.require_active_key(&session.viewer).await
        {
            return Started::Done(self.refusal(error));
        }
        let mut request = request;
        let document = self.document(&mut request).await;
        let subscription = document.as_ref().is_ok_and(|parsed| {
            selected_operation(&parsed.document, request.operation_name.as_deref())
                == Some(OperationType::Subscription)
        });
        let unremembered = document
            .as_ref()
            .ok()
            .filter(|parsed| !parsed.cached && !subscription)
            .map(|parsed| (request.query.clone(), Arc::clone(&parsed.document)));
        let on_socket = session.is_some();
        // Every operation here comes from an authenticated socket or group.
        let prepared = match self.prepare(request, document, false) {
            Ok(prepared) => prepared,
            Err(error) => return Started::Done(self.refusal(error)),
        };
        if subscription {
            return Started::Subscription(prepared.request);
        }
        let mut responses = self
            .schema
            .execute_stream_with_session_data(prepared.request, session_data);
        let response = if prepared.only_queries {
            self.within_timeout(responses.next()).await
        } else {
            responses.next().await
        };
        let mut response = response.unwrap_or_default();
        if let Some((query, document)) = unremembered {
            self.remember(query, document, &response).await;
        }
        in_document_order(
            &mut response.data,
            &prepared.document,
            prepared.operation_name.as_deref(),
        );
        self.price_refusal(
            &mut response,
            &prepared.document,
            prepared.pricing_variables,
            prepared.operation_name,
        )
        .await;
        Started::Done(self.bounded(self.with_codes(response), on_socket))
    }

    /// An executor for async-graphql's WebSocket protocol handler: every
    /// operation of the connection goes through [`Self::execute_stream`],
    /// queries and mutations on `requests`, the request runtime.
    pub fn for_socket(
        &self,
        session: SocketSession,
        requests: tokio::runtime::Handle,
    ) -> SocketExecutor {
        SocketExecutor {
            guarded: self.clone(),
            session,
            requests,
        }
    }

    /// `response`, or its refusal when it is longer than
    /// `--max-response-bytes`, for a socket's operations (`on_socket`),
    /// which async-graphql's protocol handler writes itself. HTTP responses
    /// and grouped results are bounded by the writer (`json.rs`) instead,
    /// without this second pass.
    fn bounded(&self, response: Response, on_socket: bool) -> Response {
        if !on_socket {
            return response;
        }
        match super::json::response_json(&response, true, self.limits.max_response_bytes) {
            Err(error @ super::json::WriteError::TooLarge { .. }) => {
                self.refusal(error.into_app_error())
            }
            _ => response,
        }
    }

    /// A refusal of the whole operation, as its only response.
    fn refusal(&self, error: AppError) -> Response {
        self.with_codes(Response::from_errors(vec![refuse(error)]))
    }

    /// The checks on the document (`document`: its parse, or why it has
    /// none) before anything runs; a refusal ends the operation (see
    /// [`Self::refusal`]).
    fn prepare(
        &self,
        mut request: Request,
        document: AppResult<Parsed>,
        anonymous: bool,
    ) -> Result<Prepared, AppError> {
        // Measured here, before async-graphql's own checks: they already
        // walk the document with every fragment expanded. The parse is handed
        // to async-graphql, not repeated.
        let Parsed { document, .. } = document?;
        let cost = expanded_cost(&document, self.prices);
        if cost.fields > self.limits.max_fields {
            return Err(too_many_fields(self.limits.max_fields));
        }
        if cost.introspection > 0 {
            match self.introspection {
                Introspection::Off => {
                    return Err(AppError::BadUserInput(
                        "Introspection is turned off on this server (--introspection off or --no-playground); ask its operator for the schema (schema.graphql)".into(),
                    ));
                }
                Introspection::Authenticated if anonymous => {
                    return Err(AppError::Unauthenticated(
                        "Introspection on this server needs an API key (--introspection authenticated): send the header Authorization: Bearer <your API key>".into(),
                    ));
                }
                Introspection::Authenticated | Introspection::Public => {}
            }
        }
        if cost.introspection > self.limits.max_complexity {
            return Err(introspection_too_costly(
                cost.introspection,
                self.prices,
                self.limits.max_complexity,
            ));
        }
        let longest = longest_list_argument(&document, &request.variables);
        if longest > MAX_LIST_ARGUMENT_ITEMS {
            return Err(list_too_long(longest));
        }
        let only_queries = document
            .operations
            .iter()
            .all(|(_, operation)| operation.node.ty == OperationType::Query);
        request.set_parsed_query(ExecutableDocument::clone(&document));
        let request = request
            .data(Arc::new(Loaders::new(&self.services)))
            .data(Arc::new(ClaimsMade::default()))
            .data(Arc::new(DocumentBudget::new(
                self.limits.max_document_bytes,
            )));
        let operation_name = request.operation_name.clone();
        let pricing_variables = kept_for_pricing(&request.variables);
        Ok(Prepared {
            request,
            only_queries,
            document,
            operation_name,
            pricing_variables,
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

    /// A complexity refusal in `response` with the document's cost.
    async fn price_refusal(
        &self,
        response: &mut Response,
        document: &ExecutableDocument,
        variables: Option<Variables>,
        operation_name: Option<String>,
    ) {
        let refused = match response.errors.as_slice() {
            [error] => error.message == TOO_COMPLEX && error.path.is_empty(),
            _ => false,
        };
        let (true, Some(variables)) = (refused, variables) else {
            return;
        };
        let cost = self
            .pricing
            .complexity(document, variables, operation_name)
            .await;
        response.errors = vec![refuse(too_complex(cost, self.limits.max_complexity))];
    }

    /// async-graphql's limit errors say only that a limit was hit; say which,
    /// and what to do about it.
    fn explain(&self, message: &str) -> Option<AppError> {
        match message {
            TOO_COMPLEX => Some(too_complex(None, self.limits.max_complexity)),
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
    requests: tokio::runtime::Handle,
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
        self.guarded.execute_stream(
            request,
            Some(&self.session),
            session_data,
            Some(&self.requests),
        )
    }
}

/// How far [`GuardedSchema::start`] took an operation.
enum Started {
    /// Its one response: a query's or mutation's, or a refusal.
    Done(Response),
    /// A subscription, checked and ready to run where its events are delivered.
    Subscription(Request),
}

/// Why `query` does not parse, as a person would say it: where, and what
/// the parser expected there, without the parser's drawing of the line.
fn unparsable(query: &str, error: &async_graphql::parser::Error) -> AppError {
    use async_graphql::parser::Error;
    if query.trim().is_empty() {
        return AppError::BadUserInput(
            "The request has no query: send a GraphQL document as `query`, e.g. {\"query\": \"{ viewer { email } }\"}".into(),
        );
    }
    match error {
        Error::Syntax { message, start, .. } => {
            // pest ends its message with `= expected <rules>`.
            let expected = message
                .lines()
                .last()
                .and_then(|line| line.trim().strip_prefix("= "))
                .map(|expected| {
                    expected
                        .replace(
                            "executable_definition",
                            "a query, mutation, subscription or fragment",
                        )
                        .replace("EOI", "the end of the document")
                        .replace('_', " ")
                })
                .unwrap_or_else(|| "unexpected input".into());
            AppError::BadUserInput(format!(
                "Syntax error at line {}, column {}: {expected}",
                start.line, start.column
            ))
        }
        other => AppError::BadUserInput(format!("The document is not valid GraphQL: {other}")),
    }
}

/// The kind of the operation a request runs: the one named, or the only one.
fn selected_operation(document: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    use async_graphql::parser::types::DocumentOperations;
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(operation.node.ty),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|operation| operation.node.ty)
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
            .values()
            .next()
            .map(|operation| operation.node.ty),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// `work`'s output, computed on `runtime`; stopped there when the waiter
/// goes away (the client completed the operation or left), as an HTTP
/// request stops with its connection. A panic answers `INTERNAL`, as over
/// HTTP.
async fn run_on(
    runtime: &tokio::runtime::Handle,
    work: impl Future<Output = Started> + Send + 'static,
) -> Started {
    match tokio_util::task::AbortOnDropHandle::new(runtime.spawn(work)).await {
        Ok(started) => started,
        Err(error) => {
            let error = AppError::internal_from("a WebSocket operation failed", error);
            error.log_if_internal("websocket operation");
            Started::Done(Response::from_errors(vec![refuse(error)]))
        }
    }
}

fn refuse(error: AppError) -> ServerError {
    error.into_server_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(query: &str) -> String {
        match async_graphql::parser::parse_query(query) {
            Ok(_) => panic!("{query} parses"),
            Err(error) => unparsable(query, &error).message(),
        }
    }

    #[test]
    fn unparsable_documents_are_explained_without_the_parsers_drawing() {
        assert!(parse_error("  ").starts_with("The request has no query"));
        let unclosed = parse_error("{ viewer { email }");
        assert!(
            unclosed.starts_with("Syntax error at line 1, column 19: expected selection"),
            "{unclosed}"
        );
        assert!(
            !unclosed.contains("-->") && !unclosed.contains('\n'),
            "{unclosed}"
        );
        assert_eq!(
            parse_error("query {\n  viewer }\n}"),
            "Syntax error at line 3, column 1: expected the end of the document or a query, mutation, subscription or fragment"
        );
    }

    fn runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
        let requests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("requests")
            .enable_all()
            .build()
            .expect("request runtime");
        let fan_out = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("fan-out runtime");
        (requests, fan_out)
    }

    #[test]
    fn an_operation_sent_from_the_fan_out_thread_runs_on_the_request_runtime() {
        let (requests, fan_out) = runtimes();
        let started = fan_out.block_on(run_on(requests.handle(), async {
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            Started::Done(Response::new(async_graphql::Value::from(thread)))
        }));
        let Started::Done(response) = started else {
            panic!("expected a response");
        };
        assert_eq!(response.data, async_graphql::Value::from("requests"));
    }

    #[test]
    fn an_operation_stops_when_its_client_goes_away() {
        let (requests, fan_out) = runtimes();
        let (running, stopped) = tokio::sync::oneshot::channel::<()>();
        let (begun, has_begun) = tokio::sync::oneshot::channel::<()>();
        let waiter = run_on(requests.handle(), async move {
            // Dropped with this future, when the task is stopped.
            let _running = running;
            let _ = begun.send(());
            std::future::pending::<Started>().await
        });
        fan_out.block_on(async {
            tokio::pin!(waiter);
            tokio::select! {
                _ = &mut waiter => panic!("the work never ends by itself"),
                began = has_begun => began.expect("the work began"),
            }
        });
        assert!(
            requests.block_on(stopped).is_err(),
            "the work was stopped, not finished"
        );
    }
}
