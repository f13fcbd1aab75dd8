//! Grouped `planEvents` subscriptions: each live event is resolved and
//! serialized once per group of subscribers that would receive the same
//! thing, and the same bytes go to every socket of the group.
//!
//! A group is keyed by the API key (so by the user and everything they may
//! see: memberships and revocations act on the whole group alike), the query
//! text, the operation name and the variables except `after`. Subscribers on
//! different keys never share a group, even with equal memberships: proving
//! equal visibility would need the memberships compared on every change.
//!
//! One subscription of a group, a *member*, runs in three steps:
//! 1. it joins the group (created on first use, with its bus receiver taken at
//!    once), so every event committed from then on reaches it;
//! 2. its own *setup* execution authorizes it and replays after `after` (or
//!    notes the newest event id without it), and ends; the member then drops
//!    the group's results for events up to where the setup stopped, so the
//!    seam has no gap and no duplicate, as the per-socket path has;
//! 3. it forwards the group's results, each a shared `Arc<str>` wrapped in the
//!    member's own protocol envelope (`{"type":"next","id":…,"payload":…}`).
//!
//! Per member the server keeps a broadcast receiver (a position in the
//! group's bounded ring of shared results), a few numbers, and the small
//! stream state; no parsed request, no loaders. A member whose socket is
//! slower than the ring is long falls behind alone and is told
//! `RESUME_REQUIRED` with its own cursor, as before. The group's shared
//! execution handles access changes (`FORBIDDEN`, `UNAUTHENTICATED`), lagging
//! on the bus and shutdown; its ending results reach every member, which then
//! completes.
//!
//! Other documents (and `planEvents` documents that cannot be grouped: a
//! literal `after`, several root fields, …) keep the per-socket path of
//! async-graphql's protocol handler.
//!
//! WebSocket connections and groups run on a runtime of their own, one
//! thread: delivering an event to thousands of sockets is thousands of small
//! tasks, and on the main runtime they would queue ahead of the requests
//! (the mutation that caused the event among them). With a thread of their
//! own the operating system shares the cores between requests and fan-out.
//! Queries and mutations sent over a socket go back to the request runtime
//! (`GuardedSchema::execute_stream`), so they cannot hold this thread up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::http::WebSocketProtocols;
use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Name, PathSegment, Pos, Request, Response};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::error::AppError;
use crate::graphql::GuardedSchema;
use crate::graphql::guard::{SocketSession, too_many_operations};
use crate::graphql::subscription::{ALWAYS_DELIVERED, GroupFeed, PlanEventsRole, SetupOutcome};
use crate::observability::ActiveSubscription;
use crate::service::Services;

/// How subscriptions are grouped.
pub struct FanoutSettings {
    /// Results a member may fall behind by (`--subscriber-buffer`).
    pub capacity: usize,
    /// `--max-operations-per-connection`; members count like other operations.
    pub max_operations_per_connection: usize,
    /// Off: every subscription takes the per-socket path.
    pub grouped: bool,
}

/// The groups of this instance.
#[derive(Clone)]
pub struct Fanout {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::runtime::Handle,
    schema: GuardedSchema,
    services: Services,
    settings: FanoutSettings,
    groups: Mutex<HashMap<Arc<GroupKey>, Entry>>,
    serials: AtomicU64,
}

/// What a group's subscribers have in common.
#[derive(Debug, Hash, PartialEq, Eq)]
struct GroupKey {
    key_id: Uuid,
    query: String,
    operation_name: Option<String>,
    /// The variables without `after`, as canonical JSON (sorted by name).
    variables: String,
}

struct Entry {
    serial: u64,
    frames: broadcast::Sender<Frame>,
    members: usize,
    task: tokio::task::AbortHandle,
}

/// What a group sends its members.
#[derive(Clone)]
enum Frame {
    /// The serialized result for event `id` (or [`ALWAYS_DELIVERED`]: an
    /// error that every member receives).
    Result { id: i64, payload: Arc<str> },
    /// The group fell behind the bus after event `cursor`; each member
    /// resumes from its own position, which may be later.
    Resume { cursor: i64 },
    /// The group's subscription ended.
    End,
}

