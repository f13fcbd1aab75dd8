//! What the tools return: JSON views (the structured content programs read,
//! each with an output schema) and the helpers that render the seed's
//! human-readable text from the same rows.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;

use chrono::{DateTime, SecondsFormat, Utc};
use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::service::{Services, rfc3339};
use crate::workflow::PlanStatus;
use entity::{feature, feature_version, plan, project, user};

/// A plan status as MCP speaks it: lower case, as in the seed (`in_progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum Status {
    Draft,
    Ready,
    Claimed,
    InProgress,
    Stalled,
    Review,
    Completed,
    Failed,
}

impl From<Status> for PlanStatus {
    fn from(status: Status) -> PlanStatus {
        match status {
            Status::Draft => PlanStatus::Draft,
            Status::Ready => PlanStatus::Ready,
            Status::Claimed => PlanStatus::Claimed,
            Status::InProgress => PlanStatus::InProgress,
            Status::Stalled => PlanStatus::Stalled,
            Status::Review => PlanStatus::Review,
            Status::Completed => PlanStatus::Completed,
            Status::Failed => PlanStatus::Failed,
        }
    }
}

impl From<PlanStatus> for Status {
    fn from(status: PlanStatus) -> Status {
        match status {
            PlanStatus::Draft => Status::Draft,
            PlanStatus::Ready => Status::Ready,
            PlanStatus::Claimed => Status::Claimed,
            PlanStatus::InProgress => Status::InProgress,
            PlanStatus::Stalled => Status::Stalled,
            PlanStatus::Review => Status::Review,
            PlanStatus::Completed => Status::Completed,
            PlanStatus::Failed => Status::Failed,
        }
    }
}

/// Timestamps in text: to the second, as in the seed (`2025-02-13T10:00:00Z`).
pub fn text_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A person, as a reply names them.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UserRef {
    /// User id (UUID).
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
}

impl From<&user::Model> for UserRef {
    fn from(user: &user::Model) -> UserRef {
        UserRef {
            id: user.id.to_string(),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
        }
    }
}

/// The feature a plan belongs to.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FeatureRef {
    /// Feature id (UUID).
    pub id: String,
    pub title: String,
    /// The feature's latest version number.
    pub current_version: i32,
}

/// The project something belongs to.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProjectRef {
    /// Project id (UUID).
    pub id: String,
    pub name: String,
}

/// The plan that implemented a feature version.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlanRef {
    /// Plan id (UUID).
    pub id: String,
    pub title: String,
}

/// An implementation plan.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlanView {
    /// Plan id (UUID).
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    pub feature: FeatureRef,
    pub project: ProjectRef,
    /// Who holds the plan (claimed, in_progress, stalled); null otherwise.
    pub claimed_by: Option<UserRef>,
    pub claimed_at: Option<String>,
    /// Who last submitted work for it.
    pub submitted_by: Option<UserRef>,
    /// Markdown submitted with submit_work.
    pub work_artifacts: Option<String>,
    /// The feature version this plan's completion created.
    pub implemented_version: Option<i32>,
    pub last_activity_at: String,
    pub created_at: String,
    pub updated_at: String,
    /// The feature version the plan was written against (at creation or its last rebase_plan).
    pub based_on_version: i32,
    /// Set when the feature moved past the spec the plan was written against; see get_spec_diff.
    pub spec_drift: Option<DriftView>,
    /// 0 = most urgent … 4 = someday.
    pub priority: i32,
    /// Your claim's fencing token (pass it as claim_token): only in the answer of claim_plan / claim_next_plan that made the claim, null everywhere else.
    pub claim_token: Option<String>,
    /// When the current claim stalls without activity; null when unclaimed.
    pub lease_expires_at: Option<String>,
    /// The plans this one waits for, with their status; get_plan includes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<Vec<BlockerView>>,
    /// The ids of the plans that wait for this one; get_plan includes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<String>>,
    /// The full specification (markdown); create_plan, get_plan and update_plan include it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_content: Option<String>,
}

/// A plan another plan waits for.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BlockerView {
    /// Plan id (UUID).
    pub id: String,
    pub title: String,
    pub status: Status,
}

/// How far a plan's spec lags behind its feature.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DriftView {
    /// The version the plan was written against.
    pub from_version: i32,
    /// The feature's current version.
    pub to_version: i32,
    /// Versions behind; 0 when the plan's version was amended since.
    pub behind: i32,
}

impl DriftView {
    /// `⚠ Written against v3; feature is at v5`, the line replies show.
    pub fn warning(&self) -> String {
        if self.behind == 0 {
            format!(
                "⚠ Written against v{}; feature is at v{}, whose spec was amended since",
                self.from_version, self.to_version
            )
        } else {
            format!(
                "⚠ Written against v{}; feature is at v{}",
                self.from_version, self.to_version
            )
        }
    }
}

