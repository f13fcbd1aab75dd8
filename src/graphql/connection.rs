//! The Relay-style plan connection: opaque cursors, `first`/`after`, and a
//! `totalCount` computed only when a client asks for it.

use async_graphql::{Context, Object};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::types::{PageInfo, Plan, PlanEdge};
use super::{services, viewer};
use crate::error::{AppError, AppResult};
use crate::service::plans::{PageRequest, PlanFilter};
use entity::plan;

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

const CURSOR_TAG: &str = "plan:";

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}{id}"))
}

pub fn decode_cursor(cursor: &str) -> AppResult<Uuid> {
    let invalid = || {
        AppError::BadUserInput(format!(
            "after: {cursor:?} is not a cursor from this list; pass an endCursor or edge cursor you received"
        ))
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let id = text.strip_prefix(CURSOR_TAG).ok_or_else(invalid)?;
    Uuid::parse_str(id).map_err(|_| invalid())
}

/// A page of plans.
pub struct PlanConnection {
    plans: Vec<plan::Model>,
    has_next_page: bool,
    has_previous_page: bool,
    filter: PlanFilter,
}

/// Loads one page of the viewer's plans matching `filter`.
pub async fn load_plans(
    ctx: &Context<'_>,
    filter: PlanFilter,
    first: Option<i32>,
    after: Option<String>,
) -> AppResult<PlanConnection> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(0..=MAX_PAGE_SIZE).contains(&first) {
        return Err(AppError::BadUserInput(format!(
            "first must be between 0 and {MAX_PAGE_SIZE}; page through longer lists with after"
        )));
    }
    let after = after.as_deref().map(decode_cursor).transpose()?;
    let page = PageRequest {
        first: first as u64,
        after,
    };
    let result = services(ctx)
        .list_plans(viewer(ctx)?, &filter, page)
        .await?;
    Ok(PlanConnection {
        plans: result.plans,
        has_next_page: result.has_next_page,
        has_previous_page: after.is_some(),
        filter,
    })
}

/// A page of plans, Relay style.
#[Object]
impl PlanConnection {
    /// The plans of this page with their cursors.
    async fn edges(&self) -> Vec<PlanEdge> {
        self.plans
            .iter()
            .map(|plan| PlanEdge {
                cursor: encode_cursor(plan.id),
                node: Plan(plan.clone()),
            })
            .collect()
    }
    /// The plans of this page, without cursors.
    async fn nodes(&self) -> Vec<Plan> {
        self.plans.iter().cloned().map(Plan).collect()
    }
    /// Where this page sits in the whole list.
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next_page,
            has_previous_page: self.has_previous_page,
            start_cursor: self.plans.first().map(|plan| encode_cursor(plan.id)),
            end_cursor: self.plans.last().map(|plan| encode_cursor(plan.id)),
        }
    }
    /// How many plans match the filters, over all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> AppResult<u64> {
        services(ctx).count_plans(viewer(ctx)?, &self.filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).expect("valid"), id);
        assert!(decode_cursor("not a cursor").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("feature:x")).is_err());
    }
}
