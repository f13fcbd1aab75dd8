//! Spec drift for agents: get_spec_diff (what changed in the feature spec
//! since a plan was written, or between two feature versions) and
//! rebase_plan (the plan is now based on the current spec).

use axum::http::request::Parts;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router};
use serde::{Deserialize, Serialize};

use super::Tools;
use super::call::Reply;
use super::schema::{input, output};
use super::views::{DiffView, PlanView, Related, Text, text_time};
use crate::error::{AppError, AppResult};
use crate::service::Viewer;
use crate::service::drift::DiffReport;

const GET_SPEC_DIFF: &str = "Show what changed in a feature's specification, as a unified diff with added/removed line counts. With plan_id: from the spec the plan was written against to the feature's current spec (empty when the plan is up to date; get_plan warns when it is not). With feature_id: between two feature versions (from_version required, to_version default the current one). Large diffs are cut and say so.";
const REBASE_PLAN: &str = "Rebase a plan onto its feature's current version after re-reading the feature spec (see get_spec_diff): the plan is no longer drifted. Optionally replace the plan's spec in the same call with spec_content (as update_plan: claimed work only by its claimer). Completed and failed plans cannot be rebased.";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetSpecDiffArgs {
    /// UUID of a plan: diff from the feature spec it was written against to the current one
    plan_id: Option<String>,
    /// UUID of a feature: diff between two of its versions (with from_version)
    feature_id: Option<String>,
    /// With feature_id: the version to compare from
    from_version: Option<i32>,
    /// With feature_id: the version to compare to (default: the current version)
    to_version: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RebasePlanArgs {
    /// UUID of the plan to rebase
    plan_id: String,
    /// New plan specification in markdown, written against the current feature spec (optional)
    spec_content: Option<String>,
}

/// get_spec_diff.
#[derive(Serialize, JsonSchema)]
struct SpecDiffResult {
    /// Feature id (UUID).
    feature_id: String,
    /// The version compared from (for a plan: the one it was written against).
    from_version: i32,
    /// The version compared to.
    to_version: i32,
    /// The diff; for an up-to-date plan, empty.
    diff: DiffView,
}

/// rebase_plan.
#[derive(Serialize, JsonSchema)]
struct RebaseResult {
    plan: PlanView,
}

#[tool_router(router = drift_tools, vis = "pub(super)")]
impl Tools {
    #[tool(description = GET_SPEC_DIFF, input_schema = input::<GetSpecDiffArgs>(), output_schema = output::<SpecDiffResult>(), annotations(read_only_hint = true))]
    async fn get_spec_diff(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("get_spec_diff", &request, arguments, |viewer, args| {
            self.get_spec_diff_reply(viewer, args)
        })
        .await
    }

    #[tool(description = REBASE_PLAN, input_schema = input::<RebasePlanArgs>(), output_schema = output::<RebaseResult>())]
    async fn rebase_plan(
        &self,
        Extension(request): Extension<Parts>,
        arguments: JsonObject,
    ) -> CallToolResult {
        self.run("rebase_plan", &request, arguments, |viewer, args| {
            self.rebase_plan_reply(viewer, args)
        })
        .await
    }
}

impl Tools {
    async fn get_spec_diff_reply(&self, viewer: Viewer, args: GetSpecDiffArgs) -> AppResult<Reply> {
        let (report, plan) = match (&args.plan_id, &args.feature_id, args.from_version) {
            (Some(plan_id), None, None) => {
                let (plan, report) = self.services.plan_drift_diff(&viewer, plan_id).await?;
                match report {
                    Some(report) => (report, Some(plan)),
                    None => {
                        let mut text = Text::headline("✓ Plan is up to date");
                        text.field("Plan", &plan.title)
                            .field("ID", plan.id)
                            .field("Written against", format!("v{}", plan.based_on_version))
                            .blank()
                            .line("The feature spec has not changed since this plan was written.");
                        let result = SpecDiffResult {
                            feature_id: plan.feature_id.to_string(),
                            from_version: plan.based_on_version,
                            to_version: plan.based_on_version,
                            diff: DiffView {
                                unified: String::new(),
                                added: 0,
                                removed: 0,
                                truncated: false,
                            },
                        };
                        return Reply::new(&text, &result);
                    }
                }
            }
            (None, Some(feature_id), Some(from)) => {
                let report = self
                    .services
                    .feature_spec_diff(&viewer, feature_id, from, args.to_version)
                    .await?;
                (report, None)
            }
            _ => {
                return Err(AppError::BadUserInput(
                    "Give either plan_id, or feature_id with from_version (and optionally to_version)"
                        .into(),
                ));
            }
        };
        let DiffReport {
            feature,
            from_version,
            to_version,
            diff,
        } = report;
        let mut text = Text::headline(format!(
            "✓ Spec changes of {}: v{from_version} → v{to_version}",
            feature.title
        ));
        if let Some(plan) = &plan {
            text.field("Plan", &plan.title)
                .field("ID", plan.id)
                .field("Written against", format!("v{from_version}"));
        }
        text.field("Feature", format!("{} ({})", feature.title, feature.id))
            .field("Current version", format!("v{}", feature.current_version))
            .field("Lines", format!("+{} -{}", diff.added, diff.removed))
            .field("Feature updated", text_time(feature.updated_at))
            .blank();
        if diff.unified.is_empty() {
            text.line("The two specs have the same text.");
        } else {
            text.line(diff.unified.trim_end());
        }
        if diff.truncated {
            text.blank().line(
                "(The diff was cut at the server's limit; read the full specs with get_feature.)",
            );
        }
        let result = SpecDiffResult {
            feature_id: feature.id.to_string(),
            from_version,
            to_version,
            diff: diff.into(),
        };
        Reply::new(&text, &result)
    }

    async fn rebase_plan_reply(&self, viewer: Viewer, args: RebasePlanArgs) -> AppResult<Reply> {
        let plan = self
            .services
            .rebase_plan(&viewer, &args.plan_id, args.spec_content.as_deref())
            .await?;
        let related = Related::of_plans(&self.services, std::slice::from_ref(&plan), &[]).await?;
        let view = related.plan_view(&plan)?;
        let mut text = Text::headline("✓ Plan rebased!");
        text.field("Plan", &plan.title)
            .field("ID", plan.id)
            .field("Status", plan.status.as_str())
            .field("Written against", format!("v{}", plan.based_on_version))
            .field("Updated", text_time(plan.updated_at))
            .blank()
            .line("The plan is now based on the feature's current specification.");
        Reply::new(&text, &RebaseResult { plan: view })
    }
}