/// A `subscribe` message this module takes over from async-graphql.
pub struct GroupedSubscribe {
    id: String,
    request: Request,
    key: Arc<GroupKey>,
    group_variables: async_graphql::Variables,
    field: Arc<RootField>,
}

impl GroupedSubscribe {
    /// The operation id the client chose.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Where the subscription's one root field is, for errors made here.
struct RootField {
    response_key: String,
    pos: Pos,
}

impl Fanout {
    pub fn new(schema: GuardedSchema, services: Services, settings: FanoutSettings) -> Fanout {
        Fanout {
            inner: Arc::new(Inner {
                runtime: fan_out_runtime(),
                schema,
                services,
                settings,
                groups: Mutex::default(),
                serials: AtomicU64::new(0),
            }),
        }
    }

    /// Where WebSocket connections run.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    /// The subscription `id` of a connection authenticated with `key_id`
    /// as a member of a group, or `None` when it is not groupable (or
    /// grouping is off) and async-graphql runs it on its own.
    pub fn group(&self, key_id: Uuid, id: &str, request: Request) -> Option<GroupedSubscribe> {
        if !self.inner.settings.grouped {
            return None;
        }
        groupable(key_id, id.to_owned(), request)
    }

    /// The messages of one grouped subscription, ending with its `complete`.
    pub fn member(
        &self,
        session: SocketSession,
        protocol: WebSocketProtocols,
        subscribe: GroupedSubscribe,
    ) -> BoxStream<'static, String> {
        let inner = Arc::clone(&self.inner);
        let GroupedSubscribe {
            id,
            request,
            key,
            group_variables,
            field,
        } = subscribe;
        let envelope = Envelope::new(protocol, &id);
        // Counted now, in the order the client subscribed, not when the
        // stream is first polled (members are polled in no set order).
        let limit = inner.settings.max_operations_per_connection;
        let operation = session.open_operation(limit);
        // What only the setup needs, behind one pointer that is freed when
        // the setup ends: everything a stream captures is kept for its life.
        let joining = Box::new(Joining {
            session,
            key,
            request,
            group_variables,
        });
        let stream = async_stream::stream! {
            // Responses are turned into messages before each `yield`: a
            // value alive across one is kept in the stream for its life.
            let Some(_operation) = operation else {
                let message = envelope.next(&refusal(too_many_operations(limit)), inner.schema.limits().max_response_bytes);
                yield message;
                yield envelope.complete();
                return;
            };
            // As every operation on a socket: a key revoked since
            // connection_init stops working here too.
            // Boxed, as the setup below: an idle member should not keep
            // the space of a database query's future.
            let active = Box::pin(inner.services.require_active_key(&joining.session.viewer)).await;
            if let Err(error) = active {
                let message = envelope.next(&refusal(error), inner.schema.limits().max_response_bytes);
                yield message;
                yield envelope.complete();
                return;
            }
            let (_membership, mut frames) = Inner::join(&inner, &joining);
            let outcome = Arc::new(SetupOutcome::default());
            let setup_request = {
                let Joining { session, request, .. } = *joining;
                request
                    .data(session.viewer)
                    .data(PlanEventsRole::Setup(Arc::clone(&outcome)))
            };
            let mut setup = inner.schema.execute_stream(setup_request, None, None, None);
            loop {
                let message = match setup.next().await {
                    Some(response) => envelope.next(&response, inner.schema.limits().max_response_bytes),
                    None => break,
                };
                yield message;
            }
            if !outcome.handed_over.load(Ordering::Acquire) {
                yield envelope.complete();
                return;
            }
            let _open = ActiveSubscription::open();
            drop(setup);
            let start = outcome.last_seen.load(Ordering::Acquire);
            drop(outcome);
            // Every event up to here was delivered or is not for this member.
            let mut position = start;
            loop {
                match frames.recv().await {
                    Ok(Frame::Result { id, payload }) => {
                        if id == ALWAYS_DELIVERED {
                            yield envelope.next_serialized(&payload);
                        } else if id > start {
                            position = position.max(id);
                            yield envelope.next_serialized(&payload);
                        }
                    }
                    Ok(Frame::Resume { cursor }) => {
                        let message = envelope.next(&resume_required(&field, position.max(cursor)), inner.schema.limits().max_response_bytes);
                        yield message;
                        yield envelope.complete();
                        return;
                    }
                    Ok(Frame::End) | Err(RecvError::Closed) => {
                        yield envelope.complete();
                        return;
                    }
                    Err(RecvError::Lagged(_)) => {
                        let message = envelope.next(&resume_required(&field, position), inner.schema.limits().max_response_bytes);
                        yield message;
                        yield envelope.complete();
                        return;
                    }
                }
            }
        };
        stream.boxed()
    }
}

