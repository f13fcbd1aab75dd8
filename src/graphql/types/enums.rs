//! The schema's enums: the workflow's own, spelled as GraphQL clients see them.

use async_graphql::Enum;

/// Where a plan is in the workflow:
/// DRAFT → READY → CLAIMED → IN_PROGRESS → REVIEW → COMPLETED, or STALLED / FAILED.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "PlanStatus", remote = "crate::workflow::PlanStatus")]
pub enum PlanStatus {
    /// Being written; not yet offered to workers.
    Draft,
    /// Published and waiting for a worker to claim it.
    Ready,
    /// A worker claimed it and has not reported progress yet.
    Claimed,
    /// The claimer is working on it (each updatePlan moves it here).
    InProgress,
    /// No activity for longer than the stale threshold; the claim is kept.
    Stalled,
    /// Work submitted and awaiting approval.
    Review,
    /// Done; a feature version records the implementation. Final.
    Completed,
    /// Abandoned as failed; artifacts are kept. Final.
    Failed,
}

/// Where `submitWork` sends a plan.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::workflow::SubmitTarget")]
pub enum SubmitStatus {
    /// Needs approval: the plan waits in REVIEW.
    Review,
    /// Work is already on main: the plan completes and a feature version is cut.
    Completed,
}

/// Who may approve work in REVIEW (and so complete it) in a project; no
/// self-approval where the project asks for review, as on GitHub.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::workflow::ReviewPolicy")]
pub enum ReviewPolicy {
    /// Any member or owner, the submitter included; workers may also submit
    /// straight to COMPLETED.
    AnyMember,
    /// Any member or owner but the one who submitted the work; workers
    /// submit to REVIEW, not straight to COMPLETED.
    OtherThanSubmitter,
    /// Project owners only; members submit to REVIEW.
    Owners,
}

/// A member's rights in a project.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::workflow::Role")]
pub enum ProjectRole {
    /// Everything a member can do, plus managing members, releasing others'
    /// claims and failing others' plans.
    Owner,
    /// Creates and works on features and plans.
    Member,
    /// Reads only.
    Viewer,
}

/// What happened to a plan, as recorded in its audit trail.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::workflow::EventKind")]
pub enum PlanEventKind {
    /// The plan was created.
    Created,
    /// The spec was replaced (updatePlan).
    Updated,
    /// A status change without a more specific kind (e.g. DRAFT → READY).
    StatusChanged,
    /// A worker claimed the plan.
    Claimed,
    /// The claim was released and the plan is READY again.
    Released,
    /// Work was submitted for review.
    Submitted,
    /// The plan completed and a feature version was cut.
    Completed,
    /// The stale sweeper marked the plan STALLED.
    Stalled,
    /// The plan was marked FAILED.
    Failed,
    /// The feature moved past the spec this open plan was written against (a
    /// new version, or an amendment of its version): see `Plan.specDrift`.
    /// Once, when the plan becomes drifted; again only after a rebase.
    SpecDrifted,
    /// The plan was rebased onto the feature's current version (`rebasePlan`).
    Rebased,
    /// The plan's priority changed (setPlanPriority).
    PriorityChanged,
    /// The plan now waits for another plan (addPlanDependency).
    DependencyAdded,
    /// The plan no longer waits for another plan (removePlanDependency).
    DependencyRemoved,
    /// The plan's last unfinished blocker completed or was removed: it can be claimed.
    Unblocked,
}
