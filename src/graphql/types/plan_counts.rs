use async_graphql::SimpleObject;

use crate::workflow;

/// Plans per status, for a dashboard's column headers.
#[derive(SimpleObject, Default)]
pub struct PlanCounts {
    /// DRAFT plans.
    pub draft: u64,
    /// READY plans.
    pub ready: u64,
    /// CLAIMED plans.
    pub claimed: u64,
    /// IN_PROGRESS plans.
    pub in_progress: u64,
    /// STALLED plans.
    pub stalled: u64,
    /// REVIEW plans.
    pub review: u64,
    /// COMPLETED plans.
    pub completed: u64,
    /// FAILED plans.
    pub failed: u64,
    /// All plans.
    pub total: u64,
}

impl From<std::collections::HashMap<workflow::PlanStatus, u64>> for PlanCounts {
    fn from(counts: std::collections::HashMap<workflow::PlanStatus, u64>) -> PlanCounts {
        use workflow::PlanStatus as Status;
        let of = |status| counts.get(&status).copied().unwrap_or(0);
        PlanCounts {
            draft: of(Status::Draft),
            ready: of(Status::Ready),
            claimed: of(Status::Claimed),
            in_progress: of(Status::InProgress),
            stalled: of(Status::Stalled),
            review: of(Status::Review),
            completed: of(Status::Completed),
            failed: of(Status::Failed),
            total: counts.values().sum(),
        }
    }
}
