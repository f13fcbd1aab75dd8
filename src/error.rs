//! The one error type of the server, its codes, and the catalogue of its
//! messages. Anything that can fail in a request ends up here, so a client
//! always gets a code it can branch on and a sentence a person can act on.
//!
//! A sentence that names an argument, an operation or a status is built from
//! those parts here, once, and spelled for the interface that asked: GraphQL
//! (`specContent`, `releasePlan`, `IN_PROGRESS`) or MCP, in the seed's words
//! (`spec_content`, `release_plan`, `in_progress`).

use std::borrow::Cow;
use std::sync::Arc;

use sea_orm::DbErr;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::workflow::{Action, PlanStatus, Step};

/// Deliberately not `Display`: async-graphql converts any `Display` type into an
/// error without a code, so keeping it off makes `?` go through [`From`] below.
#[derive(Debug, Clone)]
pub enum AppError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// `CONFLICT`: a claim of a plan that is not READY. The message is the
    /// seed's sentence; the status and the claimer are details.
    NotClaimable {
        current: PlanStatus,
        claimed_by: Option<Uuid>,
        claimed_by_caller: bool,
        /// The holder's email and lease end, for a plan someone else holds:
        /// who to ask, and whether waiting (or a take-over) will help.
        holder: Option<(String, Option<chrono::DateTime<chrono::Utc>>)>,
    },
    /// `INVALID_TRANSITION`: the workflow has no such move from `current`;
    /// `allowed` are the moves it has, each with the operation that makes it.
    InvalidTransition {
        current: PlanStatus,
        requested: Action,
        allowed: Vec<Step>,
    },
    /// `CONFLICT` with `reason: STALE_CLAIM`: the claim token sent is not the
    /// plan's current one (the claim expired and the plan was claimed again,
    /// or the claim ended); nothing was changed.
    StaleClaim {
        plan: Uuid,
    },
    /// `CONFLICT` with `reason: BLOCKED`: the plan waits for plans that are
    /// not COMPLETED; they are listed in `blockedBy`.
    Blocked {
        blockers: Vec<Blocker>,
    },
    BadUserInput(String),
    /// `BAD_USER_INPUT` about one argument, named as the interface spells it.
    InvalidArgument {
        argument: Argument,
        problem: InputProblem,
    },
    StorageUnavailable(String),
    /// `STORAGE_UNAVAILABLE`: the database names a spec object the spec
    /// store does not hold — most often instances that share a database
    /// but each keep specs in a local directory.
    SpecMissing {
        key: String,
    },
    /// A query ran longer than the server allows and was stopped.
    Timeout(String),
    /// `RATE_LIMITED` (HTTP 429): a client without an API key has as many
    /// requests open as its address may; it can retry, or send a key.
    RateLimited(String),
    /// `PERSISTED_QUERY_NOT_FOUND`: a request named its document only by
    /// hash, and the server does not know that hash; Apollo's
    /// persisted-queries protocol then sends the document itself.
    PersistedQueryNotFound(String),
    /// A subscriber fell further behind the live stream than its buffer
    /// allows; it resumes losslessly by subscribing again from its cursor.
    ResumeRequired {
        last_cursor: String,
    },
    DatabaseUnavailable,
    /// `INTERNAL`. What failed and the error that made it fail are logged,
    /// never sent: they may contain SQL or paths. The source is kept whole so
    /// that the log line shows its chain of causes, not only its top.
    Internal {
        detail: String,
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

pub type AppResult<T> = Result<T, AppError>;

/// A plan that keeps another from being claimed, as a refusal names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub id: Uuid,
    pub title: String,
    pub status: PlanStatus,
}

/// The interface a request came through, which decides how a message
/// spells the names it mentions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// camelCase arguments and operations, enum names for statuses.
    GraphQl,
    /// The seed's tool vocabulary: snake_case, lower-case statuses.
    Mcp,
}