/// A line diff between two specs.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiffView {
    /// Unified diff with 3 lines of context; empty when the specs are the same.
    pub unified: String,
    /// Lines added, over the whole diff.
    pub added: usize,
    /// Lines removed, over the whole diff.
    pub removed: usize,
    /// The unified text was cut at the server's limit.
    pub truncated: bool,
}

impl From<crate::drift::SpecDiff> for DiffView {
    fn from(diff: crate::drift::SpecDiff) -> DiffView {
        DiffView {
            unified: diff.unified,
            added: diff.added,
            removed: diff.removed,
            truncated: diff.truncated,
        }
    }
}

/// A feature version.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VersionView {
    /// Version id (UUID).
    pub id: String,
    /// Feature id (UUID).
    pub feature_id: String,
    /// v1, v2, …: never repeated within a feature.
    pub version: i32,
    /// The plan whose completion created this version; null for v1 and manual versions.
    pub implemented_by_plan: Option<PlanRef>,
    /// Who did the work (the submitter, else the approver).
    pub implemented_by: Option<UserRef>,
    pub created_at: String,
}

/// A feature: what to build.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FeatureView {
    /// Feature id (UUID).
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub project: ProjectRef,
    /// The latest version number.
    pub current_version: i32,
    /// How many plans the feature has in each status (statuses with none are left out).
    pub plan_counts: BTreeMap<String, u64>,
    pub created_at: String,
    pub updated_at: String,
    /// The current specification (markdown); only get_feature includes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_content: Option<String>,
}

/// A project the caller belongs to.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProjectView {
    /// Project id (UUID).
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// The caller's role: owner, member or viewer (viewers cannot change anything).
    pub role: Option<String>,
    /// How many plans the project has in each status (statuses with none are left out).
    pub plan_counts: BTreeMap<String, u64>,
    pub created_at: String,
}

/// Plans per status, keyed by the lower-case status name.
pub fn counts_by_name(counts: Option<&HashMap<PlanStatus, u64>>) -> BTreeMap<String, u64> {
    counts
        .into_iter()
        .flatten()
        .filter(|(_, count)| **count > 0)
        .map(|(status, count)| (status.as_str().to_owned(), *count))
        .collect()
}

/// `3 (1 ready, 2 completed)`, statuses in workflow order.
pub fn counts_text(counts: &BTreeMap<String, u64>) -> String {
    let total: u64 = counts.values().sum();
    let parts: Vec<String> = PlanStatus::ALL
        .iter()
        .filter_map(|status| {
            counts
                .get(status.as_str())
                .map(|count| format!("{count} {}", status.as_str()))
        })
        .collect();
    if parts.is_empty() {
        total.to_string()
    } else {
        format!("{total} ({})", parts.join(", "))
    }
}

/// The rows a reply mentions besides its plans, loaded with one query per
/// table however many plans the reply lists.
#[derive(Default)]
pub struct Related {
    features: HashMap<Uuid, feature::Model>,
    projects: HashMap<Uuid, project::Model>,
    users: HashMap<Uuid, user::Model>,
}

impl Related {
    /// Features, projects and people of `plans`, plus `more_users`.
    pub async fn of_plans(
        services: &Services,
        plans: &[plan::Model],
        more_users: &[Uuid],
    ) -> AppResult<Related> {
        let feature_ids = unique(plans.iter().map(|plan| plan.feature_id));
        let project_ids = unique(plans.iter().map(|plan| plan.project_id));
        let user_ids = unique(
            plans
                .iter()
                .flat_map(|plan| [plan.claimed_by, plan.submitted_by])
                .flatten()
                .chain(more_users.iter().copied()),
        );
        // An empty list would still cost a round trip (`IN ()` matches nothing).
        let (features, projects, users) = futures::try_join!(
            async {
                if feature_ids.is_empty() {
                    Ok(Vec::new())
                } else {
                    services.features_by_ids(&feature_ids).await
                }
            },
            async {
                if project_ids.is_empty() {
                    Ok(Vec::new())
                } else {
                    services.projects_by_ids(&project_ids).await
                }
            },
            async {
                if user_ids.is_empty() {
                    Ok(Vec::new())
                } else {
                    services.users_by_ids(&user_ids).await
                }
            },
        )?;
        Ok(Related {
            features: features.into_iter().map(|row| (row.id, row)).collect(),
            projects: projects.into_iter().map(|row| (row.id, row)).collect(),
            users: users.into_iter().map(|row| (row.id, row)).collect(),
        })
    }

    pub fn feature(&self, id: Uuid) -> AppResult<&feature::Model> {
        self.features.get(&id).ok_or_else(|| missing("feature", id))
    }

    pub fn project(&self, id: Uuid) -> AppResult<&project::Model> {
        self.projects.get(&id).ok_or_else(|| missing("project", id))
    }

