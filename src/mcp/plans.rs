//! The seed's eight plan tools: create_plan, list_plans, get_plan,
//! update_plan, set_plan_status, claim_plan, release_plan, submit_work (the
//! reading ones answer from `plan_reads.rs`).

use std::collections::HashMap;

use axum::http::request::Parts;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Tools;
use super::call::Reply;
use super::plan_reads::{GetPlanArgs, ListPlansArgs, PlanListResult, PlanResult};
use super::schema::{input, output};
use super::views::{PlanView, Related, Status, Text, VersionView, text_time};
use crate::error::AppResult;
use crate::service::Viewer;
use crate::service::changes::current_token;
use crate::service::transition::Outcome;
use crate::workflow::{self, PlanStatus, SubmitTarget};

const CREATE_PLAN: &str = "Create a new implementation plan for a feature. Plans contain technical specifications and guide developers through implementation. Plans start in draft status so they can be reviewed; set status to ready (here, or later with set_plan_status) when workers may claim them. Read the feature's spec with get_feature first.";
const LIST_PLANS: &str = "List implementation plans with optional filtering by project, feature, or status. Useful for finding available work or tracking plan progress. Auto-filtered by project membership; also filters by claimer (claimed_by: \"me\" for your own work), priority, blocked, blocked_by_failed and drifted. Oldest first, at most 100 per call: pass the answer's next_after as after for the next ones.";
const GET_PLAN: &str = "Get detailed plan information including full specification content fetched from cloud storage. Use this before starting work to understand implementation requirements.";
const UPDATE_PLAN: &str = "Update plan specification content as work progresses. Only the claiming user can update a plan. Automatically updates last_activity_at to prevent stalling; a claimed plan moves to in_progress. Plans with no activity for the stale threshold (24 hours by default) are marked stalled.";
const SET_PLAN_STATUS: &str = "Change plan status following valid status transitions. Used to mark plans ready, transition through workflow states, or mark work complete/failed. Allowed: draft -> ready, ready -> draft, review -> completed (creates a new feature version) or in_progress (back to the worker), stalled -> ready, and claimed/in_progress/stalled/review -> failed. Claiming, releasing and submitting have their own tools.";
const CLAIM_PLAN: &str = "Claim an available implementation plan to work on it. Plan must be in ready status and not already claimed by another user.";
const RELEASE_PLAN: &str = "Release a claimed plan back to ready status, allowing other users to claim it. Useful when you need to abandon work without completing it. Only the claimer or a project owner can release a plan.";
const SUBMIT_WORK: &str = "Submit completed work for an implementation plan with artifacts and choose target status. Automatically creates a new feature version when status is set to completed. Only the claimer can submit; the claim is released.";

/// The status a new plan starts in.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
enum InitialStatus {
    #[default]
    Draft,
    Ready,
}