impl Interface {
    /// A name in this interface's spelling, from its GraphQL spelling: MCP
    /// names every argument and operation in snake_case of the same words
    /// (`specContent` is `spec_content`, `releasePlan` is `release_plan`).
    pub fn spell(self, graphql_name: &'static str) -> Cow<'static, str> {
        match self {
            Interface::GraphQl => Cow::Borrowed(graphql_name),
            Interface::Mcp => {
                let mut snake = String::with_capacity(graphql_name.len() + 4);
                for character in graphql_name.chars() {
                    if character.is_ascii_uppercase() {
                        snake.push('_');
                        snake.push(character.to_ascii_lowercase());
                    } else {
                        snake.push(character);
                    }
                }
                Cow::Owned(snake)
            }
        }
    }

    /// `IN_PROGRESS` (the GraphQL enum) or `in_progress` (the seed's).
    pub fn status(self, status: PlanStatus) -> Cow<'static, str> {
        match self {
            Interface::GraphQl => Cow::Owned(status.to_string()),
            Interface::Mcp => Cow::Borrowed(status.as_str()),
        }
    }

    /// The operation (GraphQL mutation, MCP tool) that requests `action`.
    pub fn operation(self, action: Action) -> Cow<'static, str> {
        self.spell(match action {
            Action::SetStatus(_) => "setPlanStatus",
            Action::Claim => "claimPlan",
            Action::Release => "releasePlan",
            Action::Update => "updatePlan",
            Action::Submit(_) => "submitWork",
            Action::MarkStale => "the stale sweeper",
        })
    }
}

/// An argument that messages name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Argument {
    Id,
    PlanId,
    FeatureId,
    ProjectId,
    UserId,
    ClaimedBy,
    SpecContent,
    ArtifactsMarkdown,
    Status,
    Title,
    Name,
    Label,
    Description,
    Note,
    DisplayName,
    Search,
    Url,
    EventKinds,
    DeliveryId,
    Priority,
    LeaseSeconds,
    ClaimToken,
    BlockedByPlanId,
    After,
}

impl Argument {
    /// The argument as `interface` names it (`specContent`, `spec_content`).
    pub fn name(self, interface: Interface) -> Cow<'static, str> {
        interface.spell(match self {
            Argument::Id => "id",
            Argument::PlanId => "planId",
            Argument::FeatureId => "featureId",
            Argument::ProjectId => "projectId",
            Argument::UserId => "userId",
            Argument::ClaimedBy => "claimedBy",
            Argument::SpecContent => "specContent",
            Argument::ArtifactsMarkdown => "artifactsMarkdown",
            Argument::Status => "status",
            Argument::Title => "title",
            Argument::Name => "name",
            Argument::Label => "label",
            Argument::Description => "description",
            Argument::Note => "note",
            Argument::DisplayName => "displayName",
            Argument::Search => "search",
            Argument::Url => "url",
            Argument::EventKinds => "eventKinds",
            Argument::DeliveryId => "deliveryId",
            Argument::Priority => "priority",
            Argument::LeaseSeconds => "leaseSeconds",
            Argument::ClaimToken => "claimToken",
            Argument::BlockedByPlanId => "blockedByPlanId",
            Argument::After => "after",
        })
    }
}

/// What is wrong with an argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputProblem {
    NotAnId {
        value: String,
    },
    Empty,
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    /// Longer than `limit` characters.
    TooLong {
        limit: usize,
    },
    /// Text with a NUL character: PostgreSQL cannot store it, and no person means it.
    ContainsNul,
    /// A new plan starts as draft or ready, nothing else.
    NotAnInitialStatus(PlanStatus),
    /// A webhook URL must be absolute http(s).
    NotAWebhookUrl,
    /// A webhook URL with a user name or password in it.
    CredentialsInUrl,
    /// A webhook URL whose host is (or resolves to) a loopback, private or
    /// link-local address.
    PrivateAddress {
        host: String,
    },
    /// A webhook URL whose host resolves to nothing.
    Unresolvable {
        host: String,
    },
    /// An event-kind filter that names no kind.
    NoEventKinds,
    /// A number outside `min..=max` (of `unit`, e.g. "seconds").
    OutOfRange {
        min: i64,
        max: i64,
        unit: &'static str,
    },
    /// Not a claim token as `claimPlan` / `claimNextPlan` return them.
    NotAClaimToken,
    /// A claim token of another plan than the one named.
    TokenOfAnotherPlan,
    /// A plan cannot wait for itself.
    SelfDependency,
    /// Dependencies stay inside one project.
    OtherProject,
    /// The dependency would close this cycle (plans named by title and id,
    /// the first repeated at the end).
    DependencyCycle {
        cycle: Vec<String>,
    },
    /// The plan already waits for as many plans as one plan may.
    TooManyBlockers {
        limit: usize,
    },
    /// As many plans as may wait for one plan already wait for this one.
    TooManyWaiters {
        limit: usize,
    },
    /// A list argument with more items than the argument can mean.
    TooManyItems {
        count: usize,
        limit: usize,
    },
}

