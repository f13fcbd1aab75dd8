//! The workflow's vocabularies as stored: each is a string column read into
//! its enum when a row is decoded, so a value the code does not know fails
//! there, once, as a decoding error, instead of wherever it is next looked at.
//! The state machine that uses them lives in the server's `workflow.rs`.

use std::fmt;

use sea_orm::entity::prelude::*;

/// Where a plan is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum PlanStatus {
    #[sea_orm(string_value = "draft")]
    Draft,
    #[sea_orm(string_value = "ready")]
    Ready,
    #[sea_orm(string_value = "claimed")]
    Claimed,
    #[sea_orm(string_value = "in_progress")]
    InProgress,
    #[sea_orm(string_value = "stalled")]
    Stalled,
    #[sea_orm(string_value = "review")]
    Review,
    #[sea_orm(string_value = "completed")]
    Completed,
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl PlanStatus {
    pub const ALL: [PlanStatus; 8] = [
        PlanStatus::Draft,
        PlanStatus::Ready,
        PlanStatus::Claimed,
        PlanStatus::InProgress,
        PlanStatus::Stalled,
        PlanStatus::Review,
        PlanStatus::Completed,
        PlanStatus::Failed,
    ];

    /// The spelling stored in the database and used in messages (`in_progress`).
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Draft => "draft",
            PlanStatus::Ready => "ready",
            PlanStatus::Claimed => "claimed",
            PlanStatus::InProgress => "in_progress",
            PlanStatus::Stalled => "stalled",
            PlanStatus::Review => "review",
            PlanStatus::Completed => "completed",
            PlanStatus::Failed => "failed",
        }
    }

    /// Statuses in which a worker holds the plan and the stale sweeper watches it.
    pub fn is_worked_on(self) -> bool {
        matches!(
            self,
            PlanStatus::Claimed | PlanStatus::InProgress | PlanStatus::Stalled
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, PlanStatus::Completed | PlanStatus::Failed)
    }
}

impl fmt::Display for PlanStatus {
    /// Upper case, as GraphQL clients see the enum (`IN_PROGRESS`).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.as_str().to_ascii_uppercase())
    }
}

/// Who may approve work in REVIEW (REVIEW → COMPLETED) in a project.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ReviewPolicy {
    /// Any member or owner, the submitter included.
    #[default]
    #[sea_orm(string_value = "any_member")]
    AnyMember,
    /// Any member or owner but the one who submitted the work.
    #[sea_orm(string_value = "other_than_submitter")]
    OtherThanSubmitter,
    /// Project owners only.
    #[sea_orm(string_value = "owners")]
    Owners,
}

/// A caller's role in the plan's project. Non-members never reach the workflow:
/// the service refuses them before, so that they learn nothing about the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Role {
    #[sea_orm(string_value = "owner")]
    Owner,
    #[sea_orm(string_value = "member")]
    Member,
    #[sea_orm(string_value = "viewer")]
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn can_write(self) -> bool {
        matches!(self, Role::Owner | Role::Member)
    }
}

/// The audit-trail kind recorded for a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum EventKind {
    #[sea_orm(string_value = "created")]
    Created,
    #[sea_orm(string_value = "updated")]
    Updated,
    #[sea_orm(string_value = "status_changed")]
    StatusChanged,
    #[sea_orm(string_value = "claimed")]
    Claimed,
    #[sea_orm(string_value = "released")]
    Released,
    #[sea_orm(string_value = "submitted")]
    Submitted,
    #[sea_orm(string_value = "completed")]
    Completed,
    #[sea_orm(string_value = "stalled")]
    Stalled,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "priority_changed")]
    PriorityChanged,
    #[sea_orm(string_value = "dependency_added")]
    DependencyAdded,
    #[sea_orm(string_value = "dependency_removed")]
    DependencyRemoved,
    #[sea_orm(string_value = "unblocked")]
    Unblocked,
    #[sea_orm(string_value = "spec_drifted")]
    SpecDrifted,
    #[sea_orm(string_value = "rebased")]
    Rebased,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::Created,
        EventKind::Updated,
        EventKind::StatusChanged,
        EventKind::Claimed,
        EventKind::Released,
        EventKind::Submitted,
        EventKind::Completed,
        EventKind::Stalled,
        EventKind::Failed,
        EventKind::PriorityChanged,
        EventKind::DependencyAdded,
        EventKind::DependencyRemoved,
        EventKind::Unblocked,
        EventKind::SpecDrifted,
        EventKind::Rebased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::StatusChanged => "status_changed",
            EventKind::Claimed => "claimed",
            EventKind::Released => "released",
            EventKind::Submitted => "submitted",
            EventKind::Completed => "completed",
            EventKind::Stalled => "stalled",
            EventKind::Failed => "failed",
            EventKind::PriorityChanged => "priority_changed",
            EventKind::DependencyAdded => "dependency_added",
            EventKind::DependencyRemoved => "dependency_removed",
            EventKind::Unblocked => "unblocked",
            EventKind::SpecDrifted => "spec_drifted",
            EventKind::Rebased => "rebased",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::Iterable;

    #[test]
    fn stored_spellings_are_the_names_and_nothing_else_decodes() {
        for status in PlanStatus::ALL {
            assert_eq!(status.to_value(), status.as_str());
            assert_eq!(
                PlanStatus::try_from_value(&status.as_str().to_owned()),
                Ok(status)
            );
        }
        for kind in EventKind::ALL {
            assert_eq!(kind.to_value(), kind.as_str());
            assert_eq!(
                EventKind::try_from_value(&kind.as_str().to_owned()),
                Ok(kind)
            );
        }
        for role in Role::iter() {
            assert_eq!(role.to_value(), role.as_str());
        }
        assert!(PlanStatus::try_from_value(&"IN_PROGRESS".to_owned()).is_err());
        assert!(Role::try_from_value(&"admin".to_owned()).is_err());
    }
}
