//! The plan state machine of docs/workflow.md, as pure functions.
//!
//! Everything here is decided from values the caller already loaded: no I/O, no
//! clock. The service layer turns a [`Transition`] into one conditional UPDATE plus
//! an event row, so this file is the single place where the workflow table lives.

pub use entity::enums::{EventKind, PlanStatus, ReviewPolicy, Role};

/// Who asks for a change, relative to the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A project member.
    User {
        role: Role,
        /// The caller holds the plan's claim.
        is_claimer: bool,
        /// The caller submitted the plan's work (meaningful in review).
        is_submitter: bool,
        /// The project's rule for who may approve work: it decides whether
        /// this member may complete work, not only where the plan may go.
        review_policy: ReviewPolicy,
    },
    /// The stale sweeper.
    System,
}

/// The two targets `submitWork` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubmitTarget {
    Review,
    Completed,
}

impl SubmitTarget {
    /// The status an accepted submit leaves the plan in.
    pub fn status(self) -> PlanStatus {
        match self {
            SubmitTarget::Review => PlanStatus::Review,
            SubmitTarget::Completed => PlanStatus::Completed,
        }
    }
}

/// A submit of the plan as it is now.
pub struct SubmitRetry<'a> {
    pub status: PlanStatus,
    pub is_submitter: bool,
    pub stored_artifacts: Option<&'a str>,
    /// The claim generation of the plan now, and of the token sent, if any.
    pub claim_generation: i64,
    pub token_generation: Option<i64>,
}

/// Whether a submit repeats the one that put the plan where it is: an agent
/// whose answer was lost retries, and must hear "accepted", not
/// STALE_CLAIM ("stop working"), for work that went through. It is a repeat
/// when the plan is in the status the submit asks for, submitted by the
/// caller with the same artifacts, under the claim its token (if sent)
/// names — a claim sent back and submitted again has another generation.
pub fn repeats_accepted_submit(target: SubmitTarget, artifacts: &str, now: SubmitRetry) -> bool {
    now.status == target.status()
        && now.is_submitter
        && now.stored_artifacts == Some(artifacts)
        && now
            .token_generation
            .is_none_or(|generation| generation == now.claim_generation)
}

/// Every request that can change a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    SetStatus(PlanStatus),
    Claim,
    Release,
    /// Replace the spec (`updatePlan`).
    Update,
    Submit(SubmitTarget),
    /// The stale sweeper found no activity for longer than the threshold.
    MarkStale,
}

impl Action {
    /// Every action, with every target status, for exhaustive tests and for
    /// listing what is possible from a status.
    pub fn all() -> Vec<Action> {
        let mut actions: Vec<Action> = PlanStatus::ALL.into_iter().map(Action::SetStatus).collect();
        actions.extend([
            Action::Claim,
            Action::Release,
            Action::Update,
            Action::Submit(SubmitTarget::Review),
            Action::Submit(SubmitTarget::Completed),
            Action::MarkStale,
        ]);
        actions
    }
}

/// What happens to `claimed_by` / `claimed_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimEffect {
    Keep,
    /// The caller becomes the claimer.
    TakeByCaller,
    /// Work sent back from review returns to whoever submitted it.
    ReturnToSubmitter,
    Clear,
}

/// An allowed change and all of its side effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: PlanStatus,
    pub to: PlanStatus,
    pub claim: ClaimEffect,
    /// Claimer activity: moves `last_activity_at` so the sweeper leaves the plan alone.
    pub records_activity: bool,
    /// `submitWork` stores the artifacts and records the caller as submitter.
    pub records_submission: bool,
    /// Completion cuts a new feature version in the same transaction.
    pub creates_version: bool,
    /// `updatePlan` writes a new spec object.
    pub replaces_spec: bool,
    pub event: EventKind,
}

/// A move a project member can make from some status: the status it
/// reaches and the action that reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub to: PlanStatus,
    pub via: Action,
}

/// Why a change is refused. The service maps these to GraphQL error codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not allowed from the current status; carries what is, and how.
    InvalidTransition {
        from: PlanStatus,
        requested: Action,
        allowed: Vec<Step>,
    },
    /// Claiming a plan that is not READY: someone holds it, or it is not
    /// up for grabs (yet, or any more).
    NotClaimable { from: PlanStatus },
    /// The move exists but this caller may not make it.
    Forbidden(String),
}