/// Where submitted work goes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
enum SubmitStatus {
    Review,
    Completed,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreatePlanArgs {
    /// UUID of the feature this plan implements
    feature_id: String,
    /// Short descriptive title for the plan
    title: String,
    /// Brief description of the implementation approach
    description: Option<String>,
    /// Detailed technical specification in markdown with implementation details
    spec_content: String,
    /// Initial status: draft or ready (default: draft)
    #[serde(default)]
    status: InitialStatus,
    /// Priority: 0 (most urgent) to 4 (someday); default 2
    priority: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdatePlanArgs {
    /// UUID of the plan to update
    plan_id: String,
    /// Updated markdown content with progress notes and implementation details
    spec_content: String,
    /// Your claim's token from claim_plan / claim_next_plan; refused (STALE_CLAIM) once the claim is over
    claim_token: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetPlanStatusArgs {
    /// UUID of the plan to update
    plan_id: String,
    /// New status: draft, ready, claimed, in_progress, stalled, review, completed, or failed
    status: Status,
    /// Why, for the plan's history; when sending work back from review to in_progress, what the worker should change (they read it)
    note: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ClaimPlanArgs {
    /// UUID of the plan to claim
    plan_id: String,
    /// Lease in seconds (1 to 604800): without activity for this long the plan stalls; default the server's stale threshold
    lease_seconds: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReleasePlanArgs {
    /// UUID of the plan to release
    plan_id: String,
    /// Your claim's token; refused (STALE_CLAIM) once the claim is over
    claim_token: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SubmitWorkArgs {
    /// UUID of the plan to submit work for
    plan_id: String,
    /// Flexible markdown with PR links, file paths, test results, deployment notes, or any work artifacts
    artifacts_markdown: String,
    /// Target status: review (needs approval) or completed (work pushed to main)
    status: SubmitStatus,
    /// Your claim's token; refused (STALE_CLAIM) once the claim is over
    claim_token: Option<String>,
}

/// A plan after a status change (set_plan_status, release_plan, submit_work).
#[derive(Serialize, JsonSchema)]
struct PlanChangeResult {
    plan: PlanView,
    /// The status the plan had just before this call.
    previous_status: Status,
    /// The feature version a completion created; null otherwise.
    feature_version: Option<VersionView>,
}

#[tool_router(router = plan_tools, vis = "pub(super)")]
impl Tools {
    #[tool(description = CREATE_PLAN, input_schema = input::<CreatePlanArgs>(), output_schema = output::<PlanResult>())]
    async fn create_plan(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("create_plan", &request, arguments, |viewer, args| {
            self.create_plan_reply(viewer, args)
        })
        .await
    }

    #[tool(description = LIST_PLANS, input_schema = input::<ListPlansArgs>(), output_schema = output::<PlanListResult>(), annotations(read_only_hint = true))]
    async fn list_plans(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("list_plans", &request, arguments, |viewer, args| {
            self.list_plans_reply(viewer, args)
        })
        .await
    }

    #[tool(description = GET_PLAN, input_schema = input::<GetPlanArgs>(), output_schema = output::<PlanResult>(), annotations(read_only_hint = true))]
    async fn get_plan(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("get_plan", &request, arguments, |viewer, args| {
            self.get_plan_reply(viewer, args)
        })
        .await
    }

    #[tool(description = UPDATE_PLAN, input_schema = input::<UpdatePlanArgs>(), output_schema = output::<PlanResult>())]
    async fn update_plan(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("update_plan", &request, arguments, |viewer, args| {
            self.update_plan_reply(viewer, args)
        })
        .await
    }

    #[tool(description = SET_PLAN_STATUS, input_schema = input::<SetPlanStatusArgs>(), output_schema = output::<PlanChangeResult>())]
    async fn set_plan_status(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("set_plan_status", &request, arguments, |viewer, args| {
            self.set_plan_status_reply(viewer, args)
        })
        .await
    }

    #[tool(description = CLAIM_PLAN, input_schema = input::<ClaimPlanArgs>(), output_schema = output::<PlanResult>())]
    async fn claim_plan(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("claim_plan", &request, arguments, |viewer, args| {
            self.claim_plan_reply(viewer, args)
        })
        .await
    }

    #[tool(description = RELEASE_PLAN, input_schema = input::<ReleasePlanArgs>(), output_schema = output::<PlanChangeResult>())]
    async fn release_plan(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("release_plan", &request, arguments, |viewer, args| {
            self.release_plan_reply(viewer, args)
        })
        .await
    }

    #[tool(description = SUBMIT_WORK, input_schema = input::<SubmitWorkArgs>(), output_schema = output::<PlanChangeResult>())]
    async fn submit_work(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("submit_work", &request, arguments, |viewer, args| {
            self.submit_work_reply(viewer, args)
        })
        .await
    }
}

impl Tools {
    async fn create_plan_reply(&self, viewer: Viewer, args: CreatePlanArgs) -> AppResult<Reply> {
        let status = match args.status {
            InitialStatus::Draft => PlanStatus::Draft,
            InitialStatus::Ready => PlanStatus::Ready,
        };
        let plan = self
            .services
            .create_plan(
                &viewer,
                &args.feature_id,
                &args.title,
                args.description,
                &args.spec_content,
                status,
                args.priority,
            )
            .await?;
        let mut view = self.one_plan(&plan, &[]).await?.plan_view(&plan)?;
        // The seed returns the created plan "with … spec content".
        view.spec_content = Some(args.spec_content);
        let mut text = Text::headline("✓ Implementation Plan created successfully!");
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field("Feature ID", plan.feature_id)
            .field("Status", status.as_str())
            .optional_field("Description", plan.description.as_deref())
            .field("Created", text_time(plan.created_at))
            .blank();
        text.line(match status {
            PlanStatus::Draft => {
                "The plan is in draft status. Review the specification and mark it as ready when you're satisfied."
            }
            _ => "The plan is ready: workers can claim it now.",
        });
        Reply::new(&text, &PlanResult { plan: view })
    }

    async fn update_plan_reply(&self, viewer: Viewer, args: UpdatePlanArgs) -> AppResult<Reply> {
        let plan = self
            .services
            .update_plan(
                &viewer,
                &args.plan_id,
                &args.spec_content,
                args.claim_token.as_deref(),
            )
            .await?;
        let mut view = self.one_plan(&plan, &[]).await?.plan_view(&plan)?;
        view.spec_content = Some(args.spec_content);
        let mut text = Text::headline("✓ Plan updated successfully!");
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field("Status", plan.status.as_str())
            .field("Last Activity", text_time(plan.last_activity_at))
            .field("Updated", text_time(plan.updated_at))
            .drift_notice(&view)
            .blank()
            .line("The plan specification has been updated with your latest progress.");
        Reply::new(&text, &PlanResult { plan: view })
    }

    async fn set_plan_status_reply(
        &self,
        viewer: Viewer,
        args: SetPlanStatusArgs,
    ) -> AppResult<Reply> {
        let outcome = self
            .services
            .set_plan_status(
                &viewer,
                &args.plan_id,
                args.status.into(),
                args.note.clone(),
            )
            .await?;
        let (plan, version) = (&outcome.plan, &outcome.version);
        let implementer: Vec<Uuid> = version.iter().filter_map(|v| v.implemented_by).collect();
        let related = self.one_plan(plan, &implementer).await?;
        let status = plan.status;
        let completed = status == PlanStatus::Completed;
        let mut text = Text::headline(if completed {
            "✓ Plan completed!"
        } else {
            "✓ Plan status updated!"
        });
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field("Status", changed_status(&outcome)?)
            .field("Updated", text_time(plan.updated_at));
        if let Some(version) = version {
            text.field(
                "Implemented Version",
                format!("v{} (created)", version.version),
            );
        }
        text.blank();
        match status {
            PlanStatus::Completed => {
                text.line(
                    "A new feature version has been created and linked to this implementation.",
                )
                .line("The plan is now released and available for reference.");
            }
            PlanStatus::Ready => {
                text.line("The plan is now available for workers to claim.");
            }
            PlanStatus::Draft => {
                text.line("The plan is back in draft; workers cannot claim it until it is marked ready again.");
            }
            PlanStatus::InProgress => {
                let worker = plan
                    .claimed_by
                    .map(|id| related.user(id).map(|user| user.email.clone()))
                    .transpose()?
                    .unwrap_or_default();
                text.line(format!(
                    "The plan is back in progress; the claim returned to {worker}, whose next claim_next_plan hands it back with {}.",
                    if args.note.is_some() { "your note" } else { "no note (pass note to say what to change)" }
                ));
            }
            PlanStatus::Failed => {
                text.line("The plan is marked failed and its claim released; its artifacts are kept for reference.");
            }
            _ => {}
        }
        change_reply(&text, &related, &outcome)
    }

    async fn claim_plan_reply(&self, viewer: Viewer, args: ClaimPlanArgs) -> AppResult<Reply> {
        let plan = self
            .services
            .claim_plan(&viewer, &args.plan_id, args.lease_seconds)
            .await?;
        let related = self.one_plan(&plan, &[]).await?;
        let feature = related.feature(plan.feature_id)?;
        let mut text = Text::headline("✓ Plan claimed successfully!");
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field("Feature", format!("{} ({})", feature.title, feature.id))
            .field("Status", plan.status.as_str())
            .field("Claimed by", format!("you ({})", viewer.user.email))
            .optional_field("Claimed at", plan.claimed_at.map(text_time))
            .optional_field("Claim token", current_token(&plan))
            .optional_field("Lease expires", plan.lease_expires_at.map(text_time));
        let mut view = related.plan_view(&plan)?;
        text.drift_notice(&view)
            .blank()
            .line("You can now start working on this plan. Update the plan spec as you make progress.")
            .line("Pass the claim token to update_plan, heartbeat_plan and submit_work; it is shown only here, so keep it. Call heartbeat_plan before the lease expires while you work.");
        view.claim_token = current_token(&plan).map(|token| token.to_string());
        Reply::new(&text, &PlanResult { plan: view })
    }

    async fn release_plan_reply(&self, viewer: Viewer, args: ReleasePlanArgs) -> AppResult<Reply> {
        let outcome = self
            .services
            .release_plan(&viewer, &args.plan_id, args.claim_token.as_deref())
            .await?;
        let plan = &outcome.plan;
        let related = self.one_plan(plan, &[]).await?;
        let mut text = Text::headline("✓ Plan released successfully!");
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field("Status", changed_status(&outcome)?)
            .field("Claimed by", "null")
            .field("Updated", text_time(plan.updated_at))
            .blank()
            .line("The plan is now available for other workers to claim.");
        change_reply(&text, &related, &outcome)
    }

    async fn submit_work_reply(&self, viewer: Viewer, args: SubmitWorkArgs) -> AppResult<Reply> {
        let target = match args.status {
            SubmitStatus::Review => SubmitTarget::Review,
            SubmitStatus::Completed => SubmitTarget::Completed,
        };
        let outcome = self
            .services
            .submit_work(
                &viewer,
                &args.plan_id,
                &args.artifacts_markdown,
                target,
                args.claim_token.as_deref(),
            )
            .await?;
        let (plan, version) = (&outcome.plan, &outcome.version);
        let implementer: Vec<Uuid> = version.iter().filter_map(|v| v.implemented_by).collect();
        let related = self.one_plan(plan, &implementer).await?;
        let status = changed_status(&outcome)?;
        let text = match version {
            None => {
                let mut text = Text::headline("✓ Work submitted for review!");
                text.field("Plan", &plan.title)
                    .field("ID", plan.id)
                    .field("Status", status)
                    .field("Last Activity", text_time(plan.last_activity_at))
                    .field("Updated", text_time(plan.updated_at))
                    .block("Work Artifacts", &args.artifacts_markdown)
                    .blank()
                    .line("The plan is now awaiting approval. Once approved, use set_plan_status to mark it completed.");
                let policy = related.project(plan.project_id)?.review_policy;
                text.line(format!(
                    "Who approves: {} (review policy {}).",
                    workflow::approvers(policy),
                    workflow::policy_name(policy)
                ));
                if let Some(drift) = &related.plan_view(plan)?.spec_drift {
                    text.line(format!(
                        "{} — the work was done against an older spec; the reviewer should compare it with get_spec_diff.",
                        drift.warning()
                    ));
                }
                text
            }
            Some(version) => {
                let feature = related.feature(plan.feature_id)?;
                let implementer = version
                    .implemented_by
                    .map(|id| related.user(id).map(|user| user.email.clone()))
                    .transpose()?
                    .unwrap_or_default();
                let mut text = Text::headline("✓ Implementation completed!");
                text.field("Plan", &plan.title)
                    .field("ID", plan.id)
                    .field("Status", status)
                    .field(
                        "Implemented Version",
                        format!("v{} (created automatically)", version.version),
                    )
                    .field("Updated", text_time(plan.updated_at))
                    .blank()
                    .line("A new feature version has been created:")
                    .line(format!("- Feature: {}", feature.title))
                    .line(format!("- Version: v{}", version.version))
                    .line(format!("- Implemented by: {implementer}"))
                    .line(format!(
                        "- Implementation timestamp: {}",
                        text_time(version.created_at)
                    ))
                    .blank()
                    .line("The implementation is now part of the feature history.");
                text
            }
        };
        change_reply(&text, &related, &outcome)
    }
}

/// `ready (was: draft)`: where a change took the plan, and from where.
fn changed_status(outcome: &Outcome) -> AppResult<String> {
    let status = outcome.plan.status;
    Ok(format!(
        "{} (was: {})",
        status.as_str(),
        outcome.previous.as_str()
    ))
}

/// The reply of a status change: `text` with the plan, its previous status
/// and the version the change cut, if any.
fn change_reply(text: &Text, related: &Related, outcome: &Outcome) -> AppResult<Reply> {
    let plan = &outcome.plan;
    let plans = HashMap::from([(plan.id, plan.clone())]);
    let result = PlanChangeResult {
        plan: related.plan_view(plan)?,
        previous_status: outcome.previous.into(),
        feature_version: outcome
            .version
            .as_ref()
            .map(|version| related.version_view(version, &plans))
            .transpose()?,
    };
    Reply::new(text, &result)
}

#[cfg(test)]
mod tests {
    use super::super::call::parse_arguments;
    use super::super::schema::input_schema;
    use super::*;

    /// Every argument type is an object schema, as MCP requires of an input
    /// schema, so `input` never falls back.
    #[test]
    fn every_argument_type_is_a_valid_input_schema() {
        assert!(input_schema::<CreatePlanArgs>().is_ok());
        assert!(input_schema::<ListPlansArgs>().is_ok());
        assert!(input_schema::<GetPlanArgs>().is_ok());
        assert!(input_schema::<UpdatePlanArgs>().is_ok());
        assert!(input_schema::<SetPlanStatusArgs>().is_ok());
        assert!(input_schema::<ClaimPlanArgs>().is_ok());
        assert!(input_schema::<ReleasePlanArgs>().is_ok());
        assert!(input_schema::<SubmitWorkArgs>().is_ok());
    }

    #[test]
    fn statuses_are_spelled_as_in_the_workflow() {
        for status in PlanStatus::ALL {
            let spelled = serde_json::to_value(Status::from(status)).expect("serializes");
            assert_eq!(spelled, status.as_str());
            let parsed: Status = serde_json::from_value(spelled).expect("parses");
            assert_eq!(PlanStatus::from(parsed), status);
        }
    }

    #[test]
    fn malformed_arguments_are_bad_user_input() {
        let arguments = serde_json::json!({ "plan_id": "x", "status": "done" });
        let serde_json::Value::Object(arguments) = arguments else {
            unreachable!("an object literal");
        };
        let error = parse_arguments::<SetPlanStatusArgs>("set_plan_status", arguments)
            .expect_err("unknown status");
        assert_eq!(error.code(), "BAD_USER_INPUT");
        assert!(
            error.message().contains("unknown variant `done`"),
            "{}",
            error.message()
        );
    }
}