/// What a member needs until it has joined its group and run its setup.
struct Joining {
    session: SocketSession,
    key: Arc<GroupKey>,
    request: Request,
    group_variables: async_graphql::Variables,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<GroupKey>, Entry>> {
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the group of `key`, starting it if there is none. The receiver
    /// gets every result the group sends from now on.
    fn join(inner: &Arc<Inner>, joining: &Joining) -> (Membership, broadcast::Receiver<Frame>) {
        let Joining {
            session,
            key,
            request,
            group_variables,
        } = joining;
        let mut groups = inner.lock();
        if let Some(entry) = groups.get_mut(key) {
            entry.members += 1;
            let membership = Membership {
                inner: Arc::clone(inner),
                key: Arc::clone(key),
                serial: entry.serial,
            };
            return (membership, entry.frames.subscribe());
        }
        let serial = inner.serials.fetch_add(1, Ordering::Relaxed);
        let (frames, receiver) = broadcast::channel(inner.settings.capacity.max(1));
        let position = Arc::new(AtomicI64::new(ALWAYS_DELIVERED));
        // Subscribed to the bus before any member notes where it starts.
        let feed = GroupFeed::new(inner.services.events.subscribe(), Arc::clone(&position));
        let mut group_request = Request::new(request.query.clone())
            .variables(group_variables.clone())
            .data(session.viewer.clone())
            .data(PlanEventsRole::Group(feed));
        group_request.operation_name = request.operation_name.clone();
        let results = inner.schema.execute_stream(group_request, None, None, None);
        let task = inner.runtime.spawn(run_group(
            Arc::clone(inner),
            Arc::clone(key),
            serial,
            results,
            frames.clone(),
            position,
        ));
        groups.insert(
            Arc::clone(key),
            Entry {
                serial,
                frames,
                members: 1,
                task: task.abort_handle(),
            },
        );
        metrics::gauge!("plangraph_subscription_groups").set(groups.len() as f64);
        let membership = Membership {
            inner: Arc::clone(inner),
            key: Arc::clone(key),
            serial,
        };
        (membership, receiver)
    }

    /// Forgets the group `serial` of `key` (if it is still the current one)
    /// and stops its execution; called with the registry locked.
    fn forget(&self, groups: &mut HashMap<Arc<GroupKey>, Entry>, key: &GroupKey, serial: u64) {
        if groups.get(key).is_some_and(|entry| entry.serial == serial) {
            if let Some(entry) = groups.remove(key) {
                entry.task.abort();
            }
            metrics::gauge!("plangraph_subscription_groups").set(groups.len() as f64);
        }
    }
}

/// A runtime on a thread of its own for the WebSocket connections and the
/// groups; the current one if no thread can be started.
fn fan_out_runtime() -> tokio::runtime::Handle {
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("plangraph-fanout".into())
                // Runs for as long as the process: the tasks end at
                // shutdown, the thread with the process.
                .spawn(move || {
                    yield_to_requests();
                    runtime.block_on(std::future::pending::<()>())
                })
                .map(|_| handle)
        });
    match started {
        Ok(handle) => handle,
        Err(error) => {
            tracing::warn!(%error, "no fan-out thread; WebSockets share the main runtime");
            tokio::runtime::Handle::current()
        }
    }
}

/// The fan-out thread's nice value; the request threads keep the process's
/// (0 unless the server was started with another).
///
/// When the cores are busy, the operating system gives a thread of nice 5
/// about a third of the time it gives one of nice 0: a burst of deliveries
/// to thousands of sockets then slows down instead of the mutation that
/// caused it and the requests behind it. When the cores are idle the
/// deliveries run at full speed as before.
const FAN_OUT_NICENESS: i32 = 5;