/// Decides whether `actor` may apply `action` to a plan in status `from`.
pub fn decide(from: PlanStatus, action: Action, actor: Actor) -> Result<Transition, Refusal> {
    // Before the plan's state: a viewer told that a plan is claimed, or
    // not ready, would read it as "try again later", which never helps.
    refuse_viewers(actor)?;
    let transition = shape(from, action).ok_or_else(|| refuse_shape(from, action))?;
    authorize(&transition, action, actor)?;
    Ok(transition)
}

/// Every move a project member can request from `from` to another status,
/// by target in workflow order: what an `INVALID_TRANSITION` error offers
/// instead, so that it says how to reach each status, not only which.
pub fn steps_from(from: PlanStatus) -> Vec<Step> {
    let mut steps: Vec<Step> = Action::all()
        .into_iter()
        .filter(|action| *action != Action::MarkStale)
        .filter_map(|action| {
            let to = shape(from, action)?.to;
            (to != from).then_some(Step { to, via: action })
        })
        .collect();
    // Stable: moves to one status keep the order of `Action::all`.
    steps.sort_by_key(|step| step.to);
    steps
}

/// Every move a member can request from `from` ([`steps_from`]), each with
/// the refusal `actor` would get for it (`None`: allowed): what a client
/// offers a person, decided by the same rules as the request itself.
pub fn moves_for(from: PlanStatus, actor: Actor) -> Vec<(Step, Option<Refusal>)> {
    steps_from(from)
        .into_iter()
        .map(|step| (step, decide(from, step.via, actor).err()))
        .collect()
}

/// Most moves [`moves_for`] can list from one status; `Plan.availableActions`
/// is priced at this length.
pub const MAX_MOVES: usize = 8;

/// Statuses reachable from `from` by any request of a project member, in
/// workflow order; this is the "allowed" list of an `INVALID_TRANSITION` error.
pub fn allowed_next(from: PlanStatus) -> Vec<PlanStatus> {
    let mut next: Vec<PlanStatus> = steps_from(from).iter().map(|step| step.to).collect();
    next.dedup();
    next
}

/// The workflow table: which action moves which status where, ignoring who asks.
fn shape(from: PlanStatus, action: Action) -> Option<Transition> {
    use PlanStatus::*;
    let base = Transition {
        from,
        to: from,
        claim: ClaimEffect::Keep,
        records_activity: false,
        records_submission: false,
        creates_version: false,
        replaces_spec: false,
        event: EventKind::StatusChanged,
    };
    let transition = match (from, action) {
        (Draft, Action::SetStatus(Ready)) => Transition { to: Ready, ..base },
        (Ready, Action::SetStatus(Draft)) => Transition { to: Draft, ..base },
        (Ready, Action::Claim) => Transition {
            to: Claimed,
            claim: ClaimEffect::TakeByCaller,
            records_activity: true,
            event: EventKind::Claimed,
            ..base
        },
        // The seed: update_plan "automatically updates last_activity_at",
        // whoever holds the plan.
        (Draft | Ready, Action::Update) => Transition {
            records_activity: true,
            replaces_spec: true,
            event: EventKind::Updated,
            ..base
        },
        (Claimed | InProgress | Stalled, Action::Update) => Transition {
            to: InProgress,
            records_activity: true,
            replaces_spec: true,
            event: EventKind::Updated,
            ..base
        },
        (Claimed | InProgress | Stalled, Action::Release) => Transition {
            to: Ready,
            claim: ClaimEffect::Clear,
            event: EventKind::Released,
            ..base
        },
        (Claimed | InProgress | Stalled, Action::Submit(SubmitTarget::Review)) => Transition {
            to: Review,
            claim: ClaimEffect::Clear,
            records_activity: true,
            records_submission: true,
            event: EventKind::Submitted,
            ..base
        },
        (Claimed | InProgress | Stalled, Action::Submit(SubmitTarget::Completed)) => Transition {
            to: Completed,
            claim: ClaimEffect::Clear,
            records_activity: true,
            records_submission: true,
            creates_version: true,
            event: EventKind::Completed,
            ..base
        },
        (Review, Action::SetStatus(Completed)) => Transition {
            to: Completed,
            claim: ClaimEffect::Clear,
            creates_version: true,
            event: EventKind::Completed,
            ..base
        },
        (Review, Action::SetStatus(InProgress)) => Transition {
            to: InProgress,
            claim: ClaimEffect::ReturnToSubmitter,
            records_activity: true,
            ..base
        },
        (Stalled, Action::SetStatus(Ready)) => Transition {
            to: Ready,
            claim: ClaimEffect::Clear,
            event: EventKind::Released,
            ..base
        },
        (Claimed | InProgress | Stalled | Review, Action::SetStatus(Failed)) => Transition {
            to: Failed,
            claim: ClaimEffect::Clear,
            event: EventKind::Failed,
            ..base
        },
        (Claimed | InProgress, Action::MarkStale) => Transition {
            to: Stalled,
            event: EventKind::Stalled,
            ..base
        },
        _ => return None,
    };
    Some(transition)
}

