//! GraphQL object types, one file each. Each wraps a row and resolves
//! relations through the operation's loaders; none of them decides anything.

mod api_key;
mod drift;
mod enums;
mod feature;
mod feature_version;
mod lists;
mod node;
mod plan;
mod plan_action;
mod plan_counts;
mod plan_event;
mod project;
mod scalars;
mod user;
mod webhook;

use async_graphql::Context;

pub use self::api_key::{ApiKey, CreatedApiKey, CreatedUser};
pub use self::drift::{SpecDiff, SpecDrift, SpecRevision, diff_specs};
pub use self::enums::{PlanEventKind, PlanStatus, ProjectRole, ReviewPolicy, SubmitStatus};
pub use self::feature::Feature;
pub use self::feature_version::FeatureVersion;
pub use self::lists::{
    FeatureConnection, OrderDirection, PlanConnection, PlanOrder, PlanOrderField, load_features,
    load_plans,
};
pub use self::node::Node;
pub use self::plan::{ClaimsMade, Plan, SubmitWorkResult};
pub use self::plan_action::PlanAction;
pub use self::plan_counts::PlanCounts;
pub use self::plan_event::PlanEvent;
pub use self::project::{Project, ProjectMember};
pub use self::scalars::DateTime;
use self::scalars::at;
pub use self::user::User;
pub use self::webhook::{CreatedWebhook, Webhook, WebhookDelivery};
use super::loaders::UserId;
use super::{document_budget, loaders, services};
use crate::error::{AppError, AppResult};

async fn user_by_id(ctx: &Context<'_>, id: uuid::Uuid) -> AppResult<User> {
    loaders(ctx)
        .db
        .load_one(UserId(id))
        .await?
        .map(User)
        .ok_or_else(|| AppError::internal(format!("user {id} is referenced but missing")))
}

async fn optional_user(ctx: &Context<'_>, id: Option<uuid::Uuid>) -> AppResult<Option<User>> {
    match id {
        Some(id) => Ok(Some(user_by_id(ctx, id).await?)),
        None => Ok(None),
    }
}

async fn load_spec(ctx: &Context<'_>, key: &str) -> AppResult<String> {
    loaders(ctx)
        .spec(services(ctx).specs.as_ref(), key)
        .await?
        .ok_or_else(|| AppError::SpecMissing {
            key: key.to_owned(),
        })
}

/// A spec's text, charged to the operation's document budget once its
/// size is known.
async fn spec_text(ctx: &Context<'_>, key: &str) -> AppResult<String> {
    let text = load_spec(ctx, key).await?;
    document_budget(ctx).charge(text.len())?;
    Ok(text)
}