/// Most plans a cycle refusal names, and the longest title it echoes: a
/// cycle can run through a whole project, and a refusal is read by a person.
pub const CYCLE_PLANS_NAMED: usize = 8;
const TITLE_CHARS_ECHOED: usize = 60;

/// `text` cut to at most `limit` characters, marked when cut.
pub fn echo(text: &str, limit: usize) -> Cow<'_, str> {
    match text.char_indices().nth(limit) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// A plan as a refusal names it: its title (cut short) and id.
pub fn plan_named(title: &str, id: Uuid) -> String {
    format!("\"{}\" ({id})", echo(title, TITLE_CHARS_ECHOED))
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Conflict(_)
            | AppError::NotClaimable { .. }
            | AppError::StaleClaim { .. }
            | AppError::Blocked { .. } => "CONFLICT",
            AppError::InvalidTransition { .. } => "INVALID_TRANSITION",
            AppError::BadUserInput(_) | AppError::InvalidArgument { .. } => "BAD_USER_INPUT",
            AppError::StorageUnavailable(_) | AppError::SpecMissing { .. } => "STORAGE_UNAVAILABLE",
            AppError::Timeout(_) => "TIMEOUT",
            AppError::RateLimited(_) => "RATE_LIMITED",
            AppError::PersistedQueryNotFound(_) => "PERSISTED_QUERY_NOT_FOUND",
            AppError::ResumeRequired { .. } => "RESUME_REQUIRED",
            AppError::DatabaseUnavailable | AppError::Internal { .. } => "INTERNAL",
        }
    }

    /// The sentence a GraphQL client sees (also over plain HTTP and
    /// WebSocket, which speak GraphQL's names).
    pub fn message(&self) -> String {
        self.message_for(Interface::GraphQl)
    }

    /// The sentence a client of `interface` sees.
    pub fn message_for(&self, interface: Interface) -> String {
        match self {
            AppError::Unauthenticated(message)
            | AppError::Forbidden(message)
            | AppError::NotFound(message)
            | AppError::Conflict(message)
            | AppError::BadUserInput(message)
            | AppError::Timeout(message)
            | AppError::RateLimited(message)
            | AppError::PersistedQueryNotFound(message) => message.clone(),
            AppError::NotClaimable {
                current,
                claimed_by_caller,
                holder,
                ..
            } => {
                if *claimed_by_caller {
                    "You have already claimed this plan".into()
                } else if current.is_worked_on() {
                    let held_by = match holder {
                        Some((email, Some(until))) if *until > chrono::Utc::now() => format!(
                            " ({email}, lease until {})",
                            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                        Some((email, Some(until))) => format!(
                            " ({email}, whose lease ran out at {}; {} with {} takes it over)",
                            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            interface.spell("claimNextPlan"),
                            interface.spell("includeStalled"),
                        ),
                        Some((email, None)) => format!(" ({email})"),
                        None => String::new(),
                    };
                    format!(
                        "Plan already claimed by another user{held_by}; use {} to get other work",
                        interface.spell("claimNextPlan")
                    )
                } else {
                    format!(
                        "Plan not in {} status (may be already claimed or in progress)",
                        interface.status(PlanStatus::Ready)
                    )
                }
            }
            AppError::InvalidTransition {
                current,
                requested,
                allowed,
            } => transition_message(interface, *current, *requested, allowed),
            AppError::StaleClaim { .. } => format!(
                "This {} is no longer current: the claim it came from ended (the plan was released, finished, or its lease expired and it was claimed again). Nothing was changed; stop working on this plan and claim another one with {}",
                Argument::ClaimToken.name(interface),
                interface.spell("claimNextPlan")
            ),
            AppError::Blocked { blockers } => {
                let named: Vec<String> = blockers
                    .iter()
                    .map(|blocker| {
                        format!(
                            "\"{}\" ({}, {})",
                            echo(&blocker.title, TITLE_CHARS_ECHOED),
                            blocker.id,
                            interface.status(blocker.status)
                        )
                    })
                    .collect();
                let mut message = format!(
                    "This plan is blocked until these plans are {}: {}",
                    interface.status(PlanStatus::Completed),
                    named.join(", ")
                );
                if blockers.iter().any(|b| b.status == PlanStatus::Failed) {
                    // A failed plan never completes: waiting does not help.
                    message.push_str(&format!(
                        ". A {} plan never completes: a project member must remove that dependency ({}) or replace the failed plan; until then, use {} to get other work",
                        interface.status(PlanStatus::Failed),
                        interface.spell("removePlanDependency"),
                        interface.spell("claimNextPlan"),
                    ));
                }
                message
            }
            AppError::InvalidArgument { argument, problem } => {
                argument_message(interface, *argument, problem)
            }
            AppError::StorageUnavailable(_) => {
                "The spec store is unavailable; try again shortly".into()
            }
            AppError::SpecMissing { key } => format!(
                "The spec object {key} is not in this server's spec store; ask an operator: instances that share a database must share one spec store (gcs or s3, not a local directory), or the object must be restored"
            ),
            AppError::ResumeRequired { last_cursor } => format!(
                "This subscription fell too far behind the live events; subscribe again with after: \"{last_cursor}\" to continue without losing any"
            ),
            AppError::DatabaseUnavailable => {
                "The database is unavailable; try again shortly".into()
            }
            AppError::Internal { .. } => "Internal error; the server log has the details".into(),
        }
    }

    /// The facts behind the message that a program acts on, keyed and
    /// spelled for `interface`: GraphQL puts them in `extensions`, MCP in
    /// the error's structured content.
    pub fn details(&self, interface: Interface) -> Map<String, Value> {
        let key = |name: &'static str| interface.spell(name).into_owned();
        let status = |status: PlanStatus| Value::from(interface.status(status).into_owned());
        let mut details = Map::new();
        match self {
            AppError::InvalidTransition {
                current, allowed, ..
            } => {
                details.insert(key("currentStatus"), status(*current));
                let mut statuses: Vec<Value> = allowed.iter().map(|step| status(step.to)).collect();
                statuses.dedup();
                details.insert(key("allowedStatuses"), Value::Array(statuses));
                let transitions = allowed
                    .iter()
                    .map(|step| {
                        json!({
                            "status": status(step.to),
                            "operation": interface.operation(step.via),
                        })
                    })
                    .collect();
                details.insert(key("allowedTransitions"), Value::Array(transitions));
            }
            AppError::NotClaimable {
                current,
                claimed_by,
                ..
            } => {
                details.insert(key("currentStatus"), status(*current));
                let claimer = claimed_by.map(|id| id.to_string());
                details.insert(key("claimedBy"), json!(claimer));
            }
            AppError::InvalidArgument { argument, .. } => {
                details.insert(key("argument"), json!(argument.name(interface)));
            }
            AppError::ResumeRequired { last_cursor } => {
                details.insert(key("lastCursor"), json!(last_cursor));
            }
            AppError::StaleClaim { .. } => {
                details.insert(key("reason"), json!(self.reason()));
            }
            AppError::Blocked { blockers } => {
                details.insert(key("reason"), json!(self.reason()));
                let ids: Vec<String> = blockers.iter().map(|b| b.id.to_string()).collect();
                details.insert(key("blockedBy"), json!(ids));
                let statuses: Vec<Value> = blockers.iter().map(|b| status(b.status)).collect();
                details.insert(key("blockerStatuses"), Value::Array(statuses));
            }
            _ => {}
        }
        details
    }

    /// Why a CONFLICT happened, when it has a more specific reason than the
    /// code (`STALE_CLAIM`, `BLOCKED`): the `reason` of its details, which
    /// the MCP text also names.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            AppError::StaleClaim { .. } => Some("STALE_CLAIM"),
            AppError::Blocked { .. } => Some("BLOCKED"),
            _ => None,
        }
    }

    pub fn not_member() -> AppError {
        AppError::Forbidden("You are not a member of this project".into())
    }

    pub fn invalid(argument: Argument, problem: InputProblem) -> AppError {
        AppError::InvalidArgument { argument, problem }
    }

    /// `INTERNAL` for a broken expectation with no error behind it (a row
    /// that foreign keys should have kept, a task that ended early).
    pub fn internal(detail: impl Into<String>) -> AppError {
        AppError::Internal {
            detail: detail.into(),
            source: None,
        }
    }

    /// `INTERNAL` caused by `source`, whose chain the log line shows.
    pub fn internal_from(
        detail: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> AppError {
        AppError::Internal {
            detail: detail.into(),
            source: Some(Arc::new(source)),
        }
    }
}