fn refuse_shape(from: PlanStatus, action: Action) -> Refusal {
    if action == Action::Claim {
        return Refusal::NotClaimable { from };
    }
    Refusal::InvalidTransition {
        from,
        requested: action,
        allowed: steps_from(from),
    }
}

fn refuse_viewers(actor: Actor) -> Result<(), Refusal> {
    match actor {
        Actor::User { role, .. } if !role.can_write() => Err(Refusal::Forbidden(
            "Viewers can read this project but not change it; ask an owner for the member role"
                .into(),
        )),
        _ => Ok(()),
    }
}

fn authorize(transition: &Transition, action: Action, actor: Actor) -> Result<(), Refusal> {
    let (role, is_claimer, is_submitter, policy) = match actor {
        Actor::System => {
            return if action == Action::MarkStale {
                Ok(())
            } else {
                Err(Refusal::Forbidden(
                    "the system only marks plans stalled".into(),
                ))
            };
        }
        Actor::User {
            role,
            is_claimer,
            is_submitter,
            review_policy,
        } => (role, is_claimer, is_submitter, review_policy),
    };
    let from = transition.from;
    let allowed = match action {
        Action::MarkStale => {
            return Err(Refusal::Forbidden(
                "Only the stale sweeper marks plans stalled".into(),
            ));
        }
        Action::Update if from.is_worked_on() => is_claimer,
        // Completing one's own work straight away approves it.
        Action::Submit(SubmitTarget::Completed)
            if is_claimer && !may_approve(policy, role, true) =>
        {
            return Err(Refusal::Forbidden(format!(
                "This project reviews work before it is completed: submit it with status REVIEW; {} can then approve it",
                approvers(policy)
            )));
        }
        Action::Submit(_) => is_claimer,
        Action::SetStatus(PlanStatus::Completed)
            if from == PlanStatus::Review && !may_approve(policy, role, is_submitter) =>
        {
            return Err(Refusal::Forbidden(format!(
                "This project's review policy ({}) does not let you approve this work: {} can approve it",
                policy_name(policy),
                approvers(policy)
            )));
        }
        Action::Release => is_claimer || role == Role::Owner,
        // Review has no claimer: the claim moved to the submitter's name.
        Action::SetStatus(PlanStatus::Failed) if from == PlanStatus::Review => {
            is_submitter || role == Role::Owner
        }
        Action::SetStatus(PlanStatus::Failed) => is_claimer || role == Role::Owner,
        _ => true,
    };
    if allowed {
        return Ok(());
    }
    let who = match action {
        Action::Update => "Only the user who claimed this plan can update it",
        Action::Submit(_) => "Only the user who claimed this plan can submit work for it",
        Action::Release => "Only the claimer or a project owner can release this plan",
        _ => "Only the claimer (or submitter) or a project owner can mark this plan failed",
    };
    Err(Refusal::Forbidden(who.into()))
}

/// A project's (or feature's) open plans when `claimNextPlan` found none to
/// claim, counted by what holds each back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub drafts: u64,
    /// READY but waiting for plans not COMPLETED (failed ones included).
    pub ready_blocked: u64,
    /// Of those, the ones waiting for a FAILED plan: it never completes, so
    /// only a person frees them (removing or replacing the dependency).
    pub ready_blocked_by_failed: u64,
    /// READY and free, but drifted, and the caller skips drifted plans.
    pub ready_skipped_as_drifted: u64,
    /// CLAIMED or IN_PROGRESS: someone works on them; and READY plans free
    /// to claim that a concurrent claim was taking as this one looked.
    pub held: u64,
    pub in_review: u64,
    /// STALLED with the lease run out: a take-over (`includeStalled`) gets one.
    pub stalled_expired: u64,
    /// STALLED with the lease still running: its holder may come back.
    pub stalled_waiting: u64,
}

/// Why there is nothing to claim, as a fleet agent acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NothingReady {
    /// No open plan is left: stop.
    Done,
    /// Ready plans were left out as drifted: rebase them, or claim without
    /// skipping drifted plans.
    SkippedAsDrifted,
    /// Stalled plans can be taken over (claim with `includeStalled`).
    Stalled,
    /// Others are working, reviewing or holding leases: try again later.
    Wait,
    /// Only a person moves the rest on (drafts to mark ready, dependencies
    /// on failed plans to remove): escalate instead of polling.
    NeedsPerson,
}

