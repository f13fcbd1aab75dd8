//! Tools for agent fleets: claim_next_plan, heartbeat_plan,
//! add_plan_dependency, remove_plan_dependency, set_plan_priority.

use axum::http::request::Parts;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router};
use serde::{Deserialize, Serialize};

use super::Tools;
use super::call::Reply;
use super::schema::{input, output};
use super::views::{PlanView, Related, Text, text_time};
use crate::error::AppResult;
use crate::service::Viewer;
use crate::service::changes::current_token;
use crate::service::claim_next::NextPlan;
use crate::workflow::{Backlog, NothingReady};
use entity::plan;
use uuid::Uuid;

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

/// claim_next_plan: the plan claimed (or sent back to you), or null with
/// the reason when none is ready.
#[derive(Serialize, JsonSchema)]
struct ClaimNextResult {
    plan: Option<PlanView>,
    /// Set when the plan was STALLED and you took it over from its holder.
    took_over: Option<TakeOverView>,
    /// Set when this is your own work, sent back to you from review.
    sent_back: Option<SentBackView>,
    /// Set when there is nothing to claim: why, and what the open plans wait for.
    nothing_ready: Option<NothingReadyView>,
}

/// The claim a take-over ended.
#[derive(Serialize, JsonSchema)]
struct TakeOverView {
    /// Email of the previous holder ("nobody" when the plan was not held).
    previous_holder: String,
    /// Their last activity on the plan.
    last_activity_at: String,
}

/// Work a reviewer sent back to you.
#[derive(Serialize, JsonSchema)]
struct SentBackView {
    /// Email of the reviewer.
    by: String,
    at: String,
    /// What the reviewer asks you to change; null when they left no note.
    note: Option<String>,
}