/// Gives the calling thread the nice value [`FAN_OUT_NICENESS`]. Failing to
/// is harmless (the thread keeps the process's priority; a process started
/// at a higher nice value may not lower it), so it is only logged.
fn yield_to_requests() {
    #[cfg(target_os = "linux")]
    {
        // On Linux a nice value belongs to a thread: PRIO_PROCESS with a
        // thread id changes that thread alone. Lowering one's own priority
        // needs no privilege.
        // SAFETY: plain system calls on the calling thread, no pointers.
        let changed = unsafe {
            let thread = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread, FAN_OUT_NICENESS)
        };
        if changed != 0 {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, "cannot lower the fan-out thread's priority");
        }
    }
}

/// A member's place in its group; the last one out stops the group.
struct Membership {
    inner: Arc<Inner>,
    key: Arc<GroupKey>,
    serial: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut groups = self.inner.lock();
        let last = match groups.get_mut(&self.key) {
            Some(entry) if entry.serial == self.serial => {
                entry.members = entry.members.saturating_sub(1);
                entry.members == 0
            }
            _ => false,
        };
        if last {
            self.inner.forget(&mut groups, &self.key, self.serial);
        }
    }
}

/// A group's shared execution: each result serialized once and sent to every
/// member; when the subscription ends the group is forgotten, then its members
/// told, under the registry's lock, so that a subscriber joining from then on
/// starts a new group and none waits on a finished one.
async fn run_group(
    inner: Arc<Inner>,
    key: Arc<GroupKey>,
    serial: u64,
    mut results: BoxStream<'static, Response>,
    frames: broadcast::Sender<Frame>,
    position: Arc<AtomicI64>,
) {
    let max_bytes = inner.schema.limits().max_response_bytes;
    while let Some(response) = results.next().await {
        if let Some(cursor) = resume_cursor(&response) {
            let _ = frames.send(Frame::Resume { cursor });
            continue;
        }
        let id = position.load(Ordering::Acquire);
        let written = match crate::graphql::json::response_text(&response, max_bytes) {
            Err(error @ crate::graphql::json::WriteError::TooLarge { .. }) => {
                crate::graphql::json::response_text(&refusal(error.into_app_error()), max_bytes)
            }
            written => written,
        };
        match written {
            Ok(payload) => {
                metrics::counter!("plangraph_subscription_group_results_total").increment(1);
                // No member listening is normal for a moment: the last one
                // just left and this task is being stopped.
                let _ = frames.send(Frame::Result {
                    id,
                    payload: payload.into(),
                });
            }
            Err(error) => tracing::error!(?error, "cannot serialize a subscription result"),
        }
    }
    let mut groups = inner.lock();
    if groups.get(&key).is_some_and(|entry| entry.serial == serial) {
        groups.remove(&key);
        metrics::gauge!("plangraph_subscription_groups").set(groups.len() as f64);
    }
    let _ = frames.send(Frame::End);
}

/// The cursor of a `RESUME_REQUIRED` ending, if `response` is one.
fn resume_cursor(response: &Response) -> Option<i64> {
    response
        .errors
        .iter()
        .find_map(|error| match error.source::<AppError>() {
            Some(AppError::ResumeRequired { last_cursor }) => last_cursor.parse().ok(),
            _ => None,
        })
}

/// An error of the whole operation, as the schema's guard reports one.
fn refusal(error: AppError) -> Response {
    error.log_if_internal("websocket subscribe");
    Response::from_errors(vec![error.into_server_error()])
}

/// `RESUME_REQUIRED` after `cursor`, shaped as the field's own error.
fn resume_required(field: &RootField, cursor: i64) -> Response {
    let mut error = AppError::ResumeRequired {
        last_cursor: cursor.to_string(),
    }
    .into_server_error();
    error.locations = vec![field.pos];
    error.path = vec![PathSegment::Field(field.response_key.clone())];
    Response::from_errors(vec![error])
}

/// The `complete` of operation `id` (the same in both protocols).
pub fn complete_message(id: &str) -> String {
    Envelope::new(WebSocketProtocols::GraphQLWS, id).complete
}