impl NothingReady {
    /// As the APIs spell it.
    pub fn code(self) -> &'static str {
        match self {
            NothingReady::Done => "DONE",
            NothingReady::SkippedAsDrifted => "SKIPPED_AS_DRIFTED",
            NothingReady::Stalled => "STALLED",
            NothingReady::Wait => "WAIT",
            NothingReady::NeedsPerson => "NEEDS_PERSON",
        }
    }
}

impl Backlog {
    pub fn open(&self) -> u64 {
        self.drafts
            + self.ready_blocked
            + self.ready_skipped_as_drifted
            + self.held
            + self.in_review
            + self.stalled_expired
            + self.stalled_waiting
    }

    /// The most useful reason first: an agent that can act (rebase, take
    /// over) is told so before one that should wait, and "a person is
    /// needed" only when nothing else will move.
    pub fn reason(&self) -> NothingReady {
        let waiting_on_work = self.held
            + self.in_review
            + self.stalled_waiting
            + (self.ready_blocked - self.ready_blocked_by_failed.min(self.ready_blocked));
        if self.open() == 0 {
            NothingReady::Done
        } else if self.ready_skipped_as_drifted > 0 {
            NothingReady::SkippedAsDrifted
        } else if self.stalled_expired > 0 {
            NothingReady::Stalled
        } else if waiting_on_work > 0 {
            NothingReady::Wait
        } else {
            NothingReady::NeedsPerson
        }
    }
}

/// Whether a member with `role` may approve work (REVIEW → COMPLETED, or
/// completing their own claim) under `policy`; `is_submitter`: the work is
/// theirs. GitHub's rule for pull requests is the model: no self-approval
/// where the project asks for review.
pub fn may_approve(policy: ReviewPolicy, role: Role, is_submitter: bool) -> bool {
    role.can_write()
        && match policy {
            ReviewPolicy::AnyMember => true,
            ReviewPolicy::OtherThanSubmitter => !is_submitter,
            ReviewPolicy::Owners => role == Role::Owner,
        }
}

/// Who may approve under `policy`, as a refusal or a submit answer says it.
pub fn approvers(policy: ReviewPolicy) -> &'static str {
    match policy {
        ReviewPolicy::AnyMember => "any member or owner of the project",
        ReviewPolicy::OtherThanSubmitter => {
            "any member or owner of the project other than the submitter"
        }
        ReviewPolicy::Owners => "a project owner",
    }
}

/// The policy as the API spells it.
pub fn policy_name(policy: ReviewPolicy) -> &'static str {
    match policy {
        ReviewPolicy::AnyMember => "ANY_MEMBER",
        ReviewPolicy::OtherThanSubmitter => "OTHER_THAN_SUBMITTER",
        ReviewPolicy::Owners => "OWNERS",
    }
}

// ---------------------------------------------------------------------------
// Fleets: priorities, leases, claim tokens, dependencies.
// ---------------------------------------------------------------------------

/// Plan priorities: 0 = most urgent … 4 = someday.
pub const PRIORITIES: std::ops::RangeInclusive<i32> = 0..=4;
/// A new plan's priority unless its creator says otherwise.
pub const DEFAULT_PRIORITY: i32 = 2;

/// The shortest lease a caller may ask for: short enough for tests and for
/// agents that heartbeat often, long enough that a lease is not pure overhead.
pub const MIN_LEASE_SECONDS: i64 = 1;
/// The longest lease a caller may ask for (7 days): a crashed agent's plan
/// must come back some day without a person noticing.
pub const MAX_LEASE_SECONDS: i64 = 7 * 24 * 3600;

/// Most plans one plan may wait for. A plan that needs more is too large to
/// be one plan; the bound also prices `Plan.blockedBy` in the query cost
/// model at its real length, so nested dependency lists cannot multiply
/// unseen (`blockedBy { blockedBy { … } }` over a large graph).
pub const MAX_BLOCKERS: usize = 10;
/// Most plans that may wait for one plan: a foundation plan can block a
/// whole feature's worth, and `Plan.blocks` is priced at this length.
pub const MAX_WAITERS: usize = 50;

/// The fencing token of one claim of one plan. Claims of a plan are numbered
/// (`generation`); every claim gets the next number, so a token from an
/// earlier claim — the plan stalled and was claimed again, even by the same
/// user — no longer matches. Written `ct_<plan id, 32 hex>_<generation>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimToken {
    pub plan: uuid::Uuid,
    pub generation: i64,
}

