//! Tools for agent fleets: claim_next_plan, heartbeat_plan,
//! add_plan_dependency, remove_plan_dependency, set_plan_priority.

use axum::http::request::Parts;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router};
use serde::{Deserialize, Serialize};

use super::Tools;
use super::call::{Reply, input, output};
use super::views::{PlanView, Text, text_time};
use crate::error::AppResult;
use crate::service::Viewer;
use crate::service::fleet::current_token;
use entity::plan;

const CLAIM_NEXT_PLAN: &str = "Claim the next plan to work on in a project (optionally one feature): the most urgent ready plan whose dependencies are all completed, oldest first. Safe for many agents at once: each gets a different plan, never a conflict. Returns the plan with its specification, its claim_token (pass it to update_plan, heartbeat_plan, submit_work and release_plan) and when its lease expires. \"No plan is ready\" when there is nothing to claim.";
const HEARTBEAT_PLAN: &str = "Renew the lease of a plan you claimed, without changing it: call it while you work so the plan does not stall. A stalled plan you still hold goes back to in_progress. Refused with STALE_CLAIM when your claim_token is no longer current (the plan was claimed again): stop working on it.";
const ADD_PLAN_DEPENDENCY: &str = "Make a plan wait for another plan of the same project: it cannot be claimed until that plan is completed (a failed blocker keeps it blocked until the dependency is removed). A dependency that would make a cycle is refused, naming the cycle.";
const REMOVE_PLAN_DEPENDENCY: &str = "Remove a dependency between two plans; if nothing else holds the plan back it becomes claimable (an unblocked event records it).";
const SET_PLAN_PRIORITY: &str = "Change a plan's priority: 0 (most urgent) to 4 (someday); claim_next_plan takes the most urgent first.";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ClaimNextPlanArgs {
    /// UUID of the project to take work from
    project_id: String,
    /// Only plans of this feature (UUID)
    feature_id: Option<String>,
    /// Lease in seconds (1 to 604800): without activity for this long the plan stalls; default the server's stale threshold
    lease_seconds: Option<i32>,
    /// Also take over stalled plans whose lease expired (their previous holder is fenced out); default false
    #[serde(default)]
    include_stalled: bool,
    /// Leave out plans whose spec drifted since they were written (they need a rebase_plan first); default false
    #[serde(default)]
    skip_drifted: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HeartbeatPlanArgs {
    /// UUID of the plan you hold
    plan_id: String,
    /// Your claim's token; refused (STALE_CLAIM) once the claim is over
    claim_token: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DependencyArgs {
    /// UUID of the plan that waits
    plan_id: String,
    /// UUID of the plan it waits for (same project)
    blocked_by_plan_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetPlanPriorityArgs {
    /// UUID of the plan
    plan_id: String,
    /// 0 (most urgent) to 4 (someday)
    priority: i32,
}

/// claim_next_plan: the plan claimed, or null when none is ready.
#[derive(Serialize, JsonSchema)]
struct ClaimNextResult {
    plan: Option<PlanView>,
}

/// One plan after a fleet tool.
#[derive(Serialize, JsonSchema)]
struct FleetPlanResult {
    plan: PlanView,
}

#[tool_router(router = fleet_tools, vis = "pub(super)")]
impl Tools {
    #[tool(description = CLAIM_NEXT_PLAN, input_schema = input::<ClaimNextPlanArgs>(), output_schema = output::<ClaimNextResult>())]
    async fn claim_next_plan(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("claim_next_plan", &request, arguments, |viewer, args| {
            self.claim_next_plan_reply(viewer, args)
        })
        .await
    }

    #[tool(description = HEARTBEAT_PLAN, input_schema = input::<HeartbeatPlanArgs>(), output_schema = output::<FleetPlanResult>())]
    async fn heartbeat_plan(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("heartbeat_plan", &request, arguments, |viewer, args| {
            self.heartbeat_plan_reply(viewer, args)
        })
        .await
    }

    #[tool(description = ADD_PLAN_DEPENDENCY, input_schema = input::<DependencyArgs>(), output_schema = output::<FleetPlanResult>())]
    async fn add_plan_dependency(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run(
            "add_plan_dependency",
            &request,
            arguments,
            |viewer, args| self.dependency_reply(viewer, args, true),
        )
        .await
    }

    #[tool(description = REMOVE_PLAN_DEPENDENCY, input_schema = input::<DependencyArgs>(), output_schema = output::<FleetPlanResult>())]
    async fn remove_plan_dependency(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run(
            "remove_plan_dependency",
            &request,
            arguments,
            |viewer, args| self.dependency_reply(viewer, args, false),
        )
        .await
    }

    #[tool(description = SET_PLAN_PRIORITY, input_schema = input::<SetPlanPriorityArgs>(), output_schema = output::<FleetPlanResult>())]
    async fn set_plan_priority(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("set_plan_priority", &request, arguments, |viewer, args| {
            self.set_plan_priority_reply(viewer, args)
        })
        .await
    }
}

impl Tools {
    async fn fleet_view(&self, plan: &plan::Model) -> AppResult<PlanView> {
        let related =
            super::views::Related::of_plans(&self.services, std::slice::from_ref(plan), &[])
                .await?;
        related.plan_view(plan)
    }

    async fn claim_next_plan_reply(
        &self,
        viewer: Viewer,
        args: ClaimNextPlanArgs,
    ) -> AppResult<Reply> {
        let claimed = self
            .services
            .claim_next(
                &viewer,
                &args.project_id,
                args.feature_id.as_deref(),
                args.lease_seconds,
                args.include_stalled,
                args.skip_drifted,
            )
            .await?;
        let Some(plan) = claimed else {
            let mut text = Text::headline("No plan is ready");
            text.line(
                "Every ready plan is claimed or waits for unfinished plans; try again later.",
            );
            return Reply::new(&text, &ClaimNextResult { plan: None });
        };
        let (mut view, spec) =
            futures::try_join!(self.fleet_view(&plan), self.spec_text(&plan.spec_key))?;
        let mut text = Text::headline("✓ Plan claimed successfully!");
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field(
                "Feature",
                format!("{} ({})", view.feature.title, view.feature.id),
            )
            .field("Priority", plan.priority)
            .field("Status", plan.status.as_str())
            .field("Claimed by", format!("you ({})", viewer.user.email))
            .optional_field("Claim token", current_token(&plan))
            .optional_field("Lease expires", plan.lease_expires_at.map(text_time))
            .blank()
            .line("Specification Content:")
            .blank()
            .line(spec.trim_end())
            .blank()
            .line("Pass the claim token to update_plan, heartbeat_plan and submit_work.");
        view.spec_content = Some(spec);
        Reply::new(&text, &ClaimNextResult { plan: Some(view) })
    }

    async fn heartbeat_plan_reply(
        &self,
        viewer: Viewer,
        args: HeartbeatPlanArgs,
    ) -> AppResult<Reply> {
        let plan = self
            .services
            .heartbeat_plan(&viewer, &args.plan_id, args.claim_token.as_deref())
            .await?;
        let mut text = Text::headline("✓ Lease renewed");
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field("Status", plan.status.as_str())
            .field("Last Activity", text_time(plan.last_activity_at))
            .optional_field("Lease expires", plan.lease_expires_at.map(text_time));
        let view = self.fleet_view(&plan).await?;
        Reply::new(&text, &FleetPlanResult { plan: view })
    }

    async fn dependency_reply(
        &self,
        viewer: Viewer,
        args: DependencyArgs,
        add: bool,
    ) -> AppResult<Reply> {
        let plan = if add {
            self.services
                .add_plan_dependency(&viewer, &args.plan_id, &args.blocked_by_plan_id)
                .await?
        } else {
            self.services
                .remove_plan_dependency(&viewer, &args.plan_id, &args.blocked_by_plan_id)
                .await?
        };
        let mut text = Text::headline(if add {
            "✓ Dependency added"
        } else {
            "✓ Dependency removed"
        });
        text.field("Plan", &plan.title).field("ID", plan.id).field(
            if add {
                "Now waits for"
            } else {
                "No longer waits for"
            },
            &args.blocked_by_plan_id,
        );
        let view = self.fleet_view(&plan).await?;
        Reply::new(&text, &FleetPlanResult { plan: view })
    }

    async fn set_plan_priority_reply(
        &self,
        viewer: Viewer,
        args: SetPlanPriorityArgs,
    ) -> AppResult<Reply> {
        let plan = self
            .services
            .set_plan_priority(&viewer, &args.plan_id, args.priority)
            .await?;
        let mut text = Text::headline("✓ Priority updated");
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field("Priority", plan.priority);
        let view = self.fleet_view(&plan).await?;
        Reply::new(&text, &FleetPlanResult { plan: view })
    }
}

#[cfg(test)]
mod tests {
    use rmcp::handler::server::tool::schema_for_input;

    use super::*;

    #[test]
    fn every_argument_type_is_a_valid_input_schema() {
        assert!(schema_for_input::<ClaimNextPlanArgs>().is_ok());
        assert!(schema_for_input::<HeartbeatPlanArgs>().is_ok());
        assert!(schema_for_input::<DependencyArgs>().is_ok());
        assert!(schema_for_input::<SetPlanPriorityArgs>().is_ok());
    }
}
