//! Any object by its id, whatever its type: what Relay's `node(id:)` and
//! `nodes(ids:)` read. Ids are the rows' UUIDs, unique across tables, so an
//! id found in one table names that object.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect, QueryTrait};
use uuid::Uuid;

use super::projects::member_projects;
use super::{Services, Viewer};
use crate::error::AppResult;
use entity::{feature, feature_version, plan, project, project_member, user};

/// A row found by id.
// At most 100 of them live for one request; see `graphql::types::Node`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum NodeRow {
    Plan(plan::Model),
    Feature(feature::Model),
    Project(project::Model),
    User(user::Model),
    FeatureVersion(feature_version::Model),
}

impl Services {
    /// The objects among `ids` that `viewer` may see, by id: one statement a
    /// type however many ids. An object of a project `viewer` is not a member
    /// of is missing, as one that does not exist: nobody learns what
    /// other projects hold. A user is seen by themselves and by the members
    /// of their projects.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn nodes(&self, viewer: &Viewer, ids: &[Uuid]) -> AppResult<HashMap<Uuid, NodeRow>> {
        let member_of = || member_projects(viewer.id());
        let features_of_viewer = feature::Entity::find()
            .select_only()
            .column(feature::Column::Id)
            .filter(feature::Column::ProjectId.in_subquery(member_of()))
            .into_query();
        let fellow_members = project_member::Entity::find()
            .select_only()
            .column(project_member::Column::UserId)
            .filter(project_member::Column::ProjectId.in_subquery(member_of()))
            .into_query();
        let wanted = ids.iter().copied();
        let (plans, features, projects, users, versions) = futures::try_join!(
            plan::Entity::find()
                .filter(plan::Column::Id.is_in(wanted.clone()))
                .filter(plan::Column::ProjectId.in_subquery(member_of()))
                .all(&self.db),
            feature::Entity::find()
                .filter(feature::Column::Id.is_in(wanted.clone()))
                .filter(feature::Column::ProjectId.in_subquery(member_of()))
                .all(&self.db),
            project::Entity::find()
                .filter(project::Column::Id.is_in(wanted.clone()))
                .filter(project::Column::Id.in_subquery(member_of()))
                .all(&self.db),
            user::Entity::find()
                .filter(user::Column::Id.is_in(wanted.clone()))
                .filter(
                    Condition::any()
                        .add(Expr::col(user::Column::Id).eq(viewer.id()))
                        .add(user::Column::Id.in_subquery(fellow_members)),
                )
                .all(&self.db),
            feature_version::Entity::find()
                .filter(feature_version::Column::Id.is_in(wanted))
                .filter(feature_version::Column::FeatureId.in_subquery(features_of_viewer))
                .all(&self.db),
        )?;
        let mut found = HashMap::new();
        found.extend(plans.into_iter().map(|row| (row.id, NodeRow::Plan(row))));
        found.extend(
            features
                .into_iter()
                .map(|row| (row.id, NodeRow::Feature(row))),
        );
        found.extend(
            projects
                .into_iter()
                .map(|row| (row.id, NodeRow::Project(row))),
        );
        found.extend(users.into_iter().map(|row| (row.id, NodeRow::User(row))));
        found.extend(
            versions
                .into_iter()
                .map(|row| (row.id, NodeRow::FeatureVersion(row))),
        );
        Ok(found)
    }
}