impl ClaimToken {
    /// `None` unless `text` is a token as [`ClaimToken::to_string`] writes it.
    pub fn parse(text: &str) -> Option<ClaimToken> {
        let rest = text.trim().strip_prefix("ct_")?;
        let (plan, generation) = rest.split_once('_')?;
        Some(ClaimToken {
            plan: uuid::Uuid::try_parse(plan).ok()?,
            generation: generation.parse().ok().filter(|number| *number > 0)?,
        })
    }

    /// The token of the current claim of a plan, if it is claimed.
    pub fn current(plan: uuid::Uuid, claimed: bool, generation: i64) -> Option<ClaimToken> {
        (claimed && generation > 0).then_some(ClaimToken { plan, generation })
    }
}

impl std::fmt::Display for ClaimToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "ct_{}_{}", self.plan.simple(), self.generation)
    }
}

/// What a heartbeat of the claimer does to a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// Renews the lease; the status stays. Not an event: heartbeats would
    /// flood the audit trail and every subscriber.
    Renew,
    /// The plan had stalled and its holder is back: IN_PROGRESS again, with
    /// an event (a status change, which happens once per stall).
    Resume,
}

/// Whether a heartbeat is possible in `from`: only a held claim has a lease.
/// `None` when nobody holds the plan.
pub fn heartbeat(from: PlanStatus) -> Option<Heartbeat> {
    match from {
        PlanStatus::Claimed | PlanStatus::InProgress => Some(Heartbeat::Renew),
        PlanStatus::Stalled => Some(Heartbeat::Resume),
        _ => None,
    }
}

/// A plan is blocked while any of its blockers is not COMPLETED. A FAILED
/// blocker keeps it blocked: the work it waited for was never done, so a
/// person decides (remove the dependency, or plan the work again).
pub fn is_blocked(blocker_statuses: impl IntoIterator<Item = PlanStatus>) -> bool {
    blocker_statuses
        .into_iter()
        .any(|status| status != PlanStatus::Completed)
}

