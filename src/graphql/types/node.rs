use async_graphql::{ID, Interface};

use super::{Feature, FeatureVersion, Plan, Project, User};
use crate::service::nodes::NodeRow;

/// An object with a stable id, which `node(id:)` and `nodes(ids:)` fetch
/// again by that id alone (Relay's global object identification; normalized
/// caches key objects by `__typename` and `id`).
// A response holds at most 100 of them, briefly; boxing the plan would
// cost an allocation each for no memory that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Interface)]
#[graphql(field(
    name = "id",
    ty = "ID",
    desc = "Stable id (UUID), unique across every type."
))]
pub enum Node {
    Plan(Plan),
    Feature(Feature),
    Project(Project),
    User(User),
    FeatureVersion(FeatureVersion),
}

impl From<NodeRow> for Node {
    fn from(row: NodeRow) -> Node {
        match row {
            NodeRow::Plan(plan) => Node::Plan(Plan::from(plan)),
            NodeRow::Feature(feature) => Node::Feature(Feature::from(feature)),
            NodeRow::Project(project) => Node::Project(Project::from(project)),
            NodeRow::User(user) => Node::User(User::from(user)),
            NodeRow::FeatureVersion(version) => Node::FeatureVersion(FeatureVersion(version)),
        }
    }
}
