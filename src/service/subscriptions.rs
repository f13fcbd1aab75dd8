//! What a `planEvents` subscriber may see, and the replay of missed events.

use std::collections::HashSet;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::{Services, Viewer};
use crate::error::{AppError, AppResult};
use crate::events::events_after;
use entity::{plan_event, project_member};

/// The ids a subscriber filtered by, as sent.
#[derive(Debug, Clone, Default)]
pub struct EventFilters {
    pub project_id: Option<String>,
    pub feature_id: Option<String>,
    pub plan_id: Option<String>,
}

/// The events one subscription delivers: its filters, intersected with the
/// projects the subscriber belongs to (re-resolved whenever that changes).
#[derive(Debug, Clone)]
pub struct EventScope {
    projects: HashSet<Uuid>,
    feature: Option<Uuid>,
    plan: Option<Uuid>,
}

impl EventScope {
    pub fn matches(&self, event: &plan_event::Model) -> bool {
        self.projects.contains(&event.project_id)
            && self
                .feature
                .is_none_or(|feature| feature == event.feature_id)
            && self.plan.is_none_or(|plan| plan == event.plan_id)
    }
}

/// Parses a `cursor` from a previous event.
pub fn parse_cursor(cursor: &str) -> AppResult<i64> {
    cursor
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            AppError::BadUserInput(format!(
                "after: {cursor:?} is not an event cursor; pass the cursor of the last event you received"
            ))
        })
}

impl Services {
    /// Resolves and authorizes a subscription's filters, at subscribe time and
    /// again whenever the subscriber's access changes: a revoked key is
    /// `UNAUTHENTICATED`, a filter naming something outside the viewer's
    /// projects is `FORBIDDEN`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn event_scope(
        &self,
        viewer: &Viewer,
        filters: &EventFilters,
    ) -> AppResult<EventScope> {
        // A WebSocket authenticates once, at connection_init; its key may have
        // been revoked since.
        self.require_active_key(viewer).await?;
        let mut named_projects = HashSet::new();
        if let Some(id) = &filters.project_id {
            named_projects.insert(self.project(viewer, id).await?.id);
        }
        let feature = match &filters.feature_id {
            Some(id) => {
                let feature = self.feature(viewer, id).await?;
                named_projects.insert(feature.project_id);
                Some(feature.id)
            }
            None => None,
        };
        let plan = match &filters.plan_id {
            Some(id) => {
                let plan = self.plan(viewer, id).await?;
                named_projects.insert(plan.project_id);
                Some(plan.id)
            }
            None => None,
        };
        let projects = if named_projects.is_empty() {
            project_member::Entity::find()
                .select_only()
                .column(project_member::Column::ProjectId)
                .filter(project_member::Column::UserId.eq(viewer.id()))
                .into_tuple::<Uuid>()
                .all(&self.db)
                .await?
                .into_iter()
                .collect()
        } else if named_projects.len() == 1 {
            named_projects
        } else {
            // The filters name different projects: nothing can match them all.
            HashSet::new()
        };
        Ok(EventScope {
            projects,
            feature,
            plan,
        })
    }

    /// Up to `limit` events in `scope` committed after cursor `after`, oldest first.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn replay_events(
        &self,
        scope: &EventScope,
        after: i64,
        limit: u64,
    ) -> AppResult<Vec<plan_event::Model>> {
        events_after(&self.db, after, limit, |mut query| {
            query =
                query.filter(plan_event::Column::ProjectId.is_in(scope.projects.iter().copied()));
            if let Some(feature) = scope.feature {
                query = query.filter(plan_event::Column::FeatureId.eq(feature));
            }
            if let Some(plan) = scope.plan {
                query = query.filter(plan_event::Column::PlanId.eq(plan));
            }
            query
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_non_negative_integers() {
        assert_eq!(parse_cursor("42").expect("valid"), 42);
        assert_eq!(parse_cursor(" 0 ").expect("valid"), 0);
        assert!(parse_cursor("-1").is_err());
        assert!(parse_cursor("abc").is_err());
    }
}