/// The cycle that "`plan` waits for `blocked_by`" would close, given the
/// existing `(waiter, blocker)` edges: `[plan, blocked_by, …, plan]`, or
/// `None` when there is none. Breadth-first, so the cycle named is a shortest one.
pub fn dependency_cycle(
    edges: &[(uuid::Uuid, uuid::Uuid)],
    plan: uuid::Uuid,
    blocked_by: uuid::Uuid,
) -> Option<Vec<uuid::Uuid>> {
    use std::collections::{HashMap, VecDeque};
    if plan == blocked_by {
        return Some(vec![plan, plan]);
    }
    let mut waits_for: HashMap<uuid::Uuid, Vec<uuid::Uuid>> = HashMap::new();
    for (waiter, blocker) in edges {
        waits_for.entry(*waiter).or_default().push(*blocker);
    }
    // Reached from `blocked_by` through whom.
    let mut came_from: HashMap<uuid::Uuid, uuid::Uuid> = HashMap::new();
    let mut queue = VecDeque::from([blocked_by]);
    while let Some(current) = queue.pop_front() {
        if current == plan {
            let mut path = vec![plan];
            let mut step = plan;
            while step != blocked_by {
                let Some(previous) = came_from.get(&step) else {
                    break;
                };
                step = *previous;
                path.push(step);
            }
            path.push(plan);
            path.reverse();
            return Some(path);
        }
        for next in waits_for.get(&current).into_iter().flatten() {
            if *next != blocked_by && !came_from.contains_key(next) {
                came_from.insert(*next, current);
                queue.push_back(*next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use PlanStatus::*;

    #[test]
    fn moves_offered_are_the_moves_decided() {
        for from in PlanStatus::ALL {
            assert!(moves_for(from, CLAIMER).len() <= MAX_MOVES, "{from:?}");
        }
        let viewer = Actor::User {
            role: Role::Viewer,
            is_claimer: true,
            is_submitter: false,
            review_policy: ReviewPolicy::AnyMember,
        };
        assert!(
            moves_for(Ready, viewer)
                .iter()
                .all(|(_, refusal)| matches!(refusal, Some(Refusal::Forbidden(_))))
        );
        let submitter = Actor::User {
            role: Role::Member,
            is_claimer: false,
            is_submitter: true,
            review_policy: ReviewPolicy::OtherThanSubmitter,
        };
        let approve = moves_for(Review, submitter)
            .into_iter()
            .find(|(step, _)| step.to == Completed)
            .expect("REVIEW → COMPLETED is a move");
        assert!(
            matches!(approve.1, Some(Refusal::Forbidden(_))),
            "no self-approval"
        );
        let send_back = moves_for(Review, submitter)
            .into_iter()
            .find(|(step, _)| step.to == InProgress)
            .expect("REVIEW → IN_PROGRESS is a move");
        assert_eq!(send_back.1, None);
    }

    #[test]
    fn a_submit_repeats_only_the_accepted_one_of_the_same_claim() {
        let accepted = || SubmitRetry {
            status: Review,
            is_submitter: true,
            stored_artifacts: Some("PR #1"),
            claim_generation: 3,
            token_generation: Some(3),
        };
        let review = SubmitTarget::Review;
        assert!(repeats_accepted_submit(review, "PR #1", accepted()));
        let without_token = SubmitRetry {
            token_generation: None,
            ..accepted()
        };
        assert!(repeats_accepted_submit(review, "PR #1", without_token));
        assert!(
            !repeats_accepted_submit(review, "PR #2", accepted()),
            "other work"
        );
        assert!(!repeats_accepted_submit(
            SubmitTarget::Completed,
            "PR #1",
            accepted()
        ));
        let someone_else = SubmitRetry {
            is_submitter: false,
            ..accepted()
        };
        assert!(!repeats_accepted_submit(review, "PR #1", someone_else));
        let older_claim = SubmitRetry {
            token_generation: Some(2),
            ..accepted()
        };
        assert!(!repeats_accepted_submit(review, "PR #1", older_claim));
        let sent_back = SubmitRetry {
            status: InProgress,
            ..accepted()
        };
        assert!(!repeats_accepted_submit(review, "PR #1", sent_back));
    }

    const CLAIMER: Actor = Actor::User {
        role: Role::Member,
        is_claimer: true,
        is_submitter: false,
        review_policy: ReviewPolicy::AnyMember,
    };
    const SUBMITTER: Actor = Actor::User {
        role: Role::Member,
        is_claimer: false,
        is_submitter: true,
        review_policy: ReviewPolicy::AnyMember,
    };
    const OWNER: Actor = Actor::User {
        role: Role::Owner,
        is_claimer: false,
        is_submitter: false,
        review_policy: ReviewPolicy::AnyMember,
    };
    const MEMBER: Actor = Actor::User {
        role: Role::Member,
        is_claimer: false,
        is_submitter: false,
        review_policy: ReviewPolicy::AnyMember,
    };
    const VIEWER: Actor = Actor::User {
        role: Role::Viewer,
        is_claimer: false,
        is_submitter: false,
        review_policy: ReviewPolicy::AnyMember,
    };

    /// The workflow table of docs/workflow.md, one row per allowed (from, action):
    /// the target status, the claim effect, and whether a version is cut.
    fn expected_table() -> Vec<(PlanStatus, Action, PlanStatus, ClaimEffect, bool)> {
        use Action::*;
        use ClaimEffect::*;
        let review = Submit(SubmitTarget::Review);
        let complete = Submit(SubmitTarget::Completed);
        let mut rows = vec![
            (Draft, SetStatus(Ready), Ready, Keep, false),
            (Ready, SetStatus(Draft), Draft, Keep, false),
            (Ready, Claim, Claimed, TakeByCaller, false),
            (Draft, Update, Draft, Keep, false),
            (Ready, Update, Ready, Keep, false),
            (Review, SetStatus(Completed), Completed, Clear, true),
            (
                Review,
                SetStatus(InProgress),
                InProgress,
                ReturnToSubmitter,
                false,
            ),
            (Stalled, SetStatus(Ready), Ready, Clear, false),
            (Review, SetStatus(Failed), Failed, Clear, false),
            (Claimed, MarkStale, Stalled, Keep, false),
            (InProgress, MarkStale, Stalled, Keep, false),
        ];
        for from in [Claimed, InProgress, Stalled] {
            rows.extend([
                (from, Update, InProgress, Keep, false),
                (from, Release, Ready, Clear, false),
                (from, review, Review, Clear, false),
                (from, complete, Completed, Clear, true),
                (from, SetStatus(Failed), Failed, Clear, false),
            ]);
        }
        rows
    }

    fn privileged_actor(action: Action) -> Actor {
        match action {
            Action::MarkStale => Actor::System,
            Action::Update | Action::Submit(_) => CLAIMER,
            _ => OWNER,
        }
    }

    #[test]
    fn every_status_and_action_matches_the_table() {
        let table = expected_table();
        for from in PlanStatus::ALL {
            for action in Action::all() {
                let expected = table.iter().find(|row| row.0 == from && row.1 == action);
                let result = decide(from, action, privileged_actor(action));
                match (expected, result) {
                    (Some(&(_, _, to, claim, creates_version)), Ok(transition)) => {
                        assert_eq!(transition.to, to, "{from:?} {action:?}");
                        assert_eq!(transition.claim, claim, "{from:?} {action:?}");
                        assert_eq!(
                            transition.creates_version, creates_version,
                            "{from:?} {action:?}"
                        );
                    }
                    (None, Err(Refusal::InvalidTransition { allowed, .. })) => {
                        assert_ne!(action, Action::Claim);
                        assert_eq!(allowed, steps_from(from), "{from:?} {action:?}");
                    }
                    (None, Err(Refusal::NotClaimable { .. })) => assert_eq!(action, Action::Claim),
                    (expected, result) => {
                        panic!("{from:?} {action:?}: expected {expected:?}, got {result:?}")
                    }
                }
            }
        }
    }

    #[test]
    fn terminal_statuses_allow_nothing() {
        for from in [Completed, Failed] {
            assert!(from.is_terminal());
            assert!(allowed_next(from).is_empty());
            for action in Action::all() {
                assert!(decide(from, action, privileged_actor(action)).is_err());
            }
        }
    }

    #[test]
    fn allowed_lists_name_every_reachable_status() {
        assert_eq!(allowed_next(Draft), vec![Ready]);
        assert_eq!(allowed_next(Ready), vec![Draft, Claimed]);
        assert_eq!(
            allowed_next(Claimed),
            vec![Ready, InProgress, Review, Completed, Failed]
        );
        assert_eq!(
            allowed_next(InProgress),
            vec![Ready, Review, Completed, Failed]
        );
        assert_eq!(
            allowed_next(Stalled),
            vec![Ready, InProgress, Review, Completed, Failed]
        );
        assert_eq!(allowed_next(Review), vec![InProgress, Completed, Failed]);
    }

    #[test]
    fn steps_are_the_tables_moves_to_another_status() {
        for from in PlanStatus::ALL {
            let expected: Vec<Step> = expected_table()
                .into_iter()
                .filter(|row| row.0 == from && row.1 != Action::MarkStale && row.2 != from)
                .map(|row| Step {
                    to: row.2,
                    via: row.1,
                })
                .collect();
            let steps = steps_from(from);
            assert_eq!(steps.len(), expected.len(), "{from:?}: {steps:?}");
            for step in &expected {
                assert!(steps.contains(step), "{from:?}: {step:?} missing");
            }
            assert!(steps.windows(2).all(|pair| pair[0].to <= pair[1].to));
        }
        let step = |to, via| Step { to, via };
        assert_eq!(
            steps_from(Claimed),
            vec![
                step(Ready, Action::Release),
                step(InProgress, Action::Update),
                step(Review, Action::Submit(SubmitTarget::Review)),
                step(Completed, Action::Submit(SubmitTarget::Completed)),
                step(Failed, Action::SetStatus(Failed)),
            ]
        );
    }

    #[test]
    fn viewers_change_nothing() {
        // Whatever the plan's state: a viewer is told they cannot change it,
        // not that the plan is claimed or in the wrong status.
        for from in PlanStatus::ALL {
            for action in Action::all() {
                let refusal = decide(from, action, VIEWER);
                assert!(
                    matches!(refusal, Err(Refusal::Forbidden(_))),
                    "viewer {from:?} {action:?} -> {refusal:?}"
                );
            }
        }
    }

    #[test]
    fn only_the_claimer_updates_or_submits_claimed_work() {
        for from in [Claimed, InProgress, Stalled] {
            for action in [
                Action::Update,
                Action::Submit(SubmitTarget::Review),
                Action::Submit(SubmitTarget::Completed),
            ] {
                assert!(decide(from, action, CLAIMER).is_ok());
                assert!(matches!(
                    decide(from, action, MEMBER),
                    Err(Refusal::Forbidden(_))
                ));
                assert!(matches!(
                    decide(from, action, OWNER),
                    Err(Refusal::Forbidden(_))
                ));
            }
        }
    }

    #[test]
    fn any_writer_updates_unclaimed_plans() {
        for from in [Draft, Ready] {
            let transition = decide(from, Action::Update, MEMBER).expect("member may update");
            assert_eq!(transition.to, from);
            assert!(transition.replaces_spec);
            assert!(transition.records_activity, "every update is activity");
        }
    }

    #[test]
    fn release_and_fail_belong_to_the_claimer_or_an_owner() {
        for from in [Claimed, InProgress, Stalled] {
            for action in [Action::Release, Action::SetStatus(Failed)] {
                assert!(decide(from, action, CLAIMER).is_ok());
                assert!(decide(from, action, OWNER).is_ok());
                assert!(matches!(
                    decide(from, action, MEMBER),
                    Err(Refusal::Forbidden(_))
                ));
            }
        }
        let fail = Action::SetStatus(Failed);
        assert!(decide(Review, fail, SUBMITTER).is_ok());
        assert!(decide(Review, fail, OWNER).is_ok());
        assert!(matches!(
            decide(Review, fail, MEMBER),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn any_writer_approves_or_reopens_review() {
        for action in [Action::SetStatus(Completed), Action::SetStatus(InProgress)] {
            assert!(decide(Review, action, MEMBER).is_ok());
        }
        assert!(decide(Stalled, Action::SetStatus(Ready), MEMBER).is_ok());
    }

    #[test]
    fn claims_refused_with_conflict() {
        for from in PlanStatus::ALL
            .into_iter()
            .filter(|status| *status != Ready)
        {
            match decide(from, Action::Claim, MEMBER) {
                Err(Refusal::NotClaimable { from: reported }) => assert_eq!(reported, from),
                other => panic!("claim from {from:?}: {other:?}"),
            }
        }
        let claim = decide(Ready, Action::Claim, MEMBER).expect("ready plans are claimable");
        assert!(claim.records_activity);
        assert_eq!(claim.event, EventKind::Claimed);
    }

    #[test]
    fn only_the_system_marks_plans_stale_and_it_does_nothing_else() {
        assert!(matches!(
            decide(InProgress, Action::MarkStale, OWNER),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            decide(Draft, Action::SetStatus(Ready), Actor::System),
            Err(Refusal::Forbidden(_))
        ));
        let stale = decide(Claimed, Action::MarkStale, Actor::System).expect("sweeper");
        assert_eq!(stale.claim, ClaimEffect::Keep);
        assert!(!stale.records_activity);
    }

    #[test]
    fn submissions_record_the_submitter_and_activity() {
        for target in [SubmitTarget::Review, SubmitTarget::Completed] {
            let transition = decide(InProgress, Action::Submit(target), CLAIMER).expect("claimer");
            assert!(transition.records_submission);
            assert!(transition.records_activity);
        }
    }

    #[test]
    fn statuses_show_as_graphql_enums() {
        assert_eq!(InProgress.to_string(), "IN_PROGRESS");
    }

    #[test]
    fn claim_tokens_round_trip_and_refuse_anything_else() {
        let plan = uuid::Uuid::now_v7();
        let token = ClaimToken {
            plan,
            generation: 3,
        };
        assert_eq!(ClaimToken::parse(&token.to_string()), Some(token));
        for bad in ["", "ct_", "ct_x_1", &format!("ct_{}_0", plan.simple()), "3"] {
            assert_eq!(ClaimToken::parse(bad), None, "{bad}");
        }
        assert_eq!(ClaimToken::current(plan, false, 3), None);
    }

    #[test]
    fn only_completed_blockers_unblock() {
        assert!(!is_blocked([]));
        assert!(!is_blocked([Completed, Completed]));
        assert!(is_blocked([Completed, Failed]));
        assert!(is_blocked([Ready]));
    }

    #[test]
    fn a_dependency_closing_a_cycle_names_it() {
        let ids: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::now_v7()).collect();
        let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
        // b waits for c, c waits for a; a waiting for b closes a → b → c → a.
        let edges = [(b, c), (c, a), (d, a)];
        assert_eq!(dependency_cycle(&edges, a, b), Some(vec![a, b, c, a]));
        assert_eq!(dependency_cycle(&edges, a, d), Some(vec![a, d, a]));
        assert_eq!(dependency_cycle(&edges, c, d), None);
        assert_eq!(dependency_cycle(&edges, a, a), Some(vec![a, a]));
        assert_eq!(dependency_cycle(&edges, d, c), None);
    }

    #[test]
    fn heartbeats_renew_held_claims_and_resume_stalled_ones() {
        assert_eq!(heartbeat(Claimed), Some(Heartbeat::Renew));
        assert_eq!(heartbeat(InProgress), Some(Heartbeat::Renew));
        assert_eq!(heartbeat(Stalled), Some(Heartbeat::Resume));
        for status in [Draft, Ready, Review, Completed, Failed] {
            assert_eq!(heartbeat(status), None);
        }
    }
}
