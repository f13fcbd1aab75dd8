//! The plan tools that read: list_plans (filters and paging as `plans(...)`
//! has them) and get_plan (the spec, the claim, both sides of its
//! dependencies), and the one-plan result the writing tools share.

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Tools;
use super::call::Reply;
use super::views::{BlockerView, PlanView, Related, Status, Text, text_time};
use crate::error::{AppResult, Argument};
use crate::service::pagination::{Position, SortValue, Window};
use crate::service::plan_lists::{PageReads, PlanFilter, PlanSort};
use crate::service::{Viewer, parse_id};
use crate::workflow::PlanStatus;
use entity::plan;

/// The longest list one call returns (the service's largest page); the
/// text says so when there is more, and filters narrow the list.
const LIST_LIMIT: i32 = 100;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListPlansArgs {
    /// Filter plans by project UUID
    pub(super) project_id: Option<String>,
    /// Filter plans by feature UUID
    pub(super) feature_id: Option<String>,
    /// Filter by status: draft, ready, claimed, in_progress, stalled, review, completed, or failed
    pub(super) status_filter: Option<Status>,
    /// Only plans claimed by this user: a user UUID, or "me"
    pub(super) claimed_by: Option<String>,
    /// Only plans of this priority (0 = most urgent … 4 = someday)
    pub(super) priority: Option<i32>,
    /// true: only plans waiting for an unfinished plan; false: only plans waiting for none
    pub(super) blocked: Option<bool>,
    /// true: only plans waiting for a failed plan (they need a person: remove_plan_dependency); false: only plans waiting for none
    pub(super) blocked_by_failed: Option<bool>,
    /// true: only open plans whose feature spec changed since they were written (see get_spec_diff); false: only up-to-date ones
    pub(super) drifted: Option<bool>,
    /// Continue after this plan: the next_after of the previous call (the ID of its last plan)
    pub(super) after: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GetPlanArgs {
    /// UUID of the plan to retrieve
    pub(super) plan_id: String,
}

/// One plan (create_plan, get_plan, update_plan, claim_plan).
#[derive(Serialize, JsonSchema)]
pub(super) struct PlanResult {
    pub(super) plan: PlanView,
}

/// list_plans.
#[derive(Serialize, JsonSchema)]
pub(super) struct PlanListResult {
    pub(super) plans: Vec<PlanView>,
    /// How many plans match in all.
    pub(super) total: u64,
    /// More plans match than this list holds: call again with after = next_after.
    pub(super) truncated: bool,
    /// Pass as after to list the plans that follow; null when none follow.
    pub(super) next_after: Option<String>,
}

impl Tools {
    pub(super) async fn one_plan(
        &self,
        plan: &plan::Model,
        more_users: &[Uuid],
    ) -> AppResult<Related> {
        Related::of_plans(&self.services, std::slice::from_ref(plan), more_users).await
    }

    pub(super) async fn list_plans_reply(
        &self,
        viewer: Viewer,
        args: ListPlansArgs,
    ) -> AppResult<Reply> {
        let status = args.status_filter.map(PlanStatus::from);
        let me = viewer.id().to_string();
        let claimed_by = match args.claimed_by.as_deref().map(str::trim) {
            Some("me") => Some(me.as_str()),
            other => other,
        };
        let filter = PlanFilter {
            drifted: args.drifted,
            blocked: args.blocked,
            blocked_by_failed: args.blocked_by_failed,
            ..PlanFilter::parse(
                args.project_id.as_deref(),
                args.feature_id.as_deref(),
                claimed_by,
                status,
            )?
        }
        .with_priorities(args.priority.into_iter().collect())?;
        // Oldest first: a plan's place is its creation time and id.
        let after = match args.after.as_deref() {
            Some(id) => {
                let id = parse_id(Argument::After, id)?;
                let plan = self.services.find_plan(id).await?;
                self.services
                    .require_member(&viewer, plan.project_id)
                    .await?;
                Some(Position {
                    value: SortValue::Time(plan.created_at),
                    id,
                })
            }
            None => None,
        };
        let window = Window::new(Some(LIST_LIMIT), after, None, None, false)?;
        let (page, counted) = self
            .services
            .list_plans(
                &viewer,
                &filter,
                PlanSort::CreatedAt,
                &window,
                PageReads::PLANS_AND_COUNT,
            )
            .await?;
        let total = match counted {
            Some(total) => total,
            None => self.services.count_plans(&viewer, &filter).await?,
        };
        let plans: Vec<_> = page.rows.into_iter().map(|row| row.plan).collect();
        let related = Related::of_plans(&self.services, &plans, &[]).await?;
        let views = plans
            .iter()
            .map(|plan| related.plan_view(plan))
            .collect::<AppResult<Vec<_>>>()?;
        let feature_title = match (filter.feature, plans.first()) {
            (Some(_), Some(plan)) => Some(related.feature(plan.feature_id)?.title.as_str()),
            _ => None,
        };
        let mut text = Text::headline(format!(
            "✓ {} ({total}):",
            list_heading(status, feature_title)
        ));
        if plans.is_empty() {
            text.line("No plans match.");
        }
        for (number, plan) in plans.iter().enumerate() {
            let feature = related.feature(plan.feature_id)?;
            let project = related.project(plan.project_id)?;
            let status = plan.status;
            text.line(format!("{}. {}", number + 1, plan.title))
                .line(format!("   ID: {}", plan.id))
                .line(format!(
                    "   Feature: {} (v{})",
                    feature.title, feature.current_version
                ))
                .line(format!("   Project: {}", project.name))
                .line(format!("   Status: {}", status.as_str()))
                .line(format!("   Priority: {}", plan.priority));
            if let Some(claimer) = plan.claimed_by {
                text.line(format!("   Claimed by: {}", related.user(claimer)?.email));
            }
            if let Some(at) = plan.claimed_at {
                text.line(format!("   Claimed at: {}", text_time(at)));
            }
            if status.is_worked_on() {
                text.line(format!(
                    "   Last Activity: {}",
                    text_time(plan.last_activity_at)
                ));
            }
            if let Some(version) = plan.implemented_version {
                text.line(format!("   Implemented Version: v{version}"));
            }
            text.line(format!("   Created: {}", text_time(plan.created_at)))
                .blank();
        }
        let next_after = match (page.has_next_page, plans.last()) {
            (true, Some(last)) => Some(last.id.to_string()),
            _ => None,
        };
        if let Some(next) = &next_after {
            text.line(format!(
                "Showing {} of {total}; call list_plans again with after: {next} for the next ones.",
                plans.len()
            ));
        }
        Reply::new(
            &text,
            &PlanListResult {
                plans: views,
                total,
                truncated: next_after.is_some(),
                next_after,
            },
        )
    }

    pub(super) async fn get_plan_reply(
        &self,
        viewer: Viewer,
        args: GetPlanArgs,
    ) -> AppResult<Reply> {
        let plan = self.services.plan(&viewer, &args.plan_id).await?;
        let ids = [plan.id];
        let (related, spec, blockers, mut waiters) = futures::try_join!(
            self.one_plan(&plan, &[]),
            self.spec_text(&plan.spec_key),
            self.services.blockers_of_plan(plan.id),
            self.services.waiters_by_plans(&ids),
        )?;
        let waiters = waiters.remove(&plan.id).unwrap_or_default();
        let feature = related.feature(plan.feature_id)?;
        let mut text = Text::headline(format!("✓ Plan: {}", plan.title));
        text.field("ID", plan.id)
            .field("Feature", format!("{} ({})", feature.title, feature.id))
            .field("Project", &related.project(plan.project_id)?.name)
            .field("Status", plan.status.as_str())
            .field("Priority", plan.priority);
        let mut view = related.plan_view(&plan)?;
        text.drift_notice(&view);
        if let Some(claimer) = plan.claimed_by {
            text.field("Claimed by", &related.user(claimer)?.email)
                .optional_field("Claimed at", plan.claimed_at.map(text_time))
                .field("Last Activity", text_time(plan.last_activity_at))
                .optional_field("Lease expires", plan.lease_expires_at.map(text_time));
        }
        if !blockers.is_empty() {
            text.line("Waits for:");
            for blocker in &blockers {
                text.line(format!(
                    "- {} ({}, {})",
                    blocker.title,
                    blocker.id,
                    blocker.status.as_str()
                ));
            }
        }
        if !waiters.is_empty() {
            let ids: Vec<String> = waiters.iter().map(Uuid::to_string).collect();
            let waiting = match ids.len() {
                1 => "1 plan waits".to_owned(),
                many => format!("{many} plans wait"),
            };
            text.field(
                "Blocks",
                format!("{waiting} for this one: {}", ids.join(", ")),
            );
        }
        view.blocks = Some(waiters.iter().map(Uuid::to_string).collect());
        view.blocked_by = Some(
            blockers
                .into_iter()
                .map(|blocker| BlockerView {
                    id: blocker.id.to_string(),
                    title: blocker.title,
                    status: blocker.status.into(),
                })
                .collect(),
        );
        if let Some(submitter) = plan.submitted_by {
            text.field("Submitted by", &related.user(submitter)?.email);
        }
        text.optional_field(
            "Implemented Version",
            plan.implemented_version
                .map(|version| format!("v{version}")),
        )
        .field("Created", text_time(plan.created_at))
        .field("Updated", text_time(plan.updated_at));
        if let Some(description) = &plan.description {
            text.block("Description", description);
        }
        text.blank()
            .line("Specification Content:")
            .blank()
            .line(spec.trim_end());
        if let Some(artifacts) = &plan.work_artifacts {
            text.block("Work Artifacts", artifacts);
        }
        view.spec_content = Some(spec);
        Reply::new(&text, &PlanResult { plan: view })
    }
}

/// `Available Plans`, `Plans for User Authentication`, `Stalled Plans`, …
/// as the seed's examples head their lists: "Available Plans" unless a
/// filter names something more specific.
fn list_heading(status: Option<PlanStatus>, feature_title: Option<&str>) -> String {
    let base = match status {
        None if feature_title.is_some() => "Plans",
        None => "Available Plans",
        Some(PlanStatus::Draft) => "Draft Plans",
        Some(PlanStatus::Ready) => "Available Plans",
        Some(PlanStatus::Claimed) => "Claimed Plans",
        Some(PlanStatus::InProgress) => "In-Progress Plans",
        Some(PlanStatus::Stalled) => "Stalled Plans",
        Some(PlanStatus::Review) => "Plans in Review",
        Some(PlanStatus::Completed) => "Completed Plans",
        Some(PlanStatus::Failed) => "Failed Plans",
    };
    match feature_title {
        Some(title) => format!("{base} for {title}"),
        None => base.to_owned(),
    }
}