    pub fn user(&self, id: Uuid) -> AppResult<&user::Model> {
        self.users.get(&id).ok_or_else(|| missing("user", id))
    }

    fn optional_user(&self, id: Option<Uuid>) -> AppResult<Option<UserRef>> {
        id.map(|id| self.user(id).map(UserRef::from)).transpose()
    }

    pub fn plan_view(&self, plan: &plan::Model) -> AppResult<PlanView> {
        let feature = self.feature(plan.feature_id)?;
        let project = self.project(plan.project_id)?;
        Ok(PlanView {
            id: plan.id.to_string(),
            title: plan.title.clone(),
            description: plan.description.clone(),
            status: plan.status.into(),
            feature: FeatureRef {
                id: feature.id.to_string(),
                title: feature.title.clone(),
                current_version: feature.current_version,
            },
            project: ProjectRef {
                id: project.id.to_string(),
                name: project.name.clone(),
            },
            claimed_by: self.optional_user(plan.claimed_by)?,
            claimed_at: plan.claimed_at.map(rfc3339),
            submitted_by: self.optional_user(plan.submitted_by)?,
            work_artifacts: plan.work_artifacts.clone(),
            implemented_version: plan.implemented_version,
            last_activity_at: rfc3339(plan.last_activity_at),
            created_at: rfc3339(plan.created_at),
            updated_at: rfc3339(plan.updated_at),
            based_on_version: plan.based_on_version,
            spec_drift: crate::drift::drift_of(plan, feature).map(|drift| DriftView {
                from_version: drift.from_version,
                to_version: drift.to_version,
                behind: drift.behind,
            }),
            priority: plan.priority,
            // Only the claim's own answer shows it (see `Plan.claimToken`).
            claim_token: None,
            blocked_by: None,
            blocks: None,
            lease_expires_at: plan
                .lease_expires_at
                .filter(|_| plan.claimed_by.is_some())
                .map(rfc3339),
            spec_content: None,
        })
    }

    /// A version; `plans` holds the plans versions may name.
    pub fn version_view(
        &self,
        version: &feature_version::Model,
        plans: &HashMap<Uuid, plan::Model>,
    ) -> AppResult<VersionView> {
        let implemented_by_plan = version
            .implemented_by_plan_id
            .map(|id| {
                plans
                    .get(&id)
                    .map(|plan| PlanRef {
                        id: plan.id.to_string(),
                        title: plan.title.clone(),
                    })
                    .ok_or_else(|| missing("plan", id))
            })
            .transpose()?;
        Ok(VersionView {
            id: version.id.to_string(),
            feature_id: version.feature_id.to_string(),
            version: version.version,
            implemented_by_plan,
            implemented_by: self.optional_user(version.implemented_by)?,
            created_at: rfc3339(version.created_at),
        })
    }
}

/// Rows point at each other with foreign keys, so a miss is a bug, not input.
fn missing(kind: &str, id: Uuid) -> AppError {
    AppError::internal(format!("{kind} {id} is referenced but missing"))
}

fn unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The text of a reply: a headline, then `Label: value` lines and paragraphs,
/// laid out like the seed's "Expected Response" examples.
pub struct Text(Vec<String>);

impl Text {
    /// Starts with the headline (e.g. `✓ Plan claimed successfully!`) and a blank line.
    pub fn headline(headline: impl Into<String>) -> Text {
        Text(vec![headline.into(), String::new()])
    }

    pub fn field(&mut self, label: &str, value: impl Display) -> &mut Text {
        self.0.push(format!("{label}: {value}"));
        self
    }

    pub fn optional_field(&mut self, label: &str, value: Option<impl Display>) -> &mut Text {
        if let Some(value) = value {
            self.field(label, value);
        }
        self
    }

    pub fn line(&mut self, line: impl Into<String>) -> &mut Text {
        self.0.push(line.into());
        self
    }

    pub fn blank(&mut self) -> &mut Text {
        self.0.push(String::new());
        self
    }

    /// A titled block of markdown (`Description:`, `Work Artifacts:` …).
    pub fn block(&mut self, title: &str, body: &str) -> &mut Text {
        self.blank().line(format!("{title}:")).line(body.trim_end())
    }

    /// The drift warning and what to do about it, for every answer to the
    /// claimer of a drifted plan (and to anyone reading it): an agent that
    /// only reads the text of its update or heartbeat answers learns of a
    /// changed spec while it works, not after its work was approved.
    pub fn drift_notice(&mut self, plan: &PlanView) -> &mut Text {
        if let Some(drift) = &plan.spec_drift {
            self.line(drift.warning()).line(format!(
                "   The feature's spec changed since this plan was written: read what changed with get_spec_diff (plan_id: {}), then rebase_plan (with an updated spec if the plan needs one).",
                plan.id
            ));
        }
        self
    }

    pub fn finish(&self) -> String {
        self.0.join("\n").trim_end().to_owned()
    }
}