/// `detail: cause: cause of the cause …`, each cause once: many errors
/// already repeat their source's text in their own, which would otherwise
/// read twice.
fn with_causes(detail: &str, source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut text = detail.to_owned();
    let mut next = source;
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// `Cannot setPlanStatus to IN_PROGRESS: the plan is CLAIMED; allowed next
/// statuses from CLAIMED: READY via releasePlan, IN_PROGRESS via updatePlan,
/// REVIEW/COMPLETED via submitWork, FAILED via setPlanStatus` — each status
/// with the operation that reaches it, so that the refused target, when it
/// is reachable at all, is not offered as if the refused call could make it.
fn transition_message(
    interface: Interface,
    current: PlanStatus,
    requested: Action,
    allowed: &[Step],
) -> String {
    let status = |status: PlanStatus| interface.status(status);
    let from = status(current);
    let target = match requested {
        Action::SetStatus(to) => format!(" to {}", status(to)),
        _ => String::new(),
    };
    let allowed_text = if allowed.is_empty() {
        format!("{from} is final; nothing can follow it")
    } else {
        // Grouped by operation, in the order their first status comes.
        let mut groups: Vec<(Cow<'static, str>, Vec<Cow<'static, str>>)> = Vec::new();
        for step in allowed {
            let operation = interface.operation(step.via);
            match groups.iter_mut().find(|(name, _)| *name == operation) {
                Some((_, statuses)) => statuses.push(status(step.to)),
                None => groups.push((operation, vec![status(step.to)])),
            }
        }
        let groups: Vec<String> = groups
            .into_iter()
            .map(|(operation, statuses)| format!("{} via {operation}", statuses.join("/")))
            .collect();
        format!("allowed next statuses from {from}: {}", groups.join(", "))
    };
    format!(
        "Cannot {}{target}: the plan is {from}; {allowed_text}",
        interface.operation(requested)
    )
}

fn argument_message(interface: Interface, argument: Argument, problem: &InputProblem) -> String {
    let name = argument.name(interface);
    match problem {
        InputProblem::NotAnId { value } => format!(
            "{name} {value:?} is not a valid id; ids are UUIDs such as 0192f0c1-7c1e-7a4e-9c1a-1b2c3d4e5f60"
        ),
        InputProblem::Empty => format!("{name} must not be empty"),
        InputProblem::TooLarge { bytes, limit } => {
            format!("{name} is too large: {bytes} bytes, the limit is {limit} bytes")
        }
        InputProblem::TooLong { limit } => {
            format!("{name} is too long: at most {limit} characters")
        }
        InputProblem::ContainsNul => format!("{name} must not contain NUL characters (\\u0000)"),
        InputProblem::NotAnInitialStatus(status) => format!(
            "A new plan starts as {} or {}, not {}",
            interface.status(PlanStatus::Draft),
            interface.status(PlanStatus::Ready),
            interface.status(*status)
        ),
        InputProblem::NotAWebhookUrl => format!(
            "{name} must be an absolute http:// or https:// URL, such as https://example.com/hooks/plangraph"
        ),
        InputProblem::CredentialsInUrl => format!(
            "{name} must not contain a user name or password; receivers check a delivery by its signature"
        ),
        InputProblem::PrivateAddress { host } => format!(
            "{name} points at {host}, a loopback, private or link-local address; webhooks call only public addresses (the server's operator can allow private ones with --webhook-allow-private)"
        ),
        InputProblem::Unresolvable { host } => {
            format!("{name}'s host {host} does not resolve to any address; check its spelling")
        }
        InputProblem::NoEventKinds => format!(
            "{name} must name at least one kind; leave it out (or null) to receive every kind"
        ),
        InputProblem::OutOfRange { min, max, unit } => {
            format!("{name} must be between {min} and {max} {unit}")
        }
        InputProblem::NotAClaimToken => format!(
            "{name} is not a claim token; pass the claimToken that claiming the plan returned"
        ),
        InputProblem::TokenOfAnotherPlan => {
            format!("{name} belongs to another plan; pass the token of this plan's claim")
        }
        InputProblem::SelfDependency => format!("{name}: a plan cannot wait for itself"),
        InputProblem::OtherProject => {
            format!("{name} is a plan of another project; dependencies link plans of one project")
        }
        InputProblem::DependencyCycle { cycle } => {
            let shown = if cycle.len() > CYCLE_PLANS_NAMED {
                let (head, tail) = (&cycle[..CYCLE_PLANS_NAMED - 1], &cycle[cycle.len() - 1]);
                let skipped = cycle.len() - CYCLE_PLANS_NAMED;
                format!("{} → … {skipped} more … → {tail}", head.join(" → "))
            } else {
                cycle.join(" → ")
            };
            format!(
                "{name}: this dependency would make a cycle: {shown}; remove one of its dependencies first"
            )
        }
        InputProblem::TooManyBlockers { limit } => format!(
            "{name}: the plan already waits for {limit} plans, the most one plan may wait for; remove a dependency first, or split the plan"
        ),
        InputProblem::TooManyWaiters { limit } => format!(
            "{name}: {limit} plans already wait for that plan, the most that may wait for one plan; make some of them wait for another plan"
        ),
        InputProblem::TooManyItems { count, limit } => {
            format!("{name} has {count} items; it takes at most {limit} (each distinct value once)")
        }
    }
}

impl From<DbErr> for AppError {
    fn from(error: DbErr) -> AppError {
        if is_unavailable(&error) {
            tracing::warn!(%error, "database unavailable");
            AppError::DatabaseUnavailable
        } else {
            // Logged where it becomes a response, with that context.
            AppError::internal_from("a database statement failed", error)
        }
    }
}

/// Whether a database error means "cannot reach the database" (worth a retry
/// later) rather than a bad statement: pool timeouts, refused or dropped
/// connections, I/O errors mid-query.
fn is_unavailable(error: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as SqlxError;
    let runtime = match error {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(sqlx_error) => matches!(
            sqlx_error.as_ref(),
            SqlxError::Io(_)
                | SqlxError::Tls(_)
                | SqlxError::Protocol(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed
        ),
        RuntimeErr::Internal(_) => matches!(error, DbErr::Conn(_)),
    }
}

impl AppError {
    /// Logs an internal error's detail, which the client is never shown.
    /// Called once per error, where it is turned into a response (a GraphQL
    /// response, an MCP result, an HTTP refusal); `context` says which, e.g.
    /// the GraphQL path of the field.
    pub fn log_if_internal(&self, context: &str) {
        if let AppError::Internal { detail, source } = self {
            let source = source.as_deref().map(|source| source as _);
            let detail = with_causes(detail, source);
            tracing::error!(context, detail = %detail, "internal error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::SubmitTarget;

    #[test]
    fn each_interface_spells_names_its_own_way() {
        let cases = [
            (Argument::PlanId.name(Interface::GraphQl), "planId"),
            (Argument::PlanId.name(Interface::Mcp), "plan_id"),
            (
                Argument::ArtifactsMarkdown.name(Interface::Mcp),
                "artifacts_markdown",
            ),
            (Interface::GraphQl.operation(Action::Release), "releasePlan"),
            (Interface::Mcp.operation(Action::Release), "release_plan"),
            (
                Interface::Mcp.operation(Action::SetStatus(PlanStatus::Ready)),
                "set_plan_status",
            ),
            (
                Interface::Mcp.operation(Action::Submit(SubmitTarget::Review)),
                "submit_work",
            ),
            (
                Interface::Mcp.operation(Action::MarkStale),
                "the stale sweeper",
            ),
            (
                Interface::GraphQl.status(PlanStatus::InProgress),
                "IN_PROGRESS",
            ),
            (Interface::Mcp.status(PlanStatus::InProgress), "in_progress"),
        ];
        for (spelled, expected) in cases {
            assert_eq!(spelled, expected);
        }
    }

    #[test]
    fn a_refused_transition_says_which_operation_reaches_each_status() {
        let from = PlanStatus::Claimed;
        let error = AppError::InvalidTransition {
            current: from,
            requested: Action::SetStatus(PlanStatus::InProgress),
            allowed: crate::workflow::steps_from(from),
        };
        assert_eq!(
            error.message(),
            "Cannot setPlanStatus to IN_PROGRESS: the plan is CLAIMED; allowed next statuses from CLAIMED: READY via releasePlan, IN_PROGRESS via updatePlan, REVIEW/COMPLETED via submitWork, FAILED via setPlanStatus"
        );
        assert_eq!(
            error.message_for(Interface::Mcp),
            "Cannot set_plan_status to in_progress: the plan is claimed; allowed next statuses from claimed: ready via release_plan, in_progress via update_plan, review/completed via submit_work, failed via set_plan_status"
        );
        let details = error.details(Interface::GraphQl);
        assert_eq!(
            details["allowedStatuses"],
            json!(["READY", "IN_PROGRESS", "REVIEW", "COMPLETED", "FAILED"])
        );
        assert_eq!(
            details["allowedTransitions"][1],
            json!({ "status": "IN_PROGRESS", "operation": "updatePlan" })
        );
        let stalled = AppError::InvalidTransition {
            current: PlanStatus::Stalled,
            requested: Action::Claim,
            allowed: crate::workflow::steps_from(PlanStatus::Stalled),
        };
        assert_eq!(
            stalled.message_for(Interface::Mcp),
            "Cannot claim_plan: the plan is stalled; allowed next statuses from stalled: ready/failed via set_plan_status, ready via release_plan, in_progress via update_plan, review/completed via submit_work"
        );
        assert_eq!(
            stalled.details(Interface::Mcp)["allowed_statuses"],
            json!(["ready", "in_progress", "review", "completed", "failed"])
        );
    }

    #[test]
    fn one_error_reads_in_both_interfaces() {
        let error = AppError::invalid(Argument::SpecContent, InputProblem::Empty);
        assert_eq!(error.message(), "specContent must not be empty");
        assert_eq!(
            error.message_for(Interface::Mcp),
            "spec_content must not be empty"
        );
        assert_eq!(error.details(Interface::Mcp)["argument"], "spec_content");
    }

    #[test]
    fn an_internal_error_reads_its_causes_once_each() {
        #[derive(Debug)]
        struct Wrapping(std::io::Error, &'static str);
        impl std::fmt::Display for Wrapping {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.1)
            }
        }
        impl std::error::Error for Wrapping {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let cause = || std::io::Error::other("disk full");
        let quiet = Wrapping(cause(), "cannot write");
        assert_eq!(
            with_causes("saving a spec", Some(&quiet)),
            "saving a spec: cannot write: disk full"
        );
        let repeating = Wrapping(cause(), "cannot write: disk full");
        assert_eq!(
            with_causes("saving a spec", Some(&repeating)),
            "saving a spec: cannot write: disk full"
        );
        let error = AppError::internal_from("saving a spec", quiet);
        assert_eq!(error.code(), "INTERNAL");
        assert_eq!(
            error.message(),
            "Internal error; the server log has the details"
        );
    }
}