/// A member's protocol envelope around shared payloads.
struct Envelope {
    /// `{"type":"next","id":"…","payload":`
    head: String,
    /// `{"type":"complete","id":"…"}`
    complete: String,
}

impl Envelope {
    fn new(protocol: WebSocketProtocols, id: &str) -> Envelope {
        let kind = match protocol {
            WebSocketProtocols::GraphQLWS => "next",
            WebSocketProtocols::SubscriptionsTransportWS => "data",
        };
        let id = Value::String(id.to_owned()).to_string();
        Envelope {
            head: format!(r#"{{"type":"{kind}","id":{id},"payload":"#),
            complete: format!(r#"{{"type":"complete","id":{id}}}"#),
        }
    }

    fn next_serialized(&self, payload: &str) -> String {
        let mut message = String::with_capacity(self.head.len() + payload.len() + 1);
        message.push_str(&self.head);
        message.push_str(payload);
        message.push('}');
        message
    }

    /// `response` in this envelope, in at most `max_bytes` of JSON (a
    /// longer one is replaced by its refusal).
    fn next(&self, response: &Response, max_bytes: usize) -> String {
        match crate::graphql::json::response_text(response, max_bytes) {
            Ok(payload) => self.next_serialized(&payload),
            Err(error @ crate::graphql::json::WriteError::TooLarge { .. }) => {
                self.next(&refusal(error.into_app_error()), max_bytes)
            }
            Err(error) => {
                tracing::error!(?error, "cannot serialize a subscription result");
                self.next_serialized(r#"{"data":null}"#)
            }
        }
    }

    fn complete(&self) -> String {
        self.complete.clone()
    }
}

/// A `planEvents` subscription that can be grouped: one operation, a
/// subscription whose only root field is `planEvents`, with `after` absent or
/// given by a nullable variable used nowhere else.
fn groupable(key_id: Uuid, id: String, request: Request) -> Option<GroupedSubscribe> {
    let document = async_graphql::parser::parse_query(&request.query).ok()?;
    let operation = match (&document.operations, &request.operation_name) {
        (DocumentOperations::Single(operation), None) => operation,
        (DocumentOperations::Single(_), Some(_)) => return None,
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name.as_str())?,
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()?
        }
        (DocumentOperations::Multiple(_), None) => return None,
    };
    let operation = &operation.node;
    if operation.ty != OperationType::Subscription || !operation.directives.is_empty() {
        return None;
    }
    let [root] = operation.selection_set.node.items.as_slice() else {
        return None;
    };
    let Selection::Field(field) = &root.node else {
        return None;
    };
    if field.node.name.node != "planEvents" || !field.node.directives.is_empty() {
        return None;
    }
    let mut group_variables = request.variables.clone();
    if let Some((_, value)) = field
        .node
        .arguments
        .iter()
        .find(|(name, _)| name.node == "after")
    {
        let async_graphql_value::Value::Variable(variable) = &value.node else {
            // A literal cursor would make the document differ per subscriber.
            return None;
        };
        let definition = operation
            .variable_definitions
            .iter()
            .find(|definition| definition.node.name.node == *variable)?;
        if !definition.node.var_type.node.nullable || uses(&request.query, variable) != 2 {
            return None;
        }
        group_variables.insert(variable.clone(), async_graphql::Value::Null);
    }
    let variables = serde_json::to_string(&group_variables).ok()?;
    let key = GroupKey {
        key_id,
        query: request.query.clone(),
        operation_name: request.operation_name.clone(),
        variables,
    };
    let root_field = RootField {
        response_key: field.node.response_key().node.to_string(),
        pos: field.pos,
    };
    Some(GroupedSubscribe {
        id,
        request,
        key: Arc::new(key),
        group_variables,
        field: Arc::new(root_field),
    })
}

/// How often `$name` occurs in `query` as a whole variable name.
fn uses(query: &str, name: &Name) -> usize {
    let needle = format!("${name}");
    query
        .match_indices(&needle)
        .filter(|(at, _)| {
            query[at + needle.len()..]
                .chars()
                .next()
                .is_none_or(|next| !(next.is_ascii_alphanumeric() || next == '_'))
        })
        .count()
}
