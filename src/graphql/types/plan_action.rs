//! `Plan.availableActions`: the moves the workflow offers from a plan's
//! status and whether the viewer may make each, so that a client (the board,
//! any dashboard) offers exactly those without a second copy of the rules.

use async_graphql::SimpleObject;

use super::PlanStatus;
use crate::error::Interface;
use crate::workflow::{self, Actor, Refusal, ReviewPolicy, Role};
use entity::plan;

/// A move from the plan's status: where it leads, which mutation makes it,
/// and whether you may make it now.
#[derive(SimpleObject)]
pub struct PlanAction {
    /// The status the move leads to.
    to_status: PlanStatus,
    /// The mutation that makes it: `setPlanStatus`, `claimPlan`,
    /// `releasePlan`, `submitWork` or `updatePlan`.
    operation: String,
    /// You may make it: your role, your claim or submission, and the
    /// project's review policy allow it. A claim of a blocked plan is still
    /// refused (see `Plan.isBlocked`).
    allowed: bool,
    /// Why you may not, when `allowed` is false, as the mutation would say.
    reason: Option<String>,
}

/// The moves from `plan`'s status for a member with `role` (user `viewer`)
/// under the project's review `policy`.
pub fn available_actions(
    plan: &plan::Model,
    viewer: uuid::Uuid,
    role: Role,
    policy: ReviewPolicy,
) -> Vec<PlanAction> {
    let actor = Actor::User {
        role,
        is_claimer: plan.claimed_by == Some(viewer),
        is_submitter: plan.submitted_by == Some(viewer),
        review_policy: policy,
    };
    workflow::moves_for(plan.status, actor)
        .into_iter()
        .map(|(step, refusal)| PlanAction {
            to_status: step.to.into(),
            operation: Interface::GraphQl.operation(step.via).into_owned(),
            allowed: refusal.is_none(),
            reason: refusal.map(|refusal| match refusal {
                Refusal::Forbidden(message) => message,
                // A move of the status's own table is never refused for its shape.
                Refusal::InvalidTransition { .. } | Refusal::NotClaimable { .. } => {
                    "Not possible from this status".into()
                }
            }),
        })
        .collect()
}