/// Why claim_next_plan found nothing, counted over the project's (or feature's) open plans.
#[derive(Serialize, JsonSchema)]
struct NothingReadyView {
    /// DONE (stop), SKIPPED_AS_DRIFTED (rebase, or claim without skip_drifted), STALLED (claim with include_stalled), WAIT (others are working: retry later) or NEEDS_PERSON (escalate).
    reason: String,
    drafts: u64,
    ready_blocked: u64,
    ready_blocked_by_failed: u64,
    ready_skipped_as_drifted: u64,
    being_worked_on: u64,
    in_review: u64,
    stalled_expired: u64,
    stalled_waiting: u64,
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
        let next = self
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
        let (plan, took_over, sent_back) = match next {
            NextPlan::Claimed { plan, took_over } => (plan, took_over, None),
            NextPlan::Returned { plan, sent_back } => (plan, None, Some(sent_back)),
            NextPlan::Nothing(backlog) => return nothing_ready_reply(&backlog, &args),
        };
        let mut users: Vec<Uuid> = Vec::new();
        users.extend(took_over.as_ref().and_then(|take| take.previous_holder));
        users.extend(sent_back.as_ref().and_then(|event| event.actor_id));
        let related =
            Related::of_plans(&self.services, std::slice::from_ref(&plan), &users).await?;
        let spec = self.spec_text(&plan.spec_key).await?;
        let mut view = related.plan_view(&plan)?;
        let email = |id: Option<Uuid>| -> AppResult<String> {
            Ok(match id {
                Some(id) => related.user(id)?.email.clone(),
                None => "nobody".to_owned(),
            })
        };
        let took_over_view = took_over
            .as_ref()
            .map(|take| -> AppResult<TakeOverView> {
                Ok(TakeOverView {
                    previous_holder: email(take.previous_holder)?,
                    last_activity_at: text_time(take.last_activity_at),
                })
            })
            .transpose()?;
        let sent_back_view = sent_back
            .as_ref()
            .map(|event| -> AppResult<SentBackView> {
                Ok(SentBackView {
                    by: email(event.actor_id)?,
                    at: text_time(event.at),
                    note: event.note.clone(),
                })
            })
            .transpose()?;
        let mut text = match (&took_over_view, &sent_back_view) {
            (Some(take), _) => {
                let mut text = Text::headline("✓ Plan claimed successfully (taken over)!");
                text.line(format!(
                    "This plan was STALLED: you took it over from {}, whose last activity was {}. Their partial notes are in the specification below; their claim token no longer works.",
                    take.previous_holder, take.last_activity_at
                ))
                .blank();
                text
            }
            (None, Some(back)) => {
                let mut text = Text::headline("↩ Work sent back to you from review");
                text.line(format!(
                    "{} sent your submitted work back at {}; you hold the plan again (in_progress) — finish it before taking new work.",
                    back.by, back.at
                ));
                match &back.note {
                    Some(note) => text.block("Reviewer's note", note),
                    None => text.line("The reviewer left no note; see the plan's history."),
                };
                text.blank();
                text
            }
            (None, None) => Text::headline("✓ Plan claimed successfully!"),
        };
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
            .drift_notice(&view)
            .blank()
            .line("Specification Content:")
            .blank()
            .line(spec.trim_end())
            .blank()
            .line("Pass the claim token to update_plan, heartbeat_plan and submit_work; it is shown only here, so keep it. Call heartbeat_plan before the lease expires while you work.");
        view.spec_content = Some(spec);
        view.claim_token = current_token(&plan).map(|token| token.to_string());
        let result = ClaimNextResult {
            plan: Some(view),
            took_over: took_over_view,
            sent_back: sent_back_view,
            nothing_ready: None,
        };
        Reply::new(&text, &result)
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
        let view = self.fleet_view(&plan).await?;
        let mut text = Text::headline("✓ Lease renewed");
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field("Status", plan.status.as_str())
            .field("Last Activity", text_time(plan.last_activity_at))
            .optional_field("Lease expires", plan.lease_expires_at.map(text_time))
            .drift_notice(&view);
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

/// "No plan is ready", with the reason first and a line for each kind of
/// open plan saying what moves it on, so that an agent stops, escalates or
/// waits instead of polling a finished project forever.
fn nothing_ready_reply(backlog: &Backlog, args: &ClaimNextPlanArgs) -> AppResult<Reply> {
    let reason = backlog.reason();
    let mut text = Text::headline("No plan is ready");
    text.line(match reason {
        NothingReady::Done => {
            "Nothing left to do: every plan here is completed or failed. Stop polling; new work starts as plans marked ready."
        }
        NothingReady::SkippedAsDrifted => {
            "Ready plans were skipped as drifted (skip_drifted: true): rebase them after reading get_spec_diff, or call claim_next_plan without skip_drifted."
        }
        NothingReady::Stalled => {
            "Stalled plans whose lease ran out can be taken over: call claim_next_plan with include_stalled: true."
        }
        NothingReady::Wait => "Every open plan is taken, in review or waiting for unfinished plans; try again later.",
        NothingReady::NeedsPerson => {
            "Only a person can move the rest on (see below): ask a project member or owner instead of polling."
        }
    });
    let held = backlog.held;
    let kinds: [(u64, String); 8] = [
        (backlog.ready_skipped_as_drifted, "ready but skipped as drifted: get_spec_diff, then rebase_plan".into()),
        (backlog.stalled_expired, format!("stalled with the lease run out{}", if args.include_stalled { "" } else { ": include_stalled: true takes one over" })),
        (held, "being worked on by others".into()),
        (backlog.in_review, "in review: a member approves (set_plan_status completed) or sends them back".into()),
        (backlog.stalled_waiting, "stalled, their holder's lease still running".into()),
        (backlog.ready_blocked - backlog.ready_blocked_by_failed.min(backlog.ready_blocked), "ready but waiting for unfinished plans".into()),
        (backlog.ready_blocked_by_failed, "ready but waiting for a FAILED plan, which never completes: a member removes the dependency (remove_plan_dependency) or replaces the failed plan".into()),
        (backlog.drafts, "drafts: a member marks them ready (set_plan_status ready)".into()),
    ];
    let mut listed = false;
    for (count, what) in kinds {
        if count > 0 {
            if !listed {
                text.blank().line("Open plans:");
                listed = true;
            }
            text.line(format!("- {count} {what}"));
        }
    }
    let view = NothingReadyView {
        reason: reason.code().to_owned(),
        drafts: backlog.drafts,
        ready_blocked: backlog.ready_blocked,
        ready_blocked_by_failed: backlog.ready_blocked_by_failed,
        ready_skipped_as_drifted: backlog.ready_skipped_as_drifted,
        being_worked_on: held,
        in_review: backlog.in_review,
        stalled_expired: backlog.stalled_expired,
        stalled_waiting: backlog.stalled_waiting,
    };
    let result = ClaimNextResult {
        plan: None,
        took_over: None,
        sent_back: None,
        nothing_ready: Some(view),
    };
    Reply::new(&text, &result)
}

#[cfg(test)]
mod tests {
    use super::super::schema::input_schema;
    use super::*;

    #[test]
    fn every_argument_type_is_a_valid_input_schema() {
        assert!(input_schema::<ClaimNextPlanArgs>().is_ok());
        assert!(input_schema::<HeartbeatPlanArgs>().is_ok());
        assert!(input_schema::<DependencyArgs>().is_ok());
        assert!(input_schema::<SetPlanPriorityArgs>().is_ok());
    }
}
